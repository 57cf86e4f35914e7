"""A database file remotetables has used stays plain: tools without the module (Datasette,
the stock sqlite3 CLI, stdlib sqlite3) open it and read its native tables; files where an
older version stored the remote tables are moved to the temp schema without losing data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import remotetables
from remotetables.demo.api.server import IncidentsAPI
from tests.conftest import incidents_table

SQLITE3 = shutil.which("sqlite3")
needs_cli = pytest.mark.skipif(
    SQLITE3 is None,
    reason="the stock sqlite3 CLI is not installed (bash scripts/install-sqlite3.sh)",
)


def _stored(db: Path) -> list[tuple[str, str]]:
    """(name, sql) of every table stored in the file, read by a process without the module."""
    code = (
        "import sqlite3, sys, json\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "print(json.dumps(c.execute('SELECT name, sql FROM sqlite_schema ORDER BY name').fetchall()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True
    ).stdout
    import json

    return [tuple(r) for r in json.loads(out)]  # type: ignore[misc]


def _used_file(
    tmp_path: Path, write_config: Callable[..., Path], api: IncidentsAPI, **kw: object
) -> Path:
    """A file remotetables opened: a remote table queried, a native table written."""
    db = tmp_path / "work.db"
    toml = incidents_table("remote_incidents", "link", api.base_url)
    with remotetables.connect(db, write_config(toml), **kw) as conn:  # type: ignore[arg-type]
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes(body) SELECT number FROM remote_incidents LIMIT 3")
    return db


def test_remote_tables_live_in_temp_and_the_file_stays_plain(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    db = _used_file(tmp_path, write_config, api)
    toml = incidents_table("remote_incidents", "link", api.base_url)
    with remotetables.connect(db, write_config(toml)) as conn:
        # SQL tools on the connection still see the table and its columns
        where = conn.execute(
            "SELECT schema, type FROM pragma_table_list WHERE name = 'remote_incidents'"
        ).fetchall()
        assert where == [("temp", "virtual")]
        cols = conn.execute("SELECT name, type FROM pragma_table_info('remote_incidents')")
        assert ("priority", "INTEGER") in cols.fetchall()
        assert conn.execute("SELECT count(*) FROM remote_incidents").fetchone() == (250,)
    assert [name for name, _ in _stored(db)] == ["notes"]


def test_persist_tables_is_explicit(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    toml = "[settings]\npersist_tables = true\n" + incidents_table("t", "link", api.base_url)
    db = tmp_path / "kept.db"
    remotetables.connect(db, write_config(toml)).close()
    assert _stored(db) == [("t", 'CREATE VIRTUAL TABLE "t" USING remotetables(t)')]


def test_old_files_are_migrated_without_losing_native_data(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A file where an older version stored remote tables (one of them no longer in the
    config) loses those, keeps its native rows, and the remote table still answers."""
    db = tmp_path / "old.db"
    old = incidents_table("remote_incidents", "link", api.base_url) + incidents_table(
        "retired", "link", api.base_url
    )
    with remotetables.connect(db, write_config(old), persist_tables=True) as conn:
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes(body) VALUES ('keep me'), ('and me')")
        conn.execute("CREATE VIEW short AS SELECT substr(body, 1, 3) AS b FROM notes")
    assert [n for n, _ in _stored(db)] == ["notes", "remote_incidents", "retired", "short"]
    new = incidents_table("remote_incidents", "link", api.base_url)
    with remotetables.connect(db, write_config(new)) as conn:
        assert conn.execute("SELECT count(*) FROM remote_incidents").fetchone() == (250,)
        assert conn.execute("SELECT body FROM notes ORDER BY id").fetchall() == [
            ("keep me",),
            ("and me",),
        ]
        assert conn.execute("SELECT b FROM short").fetchall() == [("kee",), ("and",)]
    assert [n for n, _ in _stored(db)] == ["notes", "short"]


def test_a_stored_view_over_a_remote_table_keeps_it_stored(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A view stored in the file cannot read the temp schema: migrating would break it, so
    the file is left as it was and a warning says what to do. The stored view itself cannot
    read the remote table either (remote tables are direct-only: a shared file must not run
    queries as its reader); its error says to make it a TEMP view."""
    db = tmp_path / "v.db"
    toml = write_config(incidents_table("remote_incidents", "link", api.base_url))
    with remotetables.connect(db, toml, persist_tables=True) as conn:
        conn.execute("CREATE VIEW p1 AS SELECT number FROM remote_incidents WHERE priority = 1")
    before = _stored(db)
    with remotetables.connect(db, toml) as conn:
        with pytest.raises(remotetables.NotAuthorized, match="TEMP view or trigger"):
            conn.execute("SELECT count(*) FROM p1").fetchone()
        conn.execute(
            "CREATE TEMP VIEW p1 AS SELECT number FROM remote_incidents WHERE priority = 1"
        )
        n = conn.execute("SELECT count(*) FROM temp.p1").fetchone()[0]
        assert n > 0
    assert _stored(db) == before
    assert "stay stored in the database file" in caplog.text
    assert "p1" in caplog.text and "TEMP" in caplog.text


def test_a_stored_trigger_naming_a_remote_table_keeps_it_stored(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = tmp_path / "t.db"
    toml = write_config(incidents_table("remote_incidents", "link", api.base_url))
    with remotetables.connect(db, toml, persist_tables=True) as conn:
        conn.execute("CREATE TABLE log(n TEXT)")
        conn.execute(
            "CREATE TRIGGER copy_one AFTER INSERT ON log BEGIN INSERT INTO log "
            "SELECT number FROM Remote_Incidents WHERE NEW.n = 'go' LIMIT 1; END"
        )
    before = _stored(db)
    with remotetables.connect(db, toml) as conn:
        with pytest.raises(remotetables.NotAuthorized, match="TEMP view or trigger"):
            conn.execute("INSERT INTO log VALUES ('go')")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM log").fetchone() == (0,)
    assert _stored(db) == before
    assert "trigger(s) copy_one read them" in caplog.text


def test_a_native_table_of_the_same_name_is_shadowed_never_silently(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The temp remote table shadows it for unqualified names: a warning says so (the native
    data is never hidden silently) and main.t still reaches it; the file is unchanged."""
    db = tmp_path / "n.db"
    with remotetables.connect(db, write_config("")) as conn:
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES ('mine')")
    with caplog.at_level("WARNING", logger="remotetables.schema"):
        conn = remotetables.connect(db, write_config(incidents_table("t", "link", api.base_url)))
    try:
        assert "its own table or view named t" in caplog.text
        assert conn.execute("SELECT x FROM main.t").fetchall() == [("mine",)]
    finally:
        conn.close()


def test_datasette_serves_the_native_tables(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Datasette, as a library (in its own process: stdlib sqlite3 and apsw must not share a
    file in one process), opens the file and serves its native table."""
    pytest.importorskip("datasette")
    db = _used_file(tmp_path, write_config, api)
    code = (
        "import asyncio, json, sys\n"
        "from datasette.app import Datasette\n"
        "async def main():\n"
        "    ds = Datasette([sys.argv[1]])\n"
        "    await ds.invoke_startup()\n"
        "    r = await ds.client.get('/work/notes.json?_shape=array')\n"
        "    t = await ds.client.get('/work.json')\n"
        "    print(json.dumps([r.status_code, r.json(), t.status_code,\n"
        "                      [x['name'] for x in t.json()['tables']]]))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    status, rows, db_status, tables = json.loads(out.stdout)
    assert status == 200 and db_status == 200
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert tables == ["notes"]


@needs_cli
def test_the_stock_sqlite3_cli_reads_and_changes_the_file(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    db = _used_file(tmp_path, write_config, api)
    assert SQLITE3 is not None
    out = subprocess.run(
        [
            SQLITE3,
            str(db),
            ".tables",
            "SELECT count(*) FROM notes;",
            "DROP TABLE notes;",
            ".tables",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.split() == ["notes", "3"]


def test_duckdb_reads_a_used_file(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from tests.test_plain_copy import duckdb_with_sqlite

    con = duckdb_with_sqlite()
    db = _used_file(tmp_path, write_config, api)
    try:
        con.execute(f"ATTACH '{db}' AS used (TYPE sqlite, READ_ONLY)")
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'used'"
        ).fetchall()
        rows = con.execute("SELECT count(*) FROM used.notes").fetchone()
    finally:
        con.close()
    assert tables == [("notes",)] and rows == (3,)


@pytest.mark.parametrize(
    "create",
    [
        "CREATE VIRTUAL TABLE notes_fts USING /* was: USING remotetables(notes) */ fts5(body)",
        'CREATE VIRTUAL TABLE "archive USING remotetables" USING fts5(body)',
        "CREATE VIRTUAL TABLE [x USING remotetables(y)] USING fts5(body)",
        "CREATE VIRTUAL TABLE c -- USING remotetables\n USING fts5(body, 'remotetables')",
        "CREATE VIRTUAL TABLE 'using remotetables' USING fts5(body)",
    ],
)
def test_migration_never_drops_another_modules_table(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path, create: str
) -> None:
    """Only a table whose module (the name after the table name's USING, comments and quoted
    names aside) is remotetables is moved out of an old file; an FTS5 table whose comment or
    name says "USING remotetables" keeps its rows."""
    import sqlite3

    db = tmp_path / "fts.db"
    con = sqlite3.connect(db)
    con.execute(create)
    name = con.execute("SELECT name FROM sqlite_schema WHERE sql LIKE 'CREATE VIRTUAL%'").fetchone()
    con.execute(f"INSERT INTO \"{name[0]}\"(body) VALUES ('precious words')")
    con.commit()
    con.close()
    before = _stored(db)
    toml = incidents_table("remote_incidents", "link", api.base_url)
    with remotetables.connect(db, write_config(toml)) as conn:
        assert conn.execute("SELECT count(*) FROM remote_incidents").fetchone() == (250,)
    assert _stored(db) == before
    rows = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
            "sys.argv[2]).fetchall())",
            str(db),
            f'SELECT body FROM "{name[0]}" WHERE "{name[0]}" MATCH \'precious\'',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rows.strip() == "[('precious words',)]"


@pytest.mark.parametrize(
    ("sql", "ours"),
    [
        ('CREATE VIRTUAL TABLE "t" USING remotetables(t)', True),
        ("create virtual table t using RemoteTables", True),
        ("CREATE VIRTUAL TABLE IF NOT EXISTS main.t USING remotetables", True),
        ('CREATE VIRTUAL TABLE [a b] /* x */ USING -- y\n "remotetables"(a)', True),
        ("CREATE VIRTUAL TABLE t USING fts5(x) /* USING remotetables */", False),
        ('CREATE VIRTUAL TABLE "t USING remotetables" USING fts5(x)', False),
        ("CREATE VIRTUAL TABLE t USING remotetables2(x)", False),
        ("CREATE TABLE t(USING remotetables)", False),
        ('CREATE VIRTUAL TABLE "using" USING fts5(remotetables)', False),
        ("CREATE VIEW v AS SELECT 'CREATE VIRTUAL TABLE t USING remotetables'", False),
    ],
)
def test_is_remote_table_sql_reads_the_module_name_only(sql: str, ours: bool) -> None:
    from remotetables.vtable import is_remote_table_sql

    assert is_remote_table_sql(sql) is ours
