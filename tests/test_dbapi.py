"""PEP 249 surface and the exception mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

import remotetables
from remotetables import dbapi, errors
from remotetables.demo.api.server import IncidentsAPI
from tests.conftest import incidents_table


def test_module_globals() -> None:
    assert remotetables.apilevel == "2.0"
    assert remotetables.threadsafety == 1
    assert remotetables.paramstyle == "qmark"
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                 "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):  # fmt: skip
        assert issubclass(getattr(remotetables, name), Exception)
    assert issubclass(remotetables.RemoteError, remotetables.OperationalError)
    assert issubclass(remotetables.ConsentRequired, remotetables.DatabaseError)
    assert issubclass(remotetables.ConfigError, remotetables.Error)


def test_cursor_protocol(
    api: IncidentsAPI, open_conn: Callable[..., remotetables.Connection]
) -> None:
    conn = open_conn(incidents_table("t", "link", api.base_url))
    cur = conn.cursor()
    assert cur.description is None and cur.rowcount == -1 and cur.arraysize == 1
    cur.execute("SELECT number, priority FROM t WHERE state = ? ORDER BY number", ("open",))
    assert [d[0] for d in cur.description or ()] == ["number", "priority"]
    assert cur.description is not None and cur.description[1][1] == "INTEGER"
    one = cur.fetchone()
    assert one is not None and isinstance(one, tuple)
    cur.arraysize = 3
    assert len(cur.fetchmany()) == 3
    assert len(cur.fetchmany(2)) == 2
    rest = cur.fetchall()
    assert cur.fetchone() is None and cur.fetchall() == []
    total = conn.execute("SELECT count(*) FROM t WHERE state = 'open'").fetchone()
    assert total == (1 + 3 + 2 + len(rest),)
    assert [r for r in conn.execute("SELECT 1 UNION SELECT 2 ORDER BY 1")] == [(1,), (2,)]
    # description is known even when no row comes back
    assert [d[0] for d in conn.execute("SELECT number FROM t WHERE 0").description or ()] == [
        "number"
    ]
    cur.close()
    with pytest.raises(errors.InterfaceError):
        cur.execute("SELECT 1")


def test_rowcount_counts_the_statements_own_rows_not_its_triggers(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """As the stdlib's sqlite3 (sqlite3_changes()): rows changed by triggers, and a DDL or
    SELECT after a write, are not the statement's rowcount."""
    import sqlite3

    script = (
        "CREATE TABLE n(x INTEGER); CREATE TABLE audit(x INTEGER);"
        "CREATE TRIGGER t AFTER INSERT ON n BEGIN INSERT INTO audit VALUES (NEW.x);"
        " INSERT INTO audit VALUES (NEW.x); END;"
        "CREATE TRIGGER u AFTER UPDATE ON n BEGIN DELETE FROM audit WHERE x = OLD.x; END;"
    )
    steps: list[tuple[str, tuple[int, ...]]] = [
        ("INSERT INTO n VALUES (?)", (1,)),
        ("INSERT INTO n SELECT x + 10 FROM n", ()),
        ("UPDATE n SET x = x + 1", ()),
        ("CREATE TABLE other(y)", ()),
        ("DELETE FROM n WHERE x > 100", ()),
    ]
    ref = sqlite3.connect(":memory:")
    ref.executescript(script)
    expected = [ref.execute(sql, args).rowcount for sql, args in steps]
    ref.close()
    with remotetables.connect(str(tmp_path / "r.db"), write_config("")) as conn:
        conn.apsw.execute(script)
        got = [conn.execute(sql, args).rowcount for sql, args in steps]
        many = conn.executemany("INSERT INTO n VALUES (?)", [(5,), (6,), (7,)]).rowcount
    assert expected == [1, 1, 2, -1, 0]
    assert got[:3] == expected[:3] and got[4] == expected[4] and got[3] in (-1, 0)
    assert many == 3  # not 9: each insert's two audit rows are the trigger's


def test_transactions_rowcount_executemany(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    db = str(tmp_path / "t.db")
    cfg = write_config("")
    with remotetables.connect(db, cfg) as conn:
        conn.execute("CREATE TABLE n(x INTEGER)")
        cur = conn.cursor().executemany("INSERT INTO n VALUES (?)", [(1,), (2,), (3,)])
        assert cur.rowcount == 3
        assert conn.execute("UPDATE n SET x = x + 1 WHERE x > 1").rowcount == 2
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM n").fetchone() == (0,)
        assert conn.executemany("INSERT INTO n VALUES (?)", [(7,), (8,)]).rowcount == 2
        conn.rollback()
        conn.execute("INSERT INTO n VALUES (?)", (10,))
    # the context manager committed and closed
    with remotetables.connect(db, cfg) as conn2:
        assert conn2.execute("SELECT x FROM n").fetchall() == [(10,)]
        conn2.execute("INSERT INTO n VALUES (11)")
        conn2.close()  # closing without commit rolls back, as PEP 249 says
    with remotetables.connect(db, cfg) as conn3:
        assert conn3.execute("SELECT count(*) FROM n").fetchone() == (1,)
    assert conn3.closed
    with pytest.raises(errors.InterfaceError):
        conn3.cursor()


@pytest.mark.parametrize(
    ("sql", "params", "error"),
    [
        ("SELEC 1", None, errors.OperationalError),
        ("SELECT * FROM nowhere", None, errors.OperationalError),
        ("SELECT ?", (1, 2), errors.ProgrammingError),
        ("INSERT INTO u VALUES (1)", None, errors.IntegrityError),
    ],
)
def test_apsw_errors_are_mapped(
    sql: str,
    params: tuple[int, ...] | None,
    error: type[Exception],
    write_config: Callable[..., Path],
) -> None:
    with remotetables.connect(":memory:", write_config("")) as conn:
        conn.execute("CREATE TABLE u(x PRIMARY KEY)")
        conn.execute("INSERT INTO u VALUES (1)")
        with pytest.raises(error) as info:
            conn.execute(sql, params)
        assert isinstance(info.value.__cause__, apsw.Error)


def test_map_error_covers_apsw_classes() -> None:
    assert isinstance(dbapi._map_error(apsw.ConstraintError("x")), errors.IntegrityError)
    assert isinstance(dbapi._map_error(apsw.TooBigError("x")), errors.DataError)
    assert isinstance(dbapi._map_error(apsw.CursorClosedError("x")), errors.InterfaceError)
    assert isinstance(dbapi._map_error(apsw.CorruptError("x")), errors.DatabaseError)
    assert isinstance(dbapi._map_error(apsw.BusyError("x")), errors.OperationalError)


def test_native_table_with_remote_name_is_shadowed_with_a_warning(
    api: IncidentsAPI, tmp_path: Path, write_config: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A native table or view of a remote table's name in the file does not stop the
    connection (anyone writing a shared file could otherwise lock everyone out): the remote
    table in temp wins for unqualified names and a warning says so. With persist_tables the
    conflict is real and refused."""
    db = str(tmp_path / "x.db")
    with remotetables.connect(db, write_config("")) as conn:
        conn.execute("CREATE TABLE t(x)")
        conn.execute("CREATE VIEW v AS SELECT 1 AS one")
    both = incidents_table("a", "link", api.base_url) + incidents_table("t", "link", api.base_url)
    with (
        caplog.at_level("WARNING", logger="remotetables.schema"),
        remotetables.connect(db, write_config(both)) as conn,
    ):
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM main.t").fetchone() == (0,)
    assert "named t," in caplog.text
    with remotetables.connect(db, write_config(incidents_table("v", "link", api.base_url))) as c:
        assert c.execute("SELECT one FROM main.v").fetchone() == (1,)
    with pytest.raises(
        errors.ConfigError, match="already exists in the database as a native table"
    ):
        remotetables.connect(db, write_config(both), persist_tables=True)
    with pytest.raises(errors.ConfigError, match="already exists in the database as a view"):
        remotetables.connect(
            db, write_config(incidents_table("v", "link", api.base_url)), persist_tables=True
        )
    # the refused connections created nothing: the file holds only what the user made
    with remotetables.connect(db, write_config("")) as conn:
        names = conn.execute("SELECT name FROM sqlite_schema ORDER BY name").fetchall()
    assert names == [("t",), ("v",)]


def test_set_user_validation(write_config: Callable[..., Path]) -> None:
    with remotetables.connect(":memory:", write_config(""), user="alice") as conn:
        assert conn.execute("SELECT current_user()").fetchone() == ("alice",)
        assert conn.execute("SELECT set_user('bob'), current_user()").fetchone() == ("bob", "bob")
        with pytest.raises(errors.NoSessionUser):
            conn.execute("SELECT set_user('   ')")
        assert conn.execute("SELECT set_user(NULL), current_user()").fetchone() == (None, None)
        assert "alice" not in repr(conn)


def test_an_unclosed_cursor_is_freed_in_its_own_thread() -> None:
    """An unclosed cursor goes away when its last reference does, not later in the cyclic
    garbage collector, which may run in another thread while this connection is in use there
    (the web app's intermittent "Connection is busy in another thread", issue 23)."""
    import gc
    import weakref

    conn = remotetables.connect(":memory:")
    enabled = gc.isenabled()
    gc.disable()
    try:
        cur = conn.execute("SELECT 1 UNION SELECT 2")
        assert cur.fetchone() == (1,)  # left mid-statement, never closed
        assert cur.description is not None  # the trace ran
        alive = weakref.ref(cur)
        del cur
        assert alive() is None
    finally:
        if enabled:
            gc.enable()
        conn.close()
