"""Plain copies (`remotetables export` / `sync`): declared types and PRIMARY KEY, atomic
replace, incremental `updated_since`, a failed cycle that leaves the previous copy; DuckDB's
sqlite scanner reads the result."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click.testing
import pytest

import remotetables
from remotetables.cli import main
from remotetables.demo.api.faults import Fault
from remotetables.demo.api.server import IncidentsAPI
from remotetables.plain import parse_interval, write_plain
from tests.conftest import incidents_table


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "sys_id": f"r{i:03d}",
            "seq": i,
            "title": f"row {i}",
            "state": "open",
            "done": i % 2 == 0,
            "labels": ["x", i],
            "updated_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
        }
        for i in range(n)
    ]


SYNC_TOML = """
[tables.items]
url = "{base}/styles/github/items"
pagination = "link"
page_size_param = "per_page"
max_page_size = 10
params = { state = "all" }
key = "sys_id"
updated_since = { param = "since", column = "updated_at" }
[tables.items.columns]
sys_id = "TEXT"
seq = "INTEGER"
title = "TEXT"
done = "BOOLEAN"
labels = "JSON"
updated_at = "TEXT"
"""


@pytest.fixture
def items_api() -> Iterator[IncidentsAPI]:
    with IncidentsAPI({"items": _rows(25)}) as api:
        yield api


@pytest.fixture
def items_config(items_api: IncidentsAPI, write_config: Callable[..., Path]) -> Path:
    return write_config(SYNC_TOML, base=items_api.base_url)


def duckdb_with_sqlite() -> Any:
    """A DuckDB connection with the sqlite scanner loaded from its wheel, or a skip."""
    duckdb = pytest.importorskip("duckdb")
    ext = pytest.importorskip(
        "duckdb_extension_sqlite_scanner",
        reason="the sqlite scanner wheel (duckdb-extension-sqlite-scanner) is not installed",
    )
    path = Path(ext.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = path / "sqlite_scanner.duckdb_extension"
    if not path.exists():
        pytest.skip(f"no sqlite scanner for duckdb {duckdb.__version__} in {path.parent.parent}")
    # never INSTALL: that downloads from DuckDB's extension site
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute(f"LOAD '{path}'")
    return con


def _owner(_spec: object) -> str:
    return "(public)"


def _copy(config: Path, target: Path, **kw: Any) -> list[Any]:
    with remotetables.connect(":memory:", config, sleep=lambda s: None) as conn:
        return write_plain(conn, list(conn.runtime.config.tables.values()), target, _owner, **kw)


def _read(db: Path, sql: str) -> list[Any]:
    """Read the copy in another process with stdlib sqlite3 (a tool without the module)."""
    code = (
        "import sqlite3, sys, json\n"
        "print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db), sql], capture_output=True, text=True, check=True
    )
    return [tuple(r) for r in json.loads(out.stdout)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_declares_types_and_primary_key(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    toml = incidents_table("inc", "link", api.base_url, extra='key = "sys_id"\n')
    target = tmp_path / "plain.db"
    result = click.testing.CliRunner().invoke(
        main, ["export", str(tmp_path / "w.db"), "--to", str(target), "-c", str(write_config(toml))]
    )
    assert result.exit_code == 0, result.output
    info = _read(target, "SELECT name, type, pk FROM pragma_table_info('inc')")
    assert info[:2] == [("sys_id", "TEXT", 1), ("number", "TEXT", 0)]
    types = {name: kind for name, kind, _ in info}
    assert types["priority"] == "INTEGER" and types["score"] == "REAL"
    assert types["active"] == "BOOLEAN" and types["tags"] == "TEXT"
    assert _read(target, "SELECT count(*) FROM inc") == [(250,)]


def test_duckdb_reads_an_export_with_key_and_types(items_config: Path, tmp_path: Path) -> None:
    """DuckDB's sqlite scanner, loaded from the duckdb-extension-sqlite-scanner wheel (no
    download: DuckDB's own INSTALL fetches it from the network)."""
    target = tmp_path / "plain.db"
    _copy(items_config, target)
    con = duckdb_with_sqlite()
    try:
        con.execute(f"ATTACH '{target}' AS plain (TYPE sqlite, READ_ONLY)")
        described = {r[0]: (r[1], r[3]) for r in con.execute("DESCRIBE plain.items").fetchall()}
        assert described["sys_id"] == ("VARCHAR", "PRI")
        assert described["seq"] == ("BIGINT", None)
        total = con.execute("SELECT count(*), sum(seq) FROM plain.items").fetchone()
    finally:
        con.close()
    assert total == (25, sum(range(25)))


def test_a_failed_copy_leaves_the_previous_file_and_never_an_empty_one(
    items_api: IncidentsAPI, items_config: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "new.db"
    items_api.faults.add(
        Fault("status", path="/styles/github/items", page=2, status=503, times=None)
    )
    with pytest.raises(remotetables.RemoteError):
        _copy(items_config, fresh)
    assert not fresh.exists()  # not a 0-byte file
    items_api.faults.clear()
    target = tmp_path / "plain.db"
    _copy(items_config, target)
    before = _digest(target)
    items_api.dataset("items").update("r001", {"title": "changed"})
    items_api.faults.add(
        Fault("status", path="/styles/github/items", page=2, status=503, times=None)
    )
    with pytest.raises(remotetables.RemoteError):
        _copy(items_config, target)
    assert _digest(target) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_incremental_sync_sends_since_and_replaces_changed_rows(
    items_api: IncidentsAPI, items_config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "plain.db"
    first = _copy(items_config, target, incremental=True)
    assert (first[0].mode, first[0].total) == ("full", 25)
    assert all("since" not in r.query for r in items_api.requests)
    ds = items_api.dataset("items")
    ds.update("r003", {"title": "changed", "updated_at": "2026-02-01T00:00:00Z"})
    ds.create({**_rows(1)[0], "updated_at": "2026-02-02T00:00:00Z", "title": "new"}, sys_id="n1")
    items_api.clear_requests()
    second = _copy(items_config, target, incremental=True)
    assert [r.query.get("since") for r in items_api.requests] == [["2026-01-01T00:00:24Z"]]
    # at or after: the newest row already copied comes again, with the two changed ones
    assert (second[0].mode, second[0].rows, second[0].total) == ("incremental", 3, 26)
    assert _read(target, "SELECT title FROM items WHERE sys_id IN ('r003', 'n1') ORDER BY 1") == [
        ("changed",),
        ("new",),
    ]
    meta = _read(target, "SELECT mode, since, rows FROM _remotetables_export")
    assert meta == [("incremental", "2026-01-01T00:00:24Z", 26)]
    # --full (incremental off) copies whole: a row deleted at the API goes
    ds.delete("r000")
    third = _copy(items_config, target)
    assert (third[0].mode, third[0].total) == ("full", 25)


def test_sync_command_cycles_and_a_failed_cycle_keeps_the_copy(
    items_api: IncidentsAPI, items_config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "plain.db"
    args = ["sync", str(tmp_path / "w.db"), "--to", str(target), "-c", str(items_config)]
    runner = click.testing.CliRunner()
    result = runner.invoke(main, [*args, "--every", "0s", "--cycles", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].endswith("items: 25 rows")
    assert "items: 1 updated since 2026-01-01T00:00:24Z, 25 rows" in lines[1]
    before = _digest(target)
    items_api.dataset("items").update("r002", {"title": "x", "updated_at": "2027-01-01T00:00:00Z"})
    items_api.faults.add(Fault("status", path="/styles/github/items", status=403, times=None))
    result = runner.invoke(main, [*args, "--every", "0", "--cycles", "1"])
    assert result.exit_code == 1
    assert f"sync failed, {target} keeps its previous copy" in result.output
    assert _digest(target) == before
    items_api.faults.clear()
    result = runner.invoke(main, [*args, "--every", "0", "--cycles", "1"])
    assert result.exit_code == 0, result.output
    assert _read(target, "SELECT title FROM items WHERE sys_id = 'r002'") == [("x",)]


def test_a_reader_with_the_file_open_sees_the_next_copy(
    items_api: IncidentsAPI, items_config: Path, tmp_path: Path
) -> None:
    """The copy is updated in place (one transaction), not renamed over: a program that keeps
    the file open (Datasette does) sees the new rows without reopening it."""
    import apsw

    target = tmp_path / "plain.db"
    _copy(items_config, target)
    reader = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        q = "SELECT title FROM items WHERE sys_id = 'r004'"
        assert reader.execute(q).fetchall() == [("row 4",)]
        items_api.dataset("items").update("r004", {"title": "fresh"})
        _copy(items_config, target)
        assert reader.execute(q).fetchall() == [("fresh",)]
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600.0), ("30s", 30.0), ("1h", 3600.0), ("2.5", 2.5)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


def test_parse_interval_refuses_nonsense() -> None:
    with pytest.raises(remotetables.ProgrammingError, match="10m, 30s, 1h"):
        parse_interval("soon")


def test_export_stamp_is_injected(items_config: Path, tmp_path: Path) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    _copy(items_config, tmp_path / "p.db", now=lambda: when)
    assert _read(tmp_path / "p.db", "SELECT exported_at FROM _remotetables_export") == [
        ("2030-01-02T03:04:05Z",)
    ]


def test_datasette_row_links_use_the_key(
    items_api: IncidentsAPI, items_config: Path, tmp_path: Path
) -> None:
    """With the key as PRIMARY KEY, Datasette's row page is /db/table/KEY, the same after every
    copy (it was the rowid, which a re-export renumbers)."""
    pytest.importorskip("datasette")
    target = tmp_path / "plain.db"
    _copy(items_config, target)
    items_api.dataset("items").delete("r000")  # the next copy holds one row fewer
    _copy(items_config, target)
    code = (
        "import asyncio, json, sys\n"
        "from datasette.app import Datasette\n"
        "async def main():\n"
        "    ds = Datasette([sys.argv[1]])\n"
        "    r = await ds.client.get('/plain/items/r007.json?_shape=array')\n"
        "    print(json.dumps([r.status_code, r.json()]))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    status, rows = json.loads(out.stdout)
    assert status == 200 and [(r["sys_id"], r["seq"]) for r in rows] == [("r007", 7)]


def _native(target: Path, create: str, *more: str) -> str:
    """A file another program wrote (stdlib sqlite3, no module); its digest."""
    import sqlite3

    con = sqlite3.connect(target)
    for sql in (create, *more):
        con.execute(sql)
    con.commit()
    con.close()
    return _digest(target)


@pytest.mark.parametrize("command", ["export", "sync"])
@pytest.mark.parametrize("name", ["items", "ITEMS"])
def test_a_native_table_of_the_same_name_is_never_replaced(
    items_api: IncidentsAPI, items_config: Path, tmp_path: Path, command: str, name: str
) -> None:
    """README: "Other tables of the target stay". A table that no copy wrote (it is not in
    _remotetables_export) keeps its rows: the command fails naming the table and the file, the
    file is unchanged and the API is not even asked."""
    target = tmp_path / "plain.db"
    before = _native(
        target,
        f"CREATE TABLE {name}(precious TEXT, n INT)",
        f"INSERT INTO {name} VALUES ('MY DATA', 1)",
    )
    items_api.clear_requests()
    args = [command, str(tmp_path / "w.db"), "--to", str(target), "-c", str(items_config)]
    if command == "sync":
        args += ["--every", "0", "--cycles", "3"]
    result = click.testing.CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"{target} already has a table {name} that export or sync did not write" in (
        result.output
    )
    assert "--replace" in result.output and "nothing was changed" in result.output
    assert result.output.count("already has a table") == 1  # sync stops: no cycle can fix it
    assert _digest(target) == before
    assert _read(target, f"SELECT precious FROM {name}") == [("MY DATA",)]
    assert items_api.requests == []


def test_replace_replaces_a_native_table_on_purpose(items_config: Path, tmp_path: Path) -> None:
    target = tmp_path / "plain.db"
    _native(target, "CREATE TABLE items(precious TEXT)", "INSERT INTO items VALUES ('old')")
    _native(target, "CREATE TABLE mine(x)", "INSERT INTO mine VALUES (1)")
    args = ["export", str(tmp_path / "w.db"), "--to", str(target), "-c", str(items_config)]
    result = click.testing.CliRunner().invoke(main, [*args, "--replace"])
    assert result.exit_code == 0, result.output
    assert _read(target, "SELECT count(*) FROM items") == [(25,)]
    assert _read(target, "SELECT x FROM mine") == [(1,)]  # other tables stay
    # recorded now: the next export replaces it without --replace
    result = click.testing.CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "create",
    [
        "CREATE VIEW items AS SELECT 1 AS one",
        "CREATE TABLE t(a); CREATE INDEX Items ON t(a)",
    ],
)
def test_a_view_or_index_of_the_name_is_refused_even_with_replace(
    items_config: Path, tmp_path: Path, create: str
) -> None:
    target = tmp_path / "plain.db"
    before = _native(target, *create.split("; "))
    with remotetables.connect(":memory:", items_config, sleep=lambda s: None) as conn:
        specs = list(conn.runtime.config.tables.values())
        with pytest.raises(remotetables.ProgrammingError, match=r"already has a (view|index)"):
            write_plain(conn, specs, target, _owner, replace=True)
    assert _digest(target) == before
