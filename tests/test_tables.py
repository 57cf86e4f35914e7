"""Remote tables through SQL against the project's loopback test API: styles, laziness,
pushdown, types, errors, the database file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.demo.api.server import Fault, IncidentsAPI
from remotetables.errors import (
    CoercionError,
    MissingParameterError,
    PaginationError,
    RemoteError,
    RemoteProtocolError,
    TransportError,
    UnknownTableError,
)
from tests.conftest import STYLE_TABLES, incidents_table

STYLES = sorted(STYLE_TABLES)


@pytest.fixture
def _connect(
    open_conn: Callable[..., remotetables.Connection],
) -> Callable[..., remotetables.Connection]:
    def make(
        _unused: object, toml: str, db: str = ":memory:", **kw: object
    ) -> remotetables.Connection:
        return open_conn(toml, db, **kw)

    return make


def _all_numbers(api: IncidentsAPI, **filters: str) -> list[str]:
    rows = api.dataset("incidents").snapshot.rows
    return [r["number"] for r in rows if all(str(r.get(k)) == v for k, v in filters.items())]


@pytest.mark.parametrize("style", STYLES)
def test_each_style_reads_every_row_once(
    style: str,
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", style, fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    numbers = [n for (n,) in conn.execute("SELECT number FROM t")]
    assert numbers == _all_numbers(fresh_api)
    assert len(numbers) == 250
    stats = conn.last_stats
    assert stats["rows"] == 250
    assert stats["pages"] >= 250 // 40


@pytest.mark.parametrize("style", STYLES)
def test_each_style_with_pushed_filter(
    style: str,
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", style, fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    got = [n for (n,) in conn.execute("SELECT number FROM t WHERE state = 'open'")]
    assert got == _all_numbers(fresh_api, state="open")
    sent = [r.query.get("state") for r in fresh_api.requests if r.path.endswith("/incidents")]
    assert sent and all(s == ["open"] for s in sent)


def test_limit_fetches_exactly_one_page(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config,
        incidents_table(
            "t", "link", fresh_api.base_url, max_page_size=100, extra="cache_ttl = 0\n"
        ),
    )
    rows = conn.execute("SELECT number FROM t LIMIT 10").fetchall()
    assert len(rows) == 10
    assert conn.last_stats["requests"] == 1
    reqs = [r for r in fresh_api.requests if r.path.endswith("/incidents")]
    assert len(reqs) == 1 and reqs[0].query["limit"] == ["10"]


def test_limit_with_order_by_is_not_pushed(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", "link", fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    got = conn.execute("SELECT number FROM t ORDER BY number DESC LIMIT 2").fetchall()
    assert [n for (n,) in got] == sorted(_all_numbers(fresh_api), reverse=True)[:2]


@pytest.mark.parametrize("prefetch", [False, True], ids=["strictly-lazy", "prefetch"])
def test_lazy_pages_follow_consumption(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
    prefetch: bool,
) -> None:
    """Page N+1 only once SQLite needs it; with prefetch (the fast path), at most one page
    ahead, and only once the scan has asked for page 2."""
    conn = _connect(
        write_config,
        incidents_table(
            "t", "cursor", fresh_api.base_url, max_page_size=25, extra="cache_ttl = 0\n"
        ),
        environ={} if prefetch else {"REMOTETABLES_FAST_PATH": "off"},
    )

    def pages() -> int:
        return len([r for r in fresh_api.requests if r.path.endswith("/incidents")])

    cur = conn.execute("SELECT number FROM t")
    assert pages() == 1
    cur.fetchmany(25)
    assert pages() == 1  # nothing ahead before page 2 is asked for (a LIMIT in page 1)
    cur.fetchone()  # the 26th row needs page 2
    assert pages() in ((2, 3) if prefetch else (2,))
    cur.fetchmany(24)  # the rest of page 2
    assert pages() <= (3 if prefetch else 2)


def test_in_list_one_request_per_value(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", "offset", fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    got = sorted(n for (n,) in conn.execute("SELECT number FROM t WHERE priority IN (1, 5)"))
    assert got == sorted(
        _all_numbers(fresh_api, priority="1") + _all_numbers(fresh_api, priority="5")
    )
    pushed = {
        tuple(r.query.get("priority", []))
        for r in fresh_api.requests
        if r.path.endswith("/incidents")
    }
    assert pushed == {("1",), ("5",)}


def test_pushdown_converts_like_sqlite(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(write_config, incidents_table("t", "link", fresh_api.base_url))
    expected = sorted(_all_numbers(fresh_api, priority="2"))
    for literal in ("2", "'2'", "' 2'", "2.0", "'2e0'", "'02'"):
        got = sorted(n for (n,) in conn.execute(f"SELECT number FROM t WHERE priority = {literal}"))
        assert got == expected, literal
    assert conn.execute("SELECT count(*) FROM t WHERE priority = 'two'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM t WHERE priority = NULL").fetchone() == (0,)


def test_api_that_ignores_filters_still_gives_right_rows(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    toml = incidents_table(
        "t", "link", fresh_api.base_url, extra='cache_ttl = 0\nparams = { _ignore_filters = "1" }\n'
    )
    conn = _connect(write_config, toml)
    got = [
        n for (n,) in conn.execute("SELECT number FROM t WHERE state = 'closed' AND priority = 3")
    ]
    assert got == _all_numbers(fresh_api, state="closed", priority="3")


def test_required_parameter(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    toml = incidents_table("t", "link", api.base_url).replace(
        'state = { type = "TEXT", param = "state" }',
        'state = { type = "TEXT", param = "state", required = true }',
    )
    conn = _connect(write_config, toml)
    with pytest.raises(MissingParameterError, match="state"):
        conn.execute("SELECT * FROM t").fetchall()
    assert conn.execute("SELECT count(*) FROM t WHERE state = 'new'").fetchone() == (
        len(_all_numbers(api, state="new")),
    )


def test_types_paths_and_json(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(write_config, incidents_table("t", "link", api.base_url))
    first = api.dataset("incidents").snapshot.rows[0]
    row = conn.execute(
        "SELECT priority, active, caller_name, tags, score, typeof(priority), typeof(active), typeof(score) FROM t WHERE number = ?",
        (first["number"],),
    ).fetchone()
    assert row is not None
    assert row[0] == first["priority"]
    assert row[1] == int(first["active"])
    assert row[2] == first["caller"]["name"]
    assert row[3] is None or row[3].startswith("[")
    assert row[5:] == ("integer", "integer", "real")


def test_missing_fields_are_null(
    write_config: Callable[..., Path], _connect: Callable[..., remotetables.Connection]
) -> None:
    data = {"incidents": [{"number": "A", "assigned_to": None}, {"number": "B"}]}
    with IncidentsAPI(datasets=data) as srv:
        conn = _connect(write_config, incidents_table("t", "link", srv.base_url))
        assert conn.execute("SELECT number, priority, caller_name FROM t").fetchall() == [
            ("A", None, None),
            ("B", None, None),
        ]


def test_coercion_error_names_table_column_row(
    write_config: Callable[..., Path], _connect: Callable[..., remotetables.Connection]
) -> None:
    data = {"incidents": [{"number": "A", "priority": 1}, {"number": "B", "priority": "high"}]}
    with IncidentsAPI(datasets=data) as srv:
        conn = _connect(write_config, incidents_table("t", "link", srv.base_url))
        with pytest.raises(CoercionError) as info:
            conn.execute("SELECT * FROM t").fetchall()
        assert (info.value.table, info.value.column, info.value.row) == ("t", "priority", 2)
        assert "'high'" in str(info.value)
        nullable = incidents_table("t", "link", srv.base_url).replace(
            'priority = { type = "INTEGER", param = "priority" }',
            'priority = { type = "INTEGER", param = "priority", on_error = "null" }',
        )
        conn2 = _connect(write_config, nullable)
        assert conn2.execute("SELECT number, priority FROM t").fetchall() == [("A", 1), ("B", None)]


def test_integer_beyond_64_bits_is_a_clear_error(
    write_config: Callable[..., Path], _connect: Callable[..., remotetables.Connection]
) -> None:
    data = {"incidents": [{"number": "A", "reopen_count": 12345678901234567890}]}
    with IncidentsAPI(datasets=data) as srv:
        conn = _connect(write_config, incidents_table("t", "link", srv.base_url))
        with pytest.raises(CoercionError, match="64-bit integer range") as info:
            conn.execute("SELECT number, reopen_count FROM t").fetchall()
        assert isinstance(info.value, remotetables.Error)
        assert (info.value.table, info.value.column, info.value.row) == ("t", "reopen_count", 1)


def test_bad_value_in_an_unread_column_does_not_fail_the_query(
    write_config: Callable[..., Path], _connect: Callable[..., remotetables.Connection]
) -> None:
    """The cache keeps whole rows; a value it cannot convert in a column the query does not
    read leaves the scan uncached instead of failing it."""
    data = {
        "incidents": [{"number": "A", "reopen_count": 1}, {"number": "B", "reopen_count": "abc"}]
    }
    with IncidentsAPI(datasets=data) as srv:
        conn = _connect(write_config, incidents_table("t", "link", srv.base_url))
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(2,)]
        assert conn.execute("SELECT number FROM t").fetchall() == [("A",), ("B",)]
        assert conn.last_stats["cache_hits"] == 0 and conn.last_stats["requests"] == 1
        with pytest.raises(CoercionError) as info:
            conn.execute("SELECT number, reopen_count FROM t").fetchall()
        assert (info.value.column, info.value.row) == ("reopen_count", 2)


def _projected_table(base: str, fields: str, in_style: str, filter_only: bool = True) -> str:
    """ServiceNow-style table whose rows carry only ``fields`` (sysparm_fields), while the API
    still filters on ``state`` and ``priority`` (declared ``filter_only`` when asked)."""
    fo = ", filter_only = true" if filter_only else ""
    return f"""
[tables.p]
url = "{base}/api/now/table/incident"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 50
params = {{ sysparm_fields = "{fields}" }}
[tables.p.columns]
number = "TEXT"
state = {{ type = "TEXT", param = "state"{fo} }}
priority = {{ type = "INTEGER", param = "priority", in = "{in_style}"{fo} }}
"""


def test_a_filter_only_parameter_shows_the_value_the_query_gave(
    fresh_api: IncidentsAPI, open_conn: Callable[..., remotetables.Connection]
) -> None:
    """Many APIs filter on a parameter their rows do not carry: a column declared
    ``filter_only`` echoes the pushed value instead of being dropped by the local re-check."""
    rows = fresh_api.dataset("incidents").snapshot.rows
    conn = open_conn(_projected_table(fresh_api.base_url, "number", "separate"))
    closed = sorted(r["number"] for r in rows if r["state"] == "closed")
    got = conn.execute("SELECT number, state, priority FROM p WHERE state = 'closed'").fetchall()
    assert sorted(n for n, _, _ in got) == closed
    assert {(s, p) for _, s, p in got} == {("closed", None)}
    # several TEXT values: one `=` per value, as the README says
    both = conn.execute(
        "SELECT state, count(*) FROM (SELECT state FROM p WHERE state = 'closed' "
        "UNION ALL SELECT state FROM p WHERE state = 'new') GROUP BY 1"
    ).fetchall()
    assert dict(both) == {s: sum(r["state"] == s for r in rows) for s in ("closed", "new")}
    # IN as one request per value: each row takes its own request's value
    got = conn.execute("SELECT priority, count(*) FROM p WHERE priority IN (1, 2) GROUP BY 1")
    want = {p: sum(r["priority"] == p for r in rows) for p in (1, 2)}
    assert dict(got.fetchall()) == want
    # the whole-table scan (cached) lacks the fields: it must not answer narrower queries
    assert conn.execute("SELECT count(*) FROM p").fetchone() == (len(rows),)
    n = conn.execute("SELECT count(*) FROM p WHERE priority = 3").fetchone()
    assert n == (sum(r["priority"] == 3 for r in rows),)
    assert conn.last_stats["cache_hits"] == 0
    # several values in one request: which value a row matched is unknown; say so
    conn2 = open_conn(_projected_table(fresh_api.base_url, "number", "repeat"))
    with pytest.raises(remotetables.ProgrammingError, match='set in = "separate"'):
        conn2.execute("SELECT number FROM p WHERE priority IN (1, 2)").fetchall()
    # rows that carry the field are re-checked as before
    conn3 = open_conn(
        _projected_table(fresh_api.base_url, "number,state,priority", "repeat", False)
    )
    got = conn3.execute("SELECT count(*) FROM p WHERE priority IN (1, 2)").fetchone()
    assert got == (want[1] + want[2],)


def test_filtered_scan_converts_only_the_rows_that_pass(
    write_config: Callable[..., Path], _connect: Callable[..., remotetables.Connection]
) -> None:
    """Without the cache, a filter applied here converts the checked column first and whole
    rows only for the items that pass: an error names the row's place in the page."""
    data = {
        "incidents": [
            {"number": "A", "short_description": "x", "priority": 1},
            {"number": "B", "short_description": "y", "priority": "high"},
            {"number": "C", "short_description": "x", "priority": 3},
            {"number": "D", "short_description": "w", "priority": "low"},
        ]
    }
    with IncidentsAPI(datasets=data) as srv:
        toml = incidents_table("t", "link", srv.base_url, extra="cache_ttl = 0\n")
        conn = _connect(write_config, toml)
        # a literal: a bound text parameter is left to SQLite (it may compare as a number)
        sql = "SELECT number, priority FROM t WHERE short_description = '{}'"
        assert conn.execute(sql.format("x")).fetchall() == [("A", 1), ("C", 3)]
        for value, row in (("y", 2), ("w", 4)):  # the row in the page, not in the selection
            with pytest.raises(CoercionError) as info:
                conn.execute(sql.format(value)).fetchall()
            assert (info.value.column, info.value.row) == ("priority", row)


def test_join_with_native_table(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(write_config, incidents_table("t", "link", api.base_url))
    conn.execute("CREATE TABLE owners(name TEXT PRIMARY KEY, team TEXT)")
    conn.execute("INSERT INTO owners VALUES ('alice', 'red'), ('bob', 'blue')")
    got = conn.execute(
        "SELECT o.team, count(*) FROM owners o JOIN t ON t.assigned_to = o.name GROUP BY o.team ORDER BY o.team"
    ).fetchall()
    rows = api.dataset("incidents").snapshot.rows
    assert got == [
        ("blue", sum(1 for r in rows if r.get("assigned_to") == "bob")),
        ("red", sum(1 for r in rows if r.get("assigned_to") == "alice")),
    ]


def test_tables_in_file_without_secrets_and_no_such_module(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
    tmp_path: Path,
) -> None:
    """With persist_tables (an explicit option), the stored CREATE holds no secret and a
    process without the module gets 'no such module' on it only."""
    db = tmp_path / "work.db"
    toml = incidents_table("remote_incidents", "link", api.base_url)
    conn = _connect(write_config, toml, db=str(db), persist_tables=True)
    conn.execute("CREATE TABLE notes(x)")
    conn.execute("INSERT INTO notes VALUES (42)")
    conn.commit()
    schema = conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE name = 'remote_incidents'"
    ).fetchone()
    assert schema == (
        "remote_incidents",
        'CREATE VIRTUAL TABLE "remote_incidents" USING remotetables(remote_incidents)',
    )
    conn.close()
    # a process without the module: stdlib sqlite3 (never in the same process as apsw)
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "print(c.execute('select x from notes').fetchone()[0])\n"
        "try:\n    c.execute('select * from remote_incidents')\n"
        "except sqlite3.OperationalError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["42", "no such module: remotetables"]


def test_unknown_table_in_file(
    api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "w.db")
    gone = incidents_table("gone", "link", api.base_url)
    _connect(write_config, gone, db=db, persist_tables=True).close()
    other = incidents_table("other", "link", api.base_url)
    conn = _connect(write_config, other, db=db, persist_tables=True)
    with pytest.raises(UnknownTableError, match="unknown remote table 'gone'"):
        conn.execute("SELECT * FROM gone").fetchall()
    with pytest.raises(UnknownTableError):
        conn.runtime.table("nope")


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        (Fault(kind="status", status=500, times=10), RemoteError, "HTTP 500"),
        (Fault(kind="status", status=404, times=1), RemoteError, "HTTP 404"),
        (Fault(kind="invalid_json", times=10), RemoteProtocolError, "not valid JSON"),
        (Fault(kind="html_error", times=10), RemoteError, "HTML"),
        (Fault(kind="truncated_body", times=10), TransportError, "truncated"),
        (Fault(kind="wrong_content_type", times=10), RemoteProtocolError, "not JSON"),
    ],
)
def test_http_errors_are_clear(
    fault: Fault,
    error: type[Exception],
    words: str,
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", "link", fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    fresh_api.faults.add(fault)
    with pytest.raises(error) as info:
        conn.execute("SELECT * FROM t").fetchall()
    msg = str(info.value)
    assert words in msg
    assert "table t" in msg and fresh_api.base_url in msg
    assert isinstance(info.value, RemoteError) and info.value.table == "t"


def test_error_mid_scan_caches_nothing(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", "offset", fresh_api.base_url, extra="concurrency = 1\n")
    )
    fresh_api.faults.add(Fault(kind="status", status=500, times=10, offset=120))
    with pytest.raises(RemoteError):
        conn.execute("SELECT * FROM t").fetchall()
    fresh_api.faults.clear()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (250,)
    assert conn.last_stats["cache_hits"] == 0


def test_pagination_loop_and_runaway(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    conn = _connect(
        write_config, incidents_table("t", "link", fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    fresh_api.faults.add(Fault(kind="next_loop", times=100))
    with pytest.raises(PaginationError, match="loops"):
        conn.execute("SELECT * FROM t").fetchall()
    fresh_api.faults.clear()
    conn2 = _connect(
        write_config,
        incidents_table("t", "link", fresh_api.base_url, extra="cache_ttl = 0\nmax_pages = 3\n"),
    )
    with pytest.raises(PaginationError, match="more than 3 pages"):
        conn2.execute("SELECT * FROM t").fetchall()


@pytest.mark.parametrize("style", ["offset", "page"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_known_total_over_max_pages_fails_after_the_first_page(
    style: str, concurrency: int, fresh_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    extra = f"cache_ttl = 0\nmax_pages = 3\nconcurrency = {concurrency}\n"
    conn = open_conn(incidents_table("t", style, fresh_api.base_url, extra=extra))
    with pytest.raises(PaginationError, match="more than 3 pages"):
        conn.execute("SELECT * FROM t").fetchall()
    assert len([r for r in fresh_api.requests if r.path.endswith("/incidents")]) == 1
    # a LIMIT that the first pages can meet is no runaway
    assert len(conn.execute("SELECT * FROM t LIMIT 5").fetchall()) == 5


def test_next_link_to_foreign_origin_is_refused(
    fresh_api: IncidentsAPI,
    write_config: Callable[..., Path],
    _connect: Callable[..., remotetables.Connection],
) -> None:
    with IncidentsAPI(n_rows=5) as other:
        conn = _connect(
            write_config, incidents_table("t", "link", fresh_api.base_url, extra="cache_ttl = 0\n")
        )
        fresh_api.faults.add(Fault(kind="next_foreign", url=other.base_url, times=1))
        with pytest.raises(PaginationError, match="not the table's origin"):
            conn.execute("SELECT * FROM t").fetchall()
        assert other.requests == []


def test_unpushed_equality_is_applied_in_filter_with_limit(
    fresh_api: IncidentsAPI, open_conn: Callable[..., remotetables.Connection]
) -> None:
    conn = open_conn(
        incidents_table("t", "link", fresh_api.base_url, max_page_size=50, extra="cache_ttl = 0\n")
    )
    rows = fresh_api.dataset("incidents").snapshot.rows
    target = rows[120]["short_description"]
    expected = [r["number"] for r in rows if r["short_description"] == target][:2]
    got = [
        n
        for (n,) in conn.execute(
            f"SELECT number FROM t WHERE short_description = '{target}' LIMIT 2"
        )
    ]
    assert got == expected
    reqs = [r for r in fresh_api.requests if r.path.endswith("/incidents")]
    # pages stay at the API's maximum (the filter is applied here), and paging stops once 2 rows matched
    assert all(r.query["limit"] == ["50"] for r in reqs)
    assert conn.last_stats["rows"] == len(expected)


@pytest.mark.parametrize("key", [False, True])
def test_or_merge_is_right_when_the_query_reads_few_columns(
    key: bool, fresh_api: IncidentsAPI, open_conn: Callable[..., remotetables.Connection]
) -> None:
    """SQLite answers an OR of two indexable terms with two scans merged by rowid: rowids must
    identify whole rows even when the query reads only some columns (no cache: rows are built
    for the columns read)."""
    extra = "cache_ttl = 0\n" + ('key = "sys_id"\n' if key else "")
    conn = open_conn(
        incidents_table("t", "link", fresh_api.base_url, max_page_size=100, extra=extra)
    )
    rows = fresh_api.dataset("incidents").snapshot.rows
    want = sorted(
        (r["state"], r["priority"]) for r in rows if r["priority"] == 1 or r["state"] == "closed"
    )
    for sql in (
        "SELECT state, priority FROM t WHERE priority = 1 OR state = 'closed'",
        "SELECT state, priority FROM t WHERE priority = 1 OR short_description = 'x' OR state = 'closed'",
    ):
        got = sorted(conn.execute(sql).fetchall())
        assert got == want, sql
    n = conn.execute("SELECT count(*) FROM t WHERE priority = 1 OR state = 'closed'").fetchone()
    assert n == (len(want),)


def test_wall_time_is_the_statements_own(
    fresh_api: IncidentsAPI, open_conn: Callable[..., remotetables.Connection]
) -> None:
    """A statement's wall_time ends when SQLite finishes it, not when the next one starts."""
    import time

    conn = open_conn(incidents_table("t", "link", fresh_api.base_url, extra="cache_ttl = 0\n"))
    t0 = time.perf_counter()
    conn.execute("SELECT count(*) FROM t").fetchall()
    elapsed = time.perf_counter() - t0
    time.sleep(0.3)  # idle after the statement: none of it is the statement's
    assert 0 < conn.last_stats["wall_time"] <= elapsed
    assert conn.execute("SELECT remotetables_stats()").fetchone()[0].count('"wall_time"') == 1
    assert conn.last_stats["wall_time"] <= elapsed
