"""The fast path (remotetables.decoders and the scan's prefetch) never changes a result.

- msgspec-decoded pages give exactly the tuples the general row builder gives, or fall back
  (that page only) to the general path;
- a LIMIT inside page 1 costs one page; the page fetched ahead stops with its statement;
- ``REMOTETABLES_FAST_PATH=off`` turns both off (the whole suite runs both ways).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import remotetables
from remotetables.config import parse_config
from remotetables.decoders import fast_path_enabled, page_decoder
from remotetables.demo.api.data import generate_incidents
from remotetables.demo.api.faults import Fault
from remotetables.demo.api.server import IncidentsAPI
from remotetables.errors import CoercionError, RemoteProtocolError
from remotetables.rows import RowBuilder
from tests.conftest import incidents_table

# ------------------------------------------------------------------ decoder against builder

COLUMNS = {
    "a": {"type": "TEXT"},
    "b": {"type": "INTEGER", "on_error": "null"},
    "c": {"type": "REAL"},
    "d": {"type": "BOOLEAN"},
    "e": {"type": "JSON"},
    "f": {"type": "TEXT", "path": "n.x"},
    "g": {"type": "INTEGER", "path": "n.y"},
    "h": {"type": "TEXT", "path": "a"},  # the same field as a
}


def table_spec(rows: str = "data", **pagination: Any) -> Any:
    pag = {"style": "cursor", "cursor_path": "meta.cursor", **pagination}
    config = parse_config(
        {
            "tables": {
                "t": {
                    "url": "http://127.0.0.1:9/t",
                    "rows": rows,
                    "pagination": pag,
                    "columns": COLUMNS,
                }
            }
        }
    )
    return config.table("t")


def general(spec: Any, used: list[int] | None, content: bytes) -> Any:
    """What the general path makes of a page: tuples, or the CoercionError it raises."""
    from remotetables.rows import get_path

    body = orjson.loads(content)
    items = get_path(body, spec.rows_path)
    builder = RowBuilder(
        "t", [(c.name, c.type, c.path, c.on_error == "null") for c in spec.columns], used
    )
    try:
        return builder.build_page(items, 0)
    except CoercionError:
        return CoercionError


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.integers(2**63 - 2, 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", " 7 ", "x", "1.5", "true", "é\u2028", "99999999999999999999"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.just("x"), scalars))
nested = st.one_of(scalars, st.fixed_dictionaries({}, optional={"x": scalars, "y": scalars}))
item = st.fixed_dictionaries({}, optional={k: values for k in "abcde"} | {"n": nested, "z": values})
# well typed: what an API that keeps its types sends
good_item = st.fixed_dictionaries(
    {},
    optional={
        "a": st.one_of(st.none(), st.text(max_size=5)),
        "b": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "c": st.one_of(
            st.none(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**63), 2**64 - 1),
        ),
        "d": st.one_of(st.none(), st.booleans()),
        "e": values,
        "n": st.fixed_dictionaries({}, optional={"x": st.text(max_size=3), "y": st.integers(0, 9)}),
        "z": values,
    },
)
used_sets = st.one_of(
    st.none(), st.lists(st.integers(0, len(COLUMNS) - 1), unique=True).map(sorted)
)


def page_bytes(items: list[Any], cursor: Any) -> bytes:
    return orjson.dumps({"data": items, "meta": {"cursor": cursor}, "other": [1, {"x": 2}]})


@settings(max_examples=300, deadline=None)
@given(items=st.lists(item, max_size=5), used=used_sets, cursor=scalars)
def test_decoded_page_is_the_general_paths_page_or_falls_back(
    items: list[Any], used: list[int] | None, cursor: Any
) -> None:
    spec = table_spec()
    decoder = page_decoder(spec, used)
    assert decoder is not None
    content = page_bytes(items, cursor)
    fast = decoder(content)
    if fast is None:
        return  # that page goes the general way
    expected = general(spec, used, content)
    assert fast.rows == expected
    assert [tuple(map(type, r)) for r in fast.rows] == [tuple(map(type, r)) for r in expected]
    assert fast.body.get("meta", {}).get("cursor") == cursor


@settings(max_examples=150, deadline=None)
@given(items=st.lists(good_item, max_size=5), used=used_sets)
def test_a_well_typed_page_takes_the_fast_path(items: list[Any], used: list[int] | None) -> None:
    spec = table_spec()
    decoder = page_decoder(spec, used)
    assert decoder is not None
    content = page_bytes(items, "c2")
    fast = decoder(content)
    assert fast is not None
    assert fast.rows == general(spec, used, content)
    assert fast.body == {"meta": {"cursor": "c2"}}


@pytest.mark.parametrize(
    ("page", "why"),
    [
        ({"data": [{"b": "12"}]}, "a string in an INTEGER column"),
        ({"data": [{"b": 2**63}]}, "beyond SQLite's integers"),
        ({"data": [{"c": True}]}, "a boolean in a REAL column"),
        ({"data": [{"d": 1}]}, "a number in a BOOLEAN column"),
        ({"data": [{"n": "text"}]}, "a string where an object is"),
        ({"data": ["row"]}, "an item that is not an object"),
        ({"data": None}, "no rows list"),
        ({"items": []}, "the rows elsewhere"),
        ([], "an array where the envelope is"),
    ],
)
def test_a_page_that_does_not_fit_falls_back(page: Any, why: str) -> None:
    decoder = page_decoder(table_spec(), None)
    assert decoder is not None
    assert decoder(orjson.dumps(page)) is None, why


def test_shapes_the_decoder_leaves_to_the_general_path() -> None:
    assert page_decoder(table_spec(rows="data[0]"), None) is None
    assert page_decoder(table_spec(cursor_path="data"), None) is None  # the rows hold it
    assert page_decoder(table_spec(cursor_path="data[-1].id"), None) is None
    assert page_decoder(table_spec(), None) is not None


@pytest.mark.parametrize(
    ("value", "on"),
    [("", True), ("1", True), ("on", True), ("0", False), ("off", False), (" False ", False)],
)
def test_the_switch(value: str, on: bool) -> None:
    assert fast_path_enabled({"REMOTETABLES_FAST_PATH": value}) is on
    assert fast_path_enabled({}) is True


# ------------------------------------------------------------------ through SQL


class CountingTransport(httpx2.BaseTransport):
    """A real HTTP transport that counts requests started, and those still in flight."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.lock = threading.Lock()
        self.started = 0
        self.in_flight = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        with self.lock:
            self.started += 1
            self.in_flight += 1
        try:
            response = self.inner.handle_request(request)
            try:
                body = response.read()
            finally:
                response.close()
            return httpx2.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self) -> None:
        self.inner.close()


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Whether ``condition`` holds within ``seconds`` (a request handed to the page pool
    starts when a pool thread gets to it)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def slow_api() -> Iterator[IncidentsAPI]:
    """250 incidents, every request 0.3 s late: a page fetched ahead is still in flight."""
    with IncidentsAPI(n_rows=250, seed=7, latency=0.3) as server:
        yield server


def connect(api: IncidentsAPI, style: str, *, fast: bool = True, extra: str = "", **kw: Any) -> Any:
    import tempfile
    from pathlib import Path

    toml = incidents_table("inc", style, api.base_url, max_page_size=40, extra=extra)
    path = Path(tempfile.mkdtemp()) / "remotetables.toml"
    path.write_text(toml, encoding="utf-8")
    environ = {} if fast else {"REMOTETABLES_FAST_PATH": "off"}
    return remotetables.connect(":memory:", path, environ=environ, sleep=lambda s: None, **kw)


QUERIES = [
    "SELECT * FROM inc",
    "SELECT number, priority, active, caller_name FROM inc WHERE state = 'open'",
    "SELECT count(*), sum(priority) FROM inc",
    "SELECT number FROM inc WHERE score > 50",
    "SELECT number, tags FROM inc WHERE active = 1 ORDER BY number DESC LIMIT 7",
]


@pytest.mark.parametrize("style", ["link", "next_url", "cursor", "offset", "page"])
@pytest.mark.parametrize("cache", ["cache_ttl = 0\n", ""])
def test_fast_and_general_paths_give_the_same_rows(
    api: IncidentsAPI, style: str, cache: str
) -> None:
    with (
        connect(api, style, extra=cache) as fast,
        connect(api, style, fast=False, extra=cache) as slow,
    ):
        for sql in QUERIES:
            want = slow.execute(sql).fetchall()
            assert slow.session.last_stats.fast_pages == 0
            assert fast.execute(sql).fetchall() == want, sql
            stats = fast.session.last_stats
            if cache:  # no cache: each statement reads the API
                # the first page looks for a pushed parameter's field in the rows (a filter-
                # only parameter takes the value sent): the general way
                assert stats.fast_pages >= max(1, stats.pages - 1), sql


def test_a_page_that_does_not_validate_falls_back_alone(api: IncidentsAPI) -> None:
    """Page 2 of the cursor chain has a priority as text ("3" reads as 3): that page alone
    goes the general way, and the rows are those of well-typed data."""
    with connect(api, "cursor", extra="cache_ttl = 0\n") as conn:
        want = conn.execute("SELECT number, priority FROM inc").fetchall()
        assert conn.session.last_stats.fast_pages == 7
    rows = generate_incidents(250, users=api.users, seed=7)
    rows[49]["priority"] = str(rows[49]["priority"])
    with (
        IncidentsAPI({"incidents": rows}, seed=7) as api2,
        connect(api2, "cursor", extra="cache_ttl = 0\n") as conn,
    ):
        assert conn.execute("SELECT number, priority FROM inc").fetchall() == want
        stats = conn.session.last_stats
        assert (stats.pages, stats.fast_pages) == (7, 6)


@pytest.mark.parametrize("style", ["link", "cursor", "offset"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT number FROM inc LIMIT 10",
        # a LIMIT SQLite keeps to itself (LIKE is not pushed): it stops reading after 10 rows
        "SELECT number FROM inc WHERE number LIKE 'INC%' LIMIT 10",
        "SELECT number FROM inc WHERE number LIKE 'INC%' LIMIT 39",
    ],
)
def test_a_limit_inside_page_one_costs_one_page(
    fresh_api: IncidentsAPI, style: str, sql: str
) -> None:
    transport = CountingTransport()
    with connect(fresh_api, style, transport=transport) as conn:
        fresh_api.clear_requests()
        assert len(conn.execute(sql).fetchall()) in (10, 39)
        assert transport.started == 1
        assert len(fresh_api.requests) == 1
        assert transport.in_flight == 0


def test_prefetch_starts_with_page_two_and_stays_one_page_ahead(slow_api: IncidentsAPI) -> None:
    transport = CountingTransport()
    with connect(slow_api, "cursor", transport=transport) as conn:
        cur = conn.apsw.execute("SELECT number FROM inc")
        for _ in range(40):  # all of page 1
            next(cur)
        assert transport.started == 1
        next(cur)  # row 41: page 2 is fetched, and page 3 asked for while SQLite reads it
        assert eventually(lambda: transport.started == 3)
        for _ in range(39):  # the rest of page 2: nothing more
            next(cur)
        assert transport.started == 3
        assert len(list(cur)) == 250 - 80
        assert transport.started == 7 and transport.in_flight == 0


def test_no_page_is_fetched_ahead_when_answers_come_sooner_than_the_threshold(
    slow_api: IncidentsAPI,
) -> None:
    """Fetching ahead overlaps waiting for the API with SQLite reading: it is done only when the
    last page waited at least ``prefetch_min_wait`` (the interpreter's switch interval unless
    set). Answers that come sooner (here: a threshold above the API's 0.3 s) are fetched
    strictly lazily, as with the fast path off; a later slow answer turns it back on."""
    transport = CountingTransport()
    with connect(slow_api, "cursor", transport=transport) as conn:
        assert conn.session.runtime.prefetch_min_wait == sys.getswitchinterval()
        conn.session.runtime.prefetch_min_wait = 30.0
        cur = conn.apsw.execute("SELECT number FROM inc")
        for _ in range(45):  # into page 2: nothing is on its way
            next(cur)
        assert transport.started == 2 and transport.in_flight == 0
        conn.session.runtime.prefetch_min_wait = 0.05  # page 3 waits 0.3 s: page 4 goes ahead
        for _ in range(40):  # into page 3
            next(cur)
        assert eventually(lambda: transport.started == 4)
        assert len(list(cur)) == 250 - 85
        assert transport.in_flight == 0


def _stop_by_close(conn: Any, cur: Any) -> None:
    cur.close()


def _stop_by_interrupt(conn: Any, cur: Any) -> None:
    conn.session.interrupt()  # what the shell's Ctrl-C does
    conn.apsw.interrupt()
    with pytest.raises(Exception, match="interrupt"):
        for _ in cur:
            pass


@pytest.mark.parametrize("stop", [_stop_by_close, _stop_by_interrupt])
def test_a_stopped_scan_leaves_no_request_in_flight(stop: Callable[[Any, Any], None]) -> None:
    transport = CountingTransport()
    with (
        IncidentsAPI(n_rows=250, seed=7, latency=1.0) as api,
        connect(api, "cursor", transport=transport) as conn,
    ):
        cur = conn.apsw.execute("SELECT number FROM inc")
        for _ in range(45):  # into page 2: page 3 is on its way (1 s)
            next(cur)
        assert eventually(lambda: transport.in_flight == 1)
        stop(conn, cur)
        assert transport.in_flight == 0  # the statement ended: nothing of it is still running
        assert transport.started == 3


def test_forced_off_pages_stay_strictly_lazy(slow_api: IncidentsAPI) -> None:
    transport = CountingTransport()
    with connect(slow_api, "cursor", fast=False, transport=transport) as conn:
        cur = conn.apsw.execute("SELECT number FROM inc")
        for _ in range(45):
            next(cur)
        assert transport.started == 2 and transport.in_flight == 0
        cur.close()


@pytest.mark.parametrize("stop", [_stop_by_close, _stop_by_interrupt])
def test_a_stopped_parallel_scan_leaves_no_request_in_flight(
    stop: Callable[[Any, Any], None],
) -> None:
    """Offset pages with a known total are fetched in parallel: those on their way when the
    statement ends are waited for too (with the fast path on or off)."""
    with IncidentsAPI(n_rows=250, seed=7, latency=1.0) as api:
        for fast in (True, False):
            transport = CountingTransport()
            with connect(api, "offset", fast=fast, transport=transport) as conn:
                cur = conn.apsw.execute("SELECT number FROM inc")
                for _ in range(81):  # into page 3: the last pages were just asked for (1 s)
                    next(cur)
                # the requests for pages 6 and 7 were handed to the pool: wait until one runs
                assert eventually(lambda t=transport: t.in_flight >= 1)
                stop(conn, cur)
                assert transport.in_flight == 0


# ------------------------------------------------------------------ keyless rowids, fast


KEYLESS_DATA = [
    # many identical rows (3 fields), a few with a field of another type than declared
    {"state": ["new", "open", "closed"][i % 3], "priority": i % 4, "note": "x" if i % 5 else None}
    for i in range(90)
] + [{"state": "open", "priority": "2", "note": "text priority"}]


def _keyless(base: str, fast: bool) -> Any:
    import tempfile
    from pathlib import Path

    toml = (
        f'[tables.t]\nurl = "{base}/styles/link/incidents"\nrows = ""\npagination = "link"\n'
        'page_size_param = "limit"\nmax_page_size = 25\ncache_ttl = 0\n'
        '[tables.t.columns]\nstate = "TEXT"\npriority = "INTEGER"\nnote = "TEXT"\n'
    )
    path = Path(tempfile.mkdtemp()) / "remotetables.toml"
    path.write_text(toml, encoding="utf-8")
    environ = {} if fast else {"REMOTETABLES_FAST_PATH": "off"}
    return remotetables.connect(":memory:", path, environ=environ)


KEYLESS_QUERIES = [
    "SELECT count(*), count(DISTINCT rowid) FROM t",
    "SELECT rowid, state FROM t ORDER BY rowid",
    "SELECT rowid, * FROM t WHERE priority = 2 ORDER BY rowid",
    "SELECT count(*) FROM t WHERE state = 'open' OR priority = 1",
    "SELECT count(*), count(DISTINCT a.rowid) FROM t a JOIN t b ON a.rowid = b.rowid "
    "WHERE b.note IS NULL",
    "WITH b AS MATERIALIZED (SELECT rowid AS rid, note FROM t) "
    "SELECT count(*) FROM t a CROSS JOIN b ON a.rowid = b.rid AND a.state = 'new'",
]


def test_keyless_partial_rows_on_the_fast_path_find_the_same_rowids() -> None:
    """A keyless table's rowid is its whole row's identity. On the fast path a statement that
    reads a few columns decodes only those; a page finds its whole rows (from its kept bytes)
    only when SQLite asks for a rowid. Rowids, joins on them and OR merges are those of the
    general path, and the answers those of a native copy."""
    with (
        IncidentsAPI(datasets={"incidents": KEYLESS_DATA}) as srv,
        _keyless(srv.base_url, True) as fast,
        _keyless(srv.base_url, False) as slow,
    ):
        native = fast.execute  # a native copy of the same rows, in the same connection
        native("CREATE TABLE n AS SELECT * FROM t")
        for sql in KEYLESS_QUERIES:
            want = slow.execute(sql).fetchall()
            assert fast.execute(sql).fetchall() == want, sql
            stats = fast.session.last_stats
            # 91 rows, 25 a page; the last page's text priority sends it the general way
            # when the statement reads priority (that page alone)
            reads_priority = "priority" in sql or "*" in sql.replace("count(*)", "")
            assert stats.pages % 4 == 0, sql  # a join or an OR scans several times
            assert stats.fast_pages == stats.pages * (3 if reads_priority else 4) // 4, sql
            if "rowid," not in sql:  # rowid values are ours; counts are SQLite's
                assert want == native(sql.replace("FROM t", "FROM n")).fetchall(), sql
        # every row, duplicates included, has its own rowid, whatever columns are read
        assert fast.execute("SELECT count(DISTINCT rowid) FROM t").fetchone() == (91,)


def test_keyless_rowids_when_a_cached_scan_outgrows_the_cache() -> None:
    """A scan that would fill the cache reads whole rows; when it outgrows its budget halfway it
    goes on uncached. The pages after that hold only the columns read, and their rowids are
    still the whole rows' (two scans reading different columns meet on rowid)."""
    import tempfile
    from pathlib import Path

    data = [{"state": ["new", "open"][i % 2], "priority": i % 3, "note": "n" * (i % 7)}
            for i in range(120)]  # fmt: skip
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        toml = (
            "[settings]\ncache_max_bytes = 8000\n\n"
            f'[tables.t]\nurl = "{srv.base_url}/styles/link/incidents"\nrows = ""\n'
            'pagination = "link"\npage_size_param = "limit"\nmax_page_size = 20\n'
            'cache_ttl = 60\n[tables.t.columns]\nstate = "TEXT"\npriority = "INTEGER"\n'
            'note = "TEXT"\n'
        )
        path = Path(tempfile.mkdtemp()) / "remotetables.toml"
        path.write_text(toml, encoding="utf-8")
        for environ in ({}, {"REMOTETABLES_FAST_PATH": "off"}):
            with remotetables.connect(":memory:", path, environ=environ) as conn:
                sql = (
                    "WITH b AS MATERIALIZED (SELECT rowid AS rid, note FROM t) "
                    "SELECT count(*), sum(a.priority = 1) FROM t a JOIN b ON a.rowid = b.rid"
                )
                got = conn.execute(sql).fetchone()
                assert conn.session.runtime.cache.current_bytes == 0  # nothing was cached
                assert got == (120, 40), environ
                fast_pages = conn.session.last_stats.fast_pages
                assert fast_pages > 0 if not environ else fast_pages == 0


# ------------------------------------------------------------------ answers msgspec skips


def _both_ways(srv: IncidentsAPI, sql: str) -> list[Any]:
    """What the fast and the general path give for ``sql``: rows, or (error type, message)."""
    out: list[Any] = []
    for fast in (True, False):
        with _keyless(srv.base_url, fast) as conn:
            try:
                out.append(conn.execute(sql).fetchall())
            except Exception as exc:  # the comparison is the point: any exception counts
                out.append((type(exc), str(exc)))
    return out


# values in a column the statement does not read (note), or in a field no column reads (other)
NOT_UTF8 = [
    b'[{"state": "a", "priority": 1, "note": "\xff"}, {"state": "a", "priority": 1}]',
    b'[{"state": "a", "priority": 1, "other": "\xc3("}, {"state": "a", "priority": 1}]',
    b'[{"state": "a", "priority": 1, "\xff": 1}, {"state": "a", "priority": 1}]',
]
BEYOND_DOUBLE = [
    b'[{"state": "a", "priority": 1, "note": 1e999}, {"state": "a", "priority": 1}]',
    b'[{"state": "a", "priority": 1, "other": -1e400}, {"state": "a", "priority": 1}]',
    b'[{"state": "a", "priority": 1, "other": ' + b"1" * 400 + b'}, {"state": "b"}]',
]
QUERIES_BOTH_WAYS = [
    "SELECT state FROM t",
    "SELECT rowid, state FROM t",
    "SELECT count(DISTINCT rowid) FROM t",
    "SELECT * FROM t",
]


@pytest.mark.parametrize("body", NOT_UTF8, ids=["unread-column", "unknown-field", "key"])
def test_text_that_is_not_utf8_is_refused_both_ways(body: bytes) -> None:
    """JSON is UTF-8 (RFC 8259). msgspec does not look at the strings it skips, so the fast
    decoder checks the page's UTF-8 itself: a page the general path refuses (a
    RemoteProtocolError naming the URL) is refused on the fast path too, whatever the
    statement reads, rowids included."""
    with IncidentsAPI(datasets={"incidents": [{"state": "z"}]}) as srv:
        srv.faults.add(
            Fault("status", path="/styles/link/incidents", status=200, body=body, times=None)
        )
        for sql in QUERIES_BOTH_WAYS:
            fast, general = _both_ways(srv, sql)
            assert general[0] is RemoteProtocolError, sql
            assert "not valid JSON" in general[1], sql
            assert "text that is not UTF-8 at byte " in general[1], sql  # where, and why
            assert fast == general, sql


@pytest.mark.parametrize("body", BEYOND_DOUBLE, ids=["unread-column", "unknown-field", "digits"])
def test_numbers_beyond_a_doubles_range_are_read_both_ways(body: bytes) -> None:
    """RFC 8259 allows numbers beyond a double's range and SQLite reads them (as +-Inf); orjson
    refuses the whole document, so the general path reads it again with the standard library
    (http.response.loads_json). The fast path skips such a field unread: both paths give the
    same rows, rowids included, and a column that holds one reads as SQLite would."""
    with IncidentsAPI(datasets={"incidents": [{"state": "z"}]}) as srv:
        srv.faults.add(
            Fault("status", path="/styles/link/incidents", status=200, body=body, times=None)
        )
        for sql in QUERIES_BOTH_WAYS:
            fast, general = _both_ways(srv, sql)
            assert isinstance(general, list), (sql, general)  # rows, not (error, message)
            assert fast == general, sql


def test_loads_json_reads_numbers_as_orjson_does_and_refuses_what_is_not_json() -> None:
    from remotetables.http.response import loads_json

    doc = b"[1e999, -1e400, 1e-400, 18446744073709551615, 18446744073709551616, " + b"9" * 400
    got = loads_json(doc + b"]")
    assert got == [float("inf"), float("-inf"), 0.0, 2**64 - 1, float(2**64), float("inf")]
    assert [type(v) for v in got] == [float, float, float, int, float, float]
    for bad in (b"[1e999, NaN]", b"[1e999, Infinity]", b'[1e999, "\xff"]', b"[1e999,]"):
        with pytest.raises(orjson.JSONDecodeError):
            loads_json(bad)


@pytest.mark.parametrize(
    "sql", ["SELECT state FROM t", "SELECT rowid, state FROM t", "SELECT rowid, * FROM t"]
)
def test_json_nested_deeper_than_msgspec_goes_the_general_way(sql: str) -> None:
    """msgspec nests on the Python stack and raises RecursionError on JSON 1000 levels deep,
    which orjson (the general path) reads (its limit is 1024): that page goes the general way,
    it does not end the statement with a RecursionError."""
    deep = b"[" * 1000 + b"]" * 1000
    body = b'[{"state": "a", "priority": 1, "x": ' + deep + b'}, {"state": "a", "priority": 1}]'
    with IncidentsAPI(datasets={"incidents": [{"state": "z"}]}) as srv:
        srv.faults.add(
            Fault("status", path="/styles/link/incidents", status=200, body=body, times=None)
        )
        fast, general = _both_ways(srv, sql)
        assert isinstance(general, list) and len(general) == 2
        assert fast == general
