"""INSERT/UPDATE/DELETE on remote tables against the loopback test API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.auth.store import MemoryTokenStore
from remotetables.demo.api.faults import Fault
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from remotetables.errors import (
    CoercionError,
    ConfigError,
    NotSupportedError,
    ReadOnlyError,
    RemoteError,
    RemoteProtocolError,
)
from remotetables.sqltext import dml_target
from remotetables.writes import key_rowid
from tests.servers.walk import walk_consent

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def make_rows() -> list[dict[str, Any]]:
    """a1, a2 (alice), s1 (shared: everyone sees it, nobody may change it), a3, b1, b2 (bob)."""
    rows: list[dict[str, Any]] = []
    for i, (sid, owner, state) in enumerate(
        [
            ("a1", "alice", "open"),
            ("a2", "alice", "open"),
            ("s1", None, "open"),
            ("a3", "alice", "open"),
            ("b1", "bob", "open"),
            ("b2", "bob", "closed"),
            ("a4", "alice", "closed"),
        ]
    ):
        row: dict[str, Any] = {
            "sys_id": sid,
            "number": f"INC{i:04d}",
            "state": state,
            "priority": 3,
            "caller": {"name": "Ada"},
        }
        if owner is not None:
            row["assigned_to"] = owner
        rows.append(row)
    return rows


COLUMNS = """
[tables.{name}.columns]
sys_id = { type = "TEXT", writable = false }
number = "TEXT"
state = { type = "TEXT", param = "state" }
priority = "INTEGER"
assigned_to = { type = "TEXT", param = "assigned_to" }
caller_name = { type = "TEXT", path = "caller.name" }
"""


def table_toml(name: str, base: str, write: str | None, *, provider: str = "demo") -> str:
    text = (
        f'[tables.{name}]\nprovider = "{provider}"\nurl = "{base}/styles/link/incidents"\n'
        'pagination = "link"\npage_size_param = "limit"\nmax_page_size = 2\nkey = "sys_id"\n'
    )
    if write is not None:
        text += f"[tables.{name}.write]\n{write}\n"
    return text + COLUMNS.replace("{name}", name)


@pytest.fixture
def wapi() -> Iterator[IncidentsAPI]:
    with IncidentsAPI({"incidents": make_rows()}, static_tokens=TOKENS) as server:
        yield server


@pytest.fixture
def wconfig(wapi: IncidentsAPI, write_config: Callable[..., Path]) -> Path:
    text = '[providers.demo]\ntoken_env = "API_TOKEN"\n'
    text += table_toml("inc", wapi.base_url, "insert = true\nupdate = true\ndelete = true")
    text += table_toml("inc_ro", wapi.base_url, None)
    text += table_toml("inc_nodelete", wapi.base_url, "update = true")
    text += table_toml(
        "inc_idem", wapi.base_url, 'insert = true\nidempotency_header = "Idempotency-Key"'
    )
    return write_config(text)


def open_conn(config: Path, token: str = "tok-alice") -> remotetables.Connection:
    return remotetables.connect(
        ":memory:", config, environ={"API_TOKEN": token}, sleep=lambda s: None
    )


def open_conn_to(db: Path, config: Path, token: str = "tok-alice") -> remotetables.Connection:
    return remotetables.connect(db, config, environ={"API_TOKEN": token}, sleep=lambda s: None)


def writes(api: IncidentsAPI) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in api.requests if r.method != "GET"]


def test_update_reads_matching_keys_then_writes_each(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        # warm the cache: the write must neither read it nor leave it stale
        assert conn.execute("SELECT sum(priority) FROM inc").fetchone() == (3 * 5,)
        wapi.clear_requests()
        cur = conn.execute(
            "UPDATE inc SET priority = 1 WHERE caller_name = 'Ada' AND sys_id <> 's1'"
        )
        assert cur.rowcount == 4
        log = [(r.method, r.path) for r in wapi.requests]
        methods = [m for m, _ in log]
        # SQLite runs the whole scan (from the API, never the cache) before the first write
        assert methods == ["GET"] * 3 + ["PATCH"] * 4
        patched = sorted(p.rsplit("/", 1)[1] for m, p in log if m == "PATCH")
        assert patched == ["a1", "a2", "a3", "a4"]
        wapi.clear_requests()
        cur = conn.execute("UPDATE inc SET priority = 2 WHERE state = 'open' AND sys_id <> 's1'")
        methods = [r.method for r in wapi.requests]
        first_write = methods.index("PATCH")
        assert "GET" in methods and "GET" not in methods[first_write:]
        assert methods.count("PATCH") == 3
        # later reads see the API's answer (the cache was dropped)
        rows = conn.execute("SELECT sys_id, priority FROM inc ORDER BY sys_id").fetchall()
        assert rows == [("a1", 2), ("a2", 2), ("a3", 2), ("a4", 1), ("s1", 3)]
    ds = wapi.dataset("incidents")
    assert ds.get("a4")["priority"] == 1 and ds.get("b1")["priority"] == 3


def test_update_sends_only_changed_columns_and_nested_paths(
    wapi: IncidentsAPI, wconfig: Path
) -> None:
    with open_conn(wconfig) as conn:
        conn.execute("UPDATE inc SET caller_name = 'Grace' WHERE sys_id = 'a1'")
        conn.execute("UPDATE inc SET priority = priority WHERE sys_id = 'a2'")  # no change
    assert writes(wapi) == [("PATCH", "/styles/link/incidents/a1", 200)]
    row = wapi.dataset("incidents").get("a1")
    assert row["caller"] == {"name": "Grace"} and row["priority"] == 3


def test_insert_returns_the_api_row_as_rowid(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        cur = conn.execute(
            "INSERT INTO inc (number, state, caller_name) VALUES ('mine', 'new', 'Linus')"
        )
        assert cur.rowcount == 1
        created = [r for r in wapi.dataset("incidents").snapshot.rows if r.get("state") == "new"]
        assert len(created) == 1
        sys_id = created[0]["sys_id"]
        assert created[0]["caller"] == {"name": "Linus"} and created[0]["assigned_to"] == "alice"
        assert "priority" not in created[0]  # NULLs are not sent
        assert cur.lastrowid == key_rowid(sys_id)
        got = conn.execute(
            "SELECT sys_id, caller_name FROM inc WHERE rowid = ?", (cur.lastrowid,)
        ).fetchall()
        assert got == [(sys_id, "Linus")]


def test_delete_by_non_key_column(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        cur = conn.execute("DELETE FROM inc WHERE state = 'closed'")
        assert cur.rowcount == 1
        assert writes(wapi) == [("DELETE", "/styles/link/incidents/a4", 204)]
        assert conn.execute("SELECT count(*) FROM inc").fetchone() == (4,)
    assert wapi.dataset("incidents").get("a4") is None


def test_read_only_tables_and_columns(wconfig: Path, wapi: IncidentsAPI) -> None:
    with open_conn(wconfig) as conn:
        for sql in (
            "INSERT INTO inc_ro (number) VALUES ('x')",
            "UPDATE inc_ro SET priority = 1 WHERE sys_id = 'a1'",
            "DELETE FROM inc_ro WHERE sys_id = 'a1'",
        ):
            with pytest.raises(ReadOnlyError, match="inc_ro is a read-only remote table"):
                conn.execute(sql)
        with pytest.raises(ReadOnlyError, match="does not allow DELETE"):
            conn.execute("DELETE FROM inc_nodelete WHERE sys_id = 'a1'")
        with pytest.raises(ReadOnlyError, match="does not allow INSERT"):
            conn.execute("INSERT INTO inc_nodelete (number) VALUES ('x')")
        with pytest.raises(ReadOnlyError, match="column sys_id is not writable"):
            conn.execute("INSERT INTO inc (sys_id, number) VALUES ('zz', 'x')")
        with pytest.raises(ReadOnlyError, match="key column sys_id cannot be changed"):
            conn.execute("UPDATE inc SET sys_id = 'zz' WHERE sys_id = 'a1'")
    assert writes(wapi) == []


def test_forbidden_row_stops_statement_and_names_applied_rows(
    wapi: IncidentsAPI, wconfig: Path
) -> None:
    with open_conn(wconfig) as conn, pytest.raises(RemoteError) as info:
        conn.execute("UPDATE inc SET priority = 9 WHERE state = 'open'")
    err = info.value
    assert err.status_code == 403 and err.table == "inc"
    msg = str(err)
    assert "PATCH of sys_id=s1 failed" in msg and "HTTP 403" in msg
    assert "2 earlier row(s) of this statement were already applied" in msg
    assert "sys_id=a1, sys_id=a2" in msg and "later rows were not attempted" in msg
    assert err.applied == ("sys_id=a1", "sys_id=a2")  # type: ignore[attr-defined]
    assert [p for _, p, _ in writes(wapi)] == [
        "/styles/link/incidents/a1",
        "/styles/link/incidents/a2",
        "/styles/link/incidents/s1",
    ]
    ds = wapi.dataset("incidents")
    assert [ds.get(k)["priority"] for k in ("a1", "a2", "s1", "a3")] == [9, 9, 3, 3]


def test_each_user_writes_with_own_token(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig, "tok-bob") as bob:
        assert (
            bob.execute(
                "UPDATE inc SET priority = 7 WHERE state = 'open' AND sys_id <> 's1'"
            ).rowcount
            == 1
        )
        with pytest.raises(RemoteError, match="you may only create rows assigned to you") as info:
            bob.execute("INSERT INTO inc (number, assigned_to) VALUES ('x', 'alice')")
        assert info.value.status_code == 403
    assert {(r.method, r.user) for r in wapi.requests if r.method != "GET"} == {
        ("PATCH", "bob"),
        ("POST", "bob"),
    }
    assert wapi.dataset("incidents").get("b1")["priority"] == 7


def test_executemany_inserts_every_row(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO inc (number, state, priority) VALUES (?, ?, ?)",
            [("n1", "new", 1), ("n2", "new", 2), ("n3", "new", 3)],
        )
        assert cur.rowcount == 3
        got = conn.execute("SELECT priority FROM inc WHERE state = 'new' ORDER BY 1").fetchall()
        assert got == [(1,), (2,), (3,)]
    assert [m for m, _, _ in writes(wapi)] == ["POST"] * 3


def test_executemany_failure_names_the_parameter_sets_applied(
    wapi: IncidentsAPI, wconfig: Path
) -> None:
    sql = "INSERT INTO inc (number, state, assigned_to) VALUES (?, 'em', ?)"
    ds = wapi.dataset("incidents")
    with open_conn(wconfig) as conn:
        cur = conn.cursor()
        with pytest.raises(RemoteError) as info:
            cur.executemany(
                sql, [("em-1", "alice"), ("em-2", "alice"), ("em-3", "bob"), ("em-4", "alice")]
            )
        err = info.value
        assert err.status_code == 403 and err.table == "inc"
        assert err.applied_sets == 2  # type: ignore[attr-defined]
        assert err.applied == ()  # type: ignore[attr-defined]  # rows of the failing set
        msg = str(err)
        assert "parameter sets 1-2 of 4 were applied before this one (set 3)" in msg
        assert "later parameter sets were not attempted" in msg
        assert cur.rowcount == 2
        assert len([r for r in ds.snapshot.rows if r.get("state") == "em"]) == 2
        # one set before the failing one; a generator has no length
        with pytest.raises(RemoteError) as info:
            cur.executemany(sql, (p for p in [("em-5", "alice"), ("em-6", "bob")]))
        assert info.value.applied_sets == 1  # type: ignore[attr-defined]
        assert "parameter set 1 was applied before this one (set 2)" in str(info.value)
        assert cur.rowcount == 1
        # the first set fails
        with pytest.raises(RemoteError) as info:
            cur.executemany(sql, [("em-7", "bob"), ("em-8", "alice")])
        assert info.value.applied_sets == 0  # type: ignore[attr-defined]
        assert "no parameter set was applied before this one (set 1 of 2)" in str(info.value)
        assert cur.rowcount == 0
        # a set that writes several rows fails partway: its applied rows count too
        with pytest.raises(RemoteError) as info:
            cur.executemany(
                "UPDATE inc SET priority = ? WHERE state = ?", [(8, "closed"), (9, "open")]
            )
        err = info.value
        assert err.applied_sets == 1  # type: ignore[attr-defined]
        assert err.applied == ("sys_id=a1", "sys_id=a2")  # type: ignore[attr-defined]
        assert cur.rowcount == 1 + 2
        # a single statement's failure sets rowcount to the rows it applied
        with pytest.raises(RemoteError):
            cur.execute("UPDATE inc SET priority = 7 WHERE state = 'open'")
        assert cur.rowcount == 2
    assert len([r for r in ds.snapshot.rows if r.get("state") == "em"]) == 3
    assert [ds.get(k)["priority"] for k in ("a4", "a1", "a2", "s1")] == [8, 7, 7, 3]


def test_executemany_failure_on_a_native_table_says_run_not_applied(wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        conn.execute("CREATE TABLE n (x PRIMARY KEY)")
        conn.commit()
        cur = conn.cursor()
        with pytest.raises(remotetables.IntegrityError) as info:
            cur.executemany("INSERT INTO n VALUES (?)", [(1,), (2,), (1,)])
        assert info.value.applied_sets == 2  # type: ignore[attr-defined]
        assert "parameter sets 1-2 of 3 were run before this one (set 3);" in str(info.value)
        assert cur.rowcount == 2 and conn.apsw.in_transaction
        conn.rollback()  # the implicit transaction: nothing stays
        assert conn.execute("SELECT count(*) FROM n").fetchone() == (0,)


def test_post_not_retried_without_idempotency_key(wapi: IncidentsAPI, wconfig: Path) -> None:
    wapi.faults.add(Fault("status", path="/styles/link/incidents", method="POST", status=503))
    with open_conn(wconfig) as conn, pytest.raises(RemoteError, match="HTTP 503") as info:
        conn.execute("INSERT INTO inc (number) VALUES ('x')")
    assert info.value.status_code == 503
    assert [m for m, _, _ in writes(wapi)] == ["POST"]
    assert len(wapi.dataset("incidents").snapshot.rows) == 7


def test_post_retried_with_idempotency_key(wapi: IncidentsAPI, wconfig: Path) -> None:
    wapi.faults.add(Fault("status", path="/styles/link/incidents", method="POST", status=503))
    with open_conn(wconfig) as conn:
        conn.execute("INSERT INTO inc_idem (number, state) VALUES ('x', 'new')")
    assert [s for _, _, s in writes(wapi)] == [503, 201]
    assert len(wapi.dataset("incidents").snapshot.rows) == 8


def test_write_url_outside_provider_origins_is_refused(
    wapi: IncidentsAPI, write_config: Callable[..., Path]
) -> None:
    text = '[providers.demo]\ntoken_env = "API_TOKEN"\n'
    text += table_toml("inc", wapi.base_url, 'insert = { url = "http://127.0.0.2:9/steal" }')
    with (
        open_conn(write_config(text)) as conn,
        pytest.raises(ConfigError, match="token would leak"),
    ):
        conn.execute("INSERT INTO inc (number) VALUES ('x')")
    assert writes(wapi) == []


# ---------------------------------------------------------------- OAuth, per user


@pytest.fixture
def oauth_stack(write_config: Callable[..., Path]) -> Iterator[tuple[IncidentsAPI, Path]]:
    with (
        DemoAuthServer() as auth,
        IncidentsAPI({"incidents": make_rows()}, token_validator=auth.validate_token) as api,
    ):
        text = (
            f'[providers.demo]\nissuer = "{auth.issuer}"\nclient_id = "remotetables-demo"\n'
            'scopes = ["incidents.read"]\n'
        )
        text += table_toml("inc", api.base_url, "insert = true\nupdate = true\ndelete = true")
        yield api, write_config(text)


def walk(req: Any) -> str:
    return walk_consent(req.authorization_url, username=req.user, password=req.user)


def test_oauth_users_share_a_runtime_and_write_as_themselves(
    oauth_stack: tuple[IncidentsAPI, Path],
) -> None:
    api, config = oauth_stack
    store = MemoryTokenStore()
    with (
        remotetables.connect(
            ":memory:", config, user="alice", consent=walk, token_store=store
        ) as a,
        remotetables.connect(":memory:", user="bob", consent=walk, runtime=a.runtime) as b,
    ):
        a.execute("SELECT count(*) FROM inc").fetchone()
        b.execute("SELECT count(*) FROM inc").fetchone()
        with pytest.raises(RemoteError) as info:
            a.execute("UPDATE inc SET priority = 1 WHERE sys_id IN ('a1', 's1')")
        assert info.value.status_code == 403 and "user alice" in str(info.value)
        assert b.execute("UPDATE inc SET priority = 5 WHERE sys_id = 'b1'").rowcount == 1
        # alice's update of b1 finds no row (she cannot see it): nothing is sent
        assert a.execute("UPDATE inc SET priority = 6 WHERE sys_id = 'b1'").rowcount == 0
    by_user = {
        (r.method, r.path.rsplit("/", 1)[1], r.user, r.status)
        for r in api.requests
        if r.method != "GET"
    }
    assert ("PATCH", "b1", "bob", 200) in by_user
    assert ("PATCH", "s1", "alice", 403) in by_user
    assert not any(u == "alice" and k == "b1" for _, k, u, _ in by_user)
    assert api.dataset("incidents").get("b1")["priority"] == 5


def test_a_write_drops_every_users_cached_rows_of_the_table(
    oauth_stack: tuple[IncidentsAPI, Path],
) -> None:
    """bob's cached view of a shared row must not outlive alice's change to it."""
    api, config = oauth_stack
    store = MemoryTokenStore()
    with (
        remotetables.connect(
            ":memory:", config, user="alice", consent=walk, token_store=store
        ) as a,
        remotetables.connect(":memory:", user="bob", consent=walk, runtime=a.runtime) as b,
    ):
        b.execute("SELECT count(*) FROM inc").fetchall()
        assert ("inc", "user:bob") in {(t, p) for t, p, *_ in a.runtime.cache.state()}
        assert a.execute("UPDATE inc SET priority = 4 WHERE sys_id = 'a1'").rowcount == 1
        assert not any(t == "inc" for t, *_ in a.runtime.cache.state())
        gets = len([r for r in api.requests if r.method == "GET" and r.user == "bob"])
        b.execute("SELECT count(*) FROM inc").fetchall()  # asks the API again
        assert len([r for r in api.requests if r.method == "GET" and r.user == "bob"]) > gets


# ---------------------------------------------------------------- written values and their types

TYPED_COLUMNS = """
[tables.{name}.columns]
sys_id = { type = "TEXT", writable = false }
number = { type = "{number}", writable = false }
short_description = "TEXT"
state = { type = "TEXT", param = "state" }
priority = "INTEGER"
active = "BOOLEAN"
score = "REAL"
tags = "JSON"
assigned_to = { type = "TEXT", param = "assigned_to" }
"""


def typed_table(name: str, base: str, *, number: str = "TEXT") -> str:
    head = (
        f'[tables.{name}]\nprovider = "demo"\nurl = "{base}/styles/link/incidents"\n'
        'pagination = "link"\npage_size_param = "limit"\nmax_page_size = 3\nkey = "sys_id"\n'
        f"[tables.{name}.write]\ninsert = true\nupdate = true\ndelete = true\n"
    )
    return head + TYPED_COLUMNS.replace("{name}", name).replace("{number}", number)


@pytest.fixture
def tconfig(wapi: IncidentsAPI, write_config: Callable[..., Path]) -> Path:
    """inc_w: typed columns. inc_n: declares the API-assigned number (``INC0000007``) INTEGER,
    so the API's answer to a write cannot be read back."""
    text = '[providers.demo]\ntoken_env = "API_TOKEN"\n'
    text += typed_table("inc_w", wapi.base_url)
    text += typed_table("inc_n", wapi.base_url, number="INTEGER")
    return write_config(text)


@pytest.mark.parametrize(
    ("sql", "column", "why"),
    [
        (
            "INSERT INTO inc_w (short_description, priority) VALUES ('bad prio', 'high')",
            "priority",
            "'high' is not an integer",
        ),
        ("UPDATE inc_w SET priority = 'urgent' WHERE sys_id = 'a1'", "priority", "'urgent'"),
        (
            "INSERT INTO inc_w (short_description, active) VALUES ('x', 'maybe')",
            "active",
            "'maybe' is not a boolean",
        ),
        ("UPDATE inc_w SET active = 2 WHERE sys_id = 'a1'", "active", "2 is not a boolean"),
        (
            "INSERT INTO inc_w (short_description, score) VALUES ('x', 'lots')",
            "score",
            "'lots' is not a number",
        ),
        (
            "INSERT INTO inc_w (short_description, tags) VALUES ('x', '[\"a\",')",
            "tags",
            "not valid JSON text",
        ),
        ("INSERT INTO inc_w (short_description, score) VALUES ('x', 9e999)", "score", "finite"),
        ("INSERT INTO inc_w (short_description, priority) VALUES ('x', x'01')", "priority", "BLOB"),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_refused_before_sending(
    wapi: IncidentsAPI, tconfig: Path, sql: str, column: str, why: str
) -> None:
    before = wapi.dataset("incidents").snapshot.rows
    with open_conn(tconfig) as conn:
        with pytest.raises(CoercionError) as info:
            conn.execute(sql)
        err = info.value
        assert isinstance(err, remotetables.DataError)
        assert (err.table, err.column, err.row) == ("inc_w", column, 1)
        msg = str(err)
        assert msg.startswith(f"inc_w.{column}: row 1 of the statement")
        assert why in msg and "nothing was sent" in msg
        assert err.applied == ()  # type: ignore[attr-defined]
        # the column still reads for everyone: nothing bad reached the API
        assert len(conn.execute("SELECT priority, active, score, tags FROM inc_w").fetchall()) == 5
    assert writes(wapi) == []
    assert wapi.dataset("incidents").snapshot.rows == before


def test_written_values_are_converted_as_sqlite_would(wapi: IncidentsAPI, tconfig: Path) -> None:
    with open_conn(tconfig) as conn:
        conn.execute(
            "INSERT INTO inc_w (short_description, state, priority, active, score, tags) "
            "VALUES (12, 'new', ' 5 ', 'yes', '2.5', '[\"a\", {\"b\": 1}]')"
        )
        conn.execute("UPDATE inc_w SET priority = '7', active = 0, score = 1 WHERE sys_id = 'a1'")
        conn.execute(
            "UPDATE inc_w SET active = 'TRUE', short_description = 4.5 WHERE sys_id = 'a2'"
        )
        wapi.clear_requests()
        # the same value in another spelling is no change: nothing is sent
        conn.execute("UPDATE inc_w SET priority = '3', tags = NULL WHERE sys_id = 'a3'")
        conn.execute("UPDATE inc_w SET priority = 7.0, active = 'no' WHERE sys_id = 'a1'")
        assert writes(wapi) == []
        got = conn.execute(
            "SELECT short_description, priority, active, score, tags FROM inc_w WHERE state = 'new'"
        ).fetchall()
        assert got == [("12", 5, 1, 2.5, '["a",{"b":1}]')]
    ds = wapi.dataset("incidents")
    (new,) = [r for r in ds.snapshot.rows if r.get("state") == "new"]
    assert new["short_description"] == "12" and new["priority"] == 5
    assert new["active"] is True and new["score"] == 2.5 and new["tags"] == ["a", {"b": 1}]
    a1, a2 = ds.get("a1"), ds.get("a2")
    assert (a1["priority"], a1["active"], a1["score"]) == (7, False, 1.0)
    assert isinstance(a1["score"], float)
    assert (a2["active"], a2["short_description"]) == (True, "4.5")


def test_a_refused_row_names_the_rows_already_applied(wapi: IncidentsAPI, tconfig: Path) -> None:
    with open_conn(tconfig) as conn, pytest.raises(CoercionError) as info:
        conn.execute(
            "INSERT INTO inc_w (short_description, priority) VALUES ('ok', 1), ('bad', 'high')"
        )
    err = info.value
    assert err.row == 2
    (created,) = [r for r in wapi.dataset("incidents").snapshot.rows if r.get("priority") == 1]
    assert err.applied == (f"sys_id={created['sys_id']}",)  # type: ignore[attr-defined]
    msg = str(err)
    assert msg.startswith("inc_w.priority: row 2 of the statement") and "nothing was sent" in msg
    assert "1 earlier row(s) of this statement were already applied" in msg
    assert [m for m, _, _ in writes(wapi)] == ["POST"]


def test_an_unreadable_answer_says_the_row_was_applied(wapi: IncidentsAPI, tconfig: Path) -> None:
    ds = wapi.dataset("incidents")
    with open_conn(tconfig) as conn:
        with pytest.raises(CoercionError) as info:
            conn.execute("INSERT INTO inc_n (short_description) VALUES ('made')")
        (made,) = [r for r in ds.snapshot.rows if r.get("short_description") == "made"]
        label = f"sys_id={made['sys_id']}"
        err = info.value
        assert err.applied == (label,)  # type: ignore[attr-defined]
        assert err.column == "number"
        msg = str(err)
        assert f"POST of new row was applied ({label})" in msg
        assert "but the API's answer cannot be read" in msg and "is not an integer" in msg
        assert "later rows were not attempted" in msg
        # an update whose answer holds a value its column cannot read (the API said 200)
        wapi.faults.add(
            Fault(
                "status",
                path="/styles/link/incidents/a2",
                method="PATCH",
                status=200,
                body='{"sys_id": "a2", "priority": "high"}',
            )
        )
        with pytest.raises(CoercionError) as info:
            conn.execute("UPDATE inc_w SET priority = 8 WHERE sys_id IN ('a1', 'a2')")
        err = info.value
        assert err.applied == ("sys_id=a1", "sys_id=a2")  # type: ignore[attr-defined]
        msg = str(err)
        assert "PATCH of sys_id=a2 was applied, but the API's answer cannot be read" in msg
        assert "1 earlier row(s) of this statement were already applied" in msg
        # an answer that is not JSON at all (the API said 201): applied too
        wapi.faults.add(
            Fault("invalid_json", path="/styles/link/incidents", method="POST", status=201)
        )
        with pytest.raises(RemoteProtocolError) as pinfo:
            conn.execute("INSERT INTO inc_w (short_description) VALUES ('garbled')")
        assert pinfo.value.applied == ("1 new row",)  # type: ignore[attr-defined]
        assert "POST of new row was applied, but the API's answer cannot be read" in str(
            pinfo.value
        )
    assert ds.get("a1")["priority"] == 8


# ---------------------------------------------------------------- DB-API transactions


def test_remote_writes_do_not_lock_the_database_file(
    wapi: IncidentsAPI, wconfig: Path, tmp_path: Path
) -> None:
    """A statement that writes only a remote table runs in autocommit: holding a local write
    transaction for it (nothing to roll back) would only lock other connections out."""
    db = tmp_path / "shared.db"
    with open_conn_to(db, wconfig) as a, open_conn_to(db, wconfig, "tok-bob") as b:
        b.apsw.set_busy_timeout(200)  # a lock held by `a` fails fast instead of after 30 s
        a.execute("INSERT INTO inc (number, state) VALUES ('from a', 'new')")
        assert not a.apsw.in_transaction
        b.execute("INSERT INTO inc (number, state) VALUES ('from b', 'new')")
        assert not b.apsw.in_transaction
        for sql in (
            # remote tables live in the temp schema (main. names only the file's tables)
            "insert or ignore into temp.\"inc\" (number, state) values ('a2', 'new')",
            "/* hi */ -- there\n UPDATE OR FAIL [inc] SET priority = 4 WHERE sys_id = 'a1'",
            "DELETE FROM `temp` . `INC` WHERE sys_id = 'a2'",
        ):
            a.execute(sql)
            assert not a.apsw.in_transaction, sql
            b.execute("UPDATE inc SET priority = 5 WHERE sys_id = 'b1'")
        a.cursor().executemany(
            "INSERT INTO inc (number, state) VALUES (?, 'new')", [("m1",), ("m2",)]
        )
        assert not a.apsw.in_transaction
        # DML on a native table keeps PEP 249's implicit transaction; a remote write inside
        # it is refused (ROLLBACK could not undo it)
        a.execute("CREATE TABLE notes (x)")
        a.execute("INSERT INTO notes VALUES (1)")
        assert a.apsw.in_transaction
        with pytest.raises(NotSupportedError, match="inside an open transaction"):
            a.execute("INSERT INTO inc (number, state) VALUES ('inside', 'new')")
        a.rollback()
        assert a.execute("SELECT count(*) FROM notes").fetchone() == (0,)
        a.execute("INSERT INTO notes VALUES (2)")
        a.commit()
        assert b.execute("SELECT x FROM notes").fetchall() == [(2,)]
    ds = wapi.dataset("incidents")
    numbers = {r["number"] for r in ds.snapshot.rows if r.get("state") == "new"}
    assert len(numbers) == 5  # every remote row stays; the one refused was never sent
    assert ds.get("a1")["priority"] == 4 and ds.get("a2") is None
    assert ds.get("b1")["priority"] == 5


@pytest.mark.parametrize(
    ("sql", "target"),
    [
        ("INSERT INTO inc (x) VALUES (1)", (None, "inc")),
        ('insert or replace into "in""c" values (1)', (None, 'in"c')),
        ("REPLACE INTO main.inc VALUES (1)", ("main", "inc")),
        ("  /* a */ -- b\n update or ignore [inc] set x = 1", (None, "inc")),
        ('UPDATE "main" . "inc" SET x = 1', ("main", "inc")),
        ("DELETE FROM `temp`.`inc`", ("temp", "inc")),
        ("delete from inc", (None, "inc")),
        ("INSERT INTO inc(x) VALUES (1)", (None, "inc")),
        ("WITH t AS (SELECT 1) INSERT INTO inc SELECT * FROM t", None),
        ("SELECT 1", None),
        ("INSERTINTO inc", None),
        ("INSERT INTO inc VALUES ('a;b', \"c;\", [d;]) ; -- done;\n;", (None, "inc")),
        ("INSERT INTO inc VALUES (1); INSERT INTO notes VALUES (2)", None),
        ("DELETE FROM inc; /* ; */ DELETE FROM notes", None),
    ],
)
def test_dml_target_table(sql: str, target: tuple[str | None, str] | None) -> None:
    assert dml_target(sql) == target
