"""The seven wrong results of issue 14, one test each (each failed before its fix), plus the
one documented exception. Real loopback APIs (remotetables.demo.api), real SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import apsw
import pytest

import remotetables
from remotetables.config import PaginationSpec
from remotetables.demo.api.data import generate_incidents
from remotetables.demo.api.server import IncidentsAPI
from remotetables.pagination import make_paginator
from tests.conftest import incidents_table

Open = Callable[..., remotetables.Connection]


def _table(
    base: str,
    columns: str,
    *,
    url: str = "/styles/link/incidents",
    pagination: str = '"link"',
    rows: str = '""',
    extra: str = "",
    size_param: str = "limit",
    page_size: int = 10,
) -> str:
    return (
        f'[tables.t]\nurl = "{base}{url}"\nrows = {rows}\npagination = {pagination}\n'
        f'page_size_param = "{size_param}"\nmax_page_size = {page_size}\n{extra}'
        f"[tables.t.columns]\n{columns}"
    )


# ---------------------------------------------------------------- 1. keyless rowids


@pytest.fixture(scope="module")
def incidents_api() -> Iterator[IncidentsAPI]:
    with IncidentsAPI(n_rows=300, seed=3) as server:
        yield server


@pytest.mark.parametrize("cache", ["cache_ttl = 0\n", ""], ids=["network", "cached"])
def test_keyless_rowids_are_unique_and_stable_whatever_columns_are_read(
    incidents_api: IncidentsAPI, open_conn: Open, cache: str
) -> None:
    rows = incidents_api.dataset("incidents").snapshot.rows
    n = len(rows)
    conn = open_conn(incidents_table("t", "link", incidents_api.base_url, extra=cache))
    # count(*) reads no column: each row still has its own rowid
    assert conn.execute("SELECT count(*), count(DISTINCT rowid) FROM t").fetchone() == (n, n)
    # two scans reading different columns meet on rowid
    got = conn.execute(
        "WITH b AS MATERIALIZED (SELECT rowid AS rid, number FROM t) "
        "SELECT count(*), sum(a.number = b.number) FROM t a CROSS JOIN b ON a.rowid = b.rid"
    ).fetchone()
    assert got == (n, n)
    # SQLite merges the two scans of an OR by rowid
    want = sum(1 for r in rows if r["state"] == "open" or r["priority"] == 2)
    got = conn.execute("SELECT count(*) FROM t WHERE state = 'open' OR priority = 2").fetchone()
    assert got == (want,)


def test_keyless_rowids_of_identical_rows(incidents_api: IncidentsAPI, open_conn: Open) -> None:
    """Three columns only: many rows are identical; each still counts once."""
    conn = open_conn(
        _table(
            incidents_api.base_url,
            'state = { type = "TEXT", param = "state" }\npriority = "INTEGER"\n',
            extra="cache_ttl = 0\n",
        )
    )
    n = len(incidents_api.dataset("incidents").snapshot.rows)
    assert conn.execute("SELECT count(*), count(DISTINCT rowid) FROM t").fetchone() == (n, n)
    got = conn.execute(
        "WITH b AS MATERIALIZED (SELECT rowid AS rid, state FROM t) "
        "SELECT count(*) FROM t a CROSS JOIN b ON a.rowid = b.rid AND a.priority IS NOT NULL"
    ).fetchone()
    assert got == (n,)


def test_a_plain_self_join_on_rowid(open_conn: Open) -> None:
    """SQLite rescans the inner table per outer row: every scan gives a row the same rowid."""
    data = [{"state": ["new", "open"][i % 2], "priority": i % 3} for i in range(40)]
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'state = "TEXT"\npriority = "INTEGER"\n',
                extra="cache_ttl = 0\n",
                page_size=50,
            )
        )
        got = conn.execute(
            "SELECT count(*), count(DISTINCT a.rowid) FROM t a JOIN t b ON a.rowid = b.rowid "
            "WHERE b.priority = 1"
        ).fetchone()
        n = sum(1 for r in data if r["priority"] == 1)
        assert got == (n, n)


def test_keyless_rowids_with_a_column_list_parameter(open_conn: Open) -> None:
    """With ``fields_param`` a statement asks only for the fields it reads; a keyless table's
    rowid is the whole row's identity, so two scans reading different columns must still get
    the whole rows, or they meet on no rowid (a self-join on rowid finds nothing)."""
    data = [
        {"state": ["new", "open"][i % 2], "priority": i % 3, "note": f"n{i}"} for i in range(30)
    ]
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'state = "TEXT"\npriority = "INTEGER"\nnote = "TEXT"\n',
                url="/api/now/table/incident",
                rows='"result"',
                size_param="sysparm_limit",
                extra='cache_ttl = 0\nfields_param = "sysparm_fields"\n',
            )
        )
        native = conn.execute
        native("CREATE TABLE n (state TEXT, priority INTEGER, note TEXT)")
        conn.executemany("INSERT INTO n VALUES (?, ?, ?)", [tuple(r.values()) for r in data])
        for sql in (
            "SELECT count(*) FROM t a JOIN t b ON a.rowid = b.rowid "
            "WHERE a.state = 'new' AND b.priority = 1",
            "WITH b AS MATERIALIZED (SELECT rowid AS rid, note FROM t) "
            "SELECT count(*) FROM t a JOIN b ON a.rowid = b.rid AND a.state = 'new'",
            "SELECT count(*) FROM t WHERE rowid IN (SELECT rowid FROM t WHERE note = 'n3')",
        ):
            want = native(sql.replace("FROM t", "FROM n")).fetchall()
            assert want != [(0,)], sql
            assert conn.execute(sql).fetchall() == want, sql


# ---------------------------------------------------------------- 2. no filter-only guess


def test_a_missing_field_is_null_not_the_value_sent(open_conn: Open) -> None:
    """The API filters on id but ignores `assignee`; row 42 has no assigned_to (absent, or a
    null parent): it must not come back as a match for 'Ada'."""
    data = [{"id": i, "assigned_to": {"name": "Grace"}} for i in range(60)]
    data[42] = {"id": 42}
    data[43] = {"id": 43, "assigned_to": None}
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'id = { type = "INTEGER", param = "id" }\n'
                'assigned_to = { type = "TEXT", path = "assigned_to.name", param = "assignee" }\n',
                extra="cache_ttl = 0\n",
            )
        )
        for i in (42, 43):
            sql = f"SELECT id, assigned_to FROM t WHERE id = {i} AND assigned_to = 'Ada'"
            assert conn.execute(sql).fetchall() == []
            assert conn.execute(f"SELECT assigned_to FROM t WHERE id = {i}").fetchall() == [(None,)]


def test_a_field_absent_on_the_first_page_only_is_not_guessed(open_conn: Open) -> None:
    data: list[dict[str, Any]] = [{"id": i} for i in range(10)]
    data += [{"id": i, "who": "Ada" if i % 3 else "Bob"} for i in range(10, 40)]
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'id = "INTEGER"\nwho = { type = "TEXT", param = "who" }\n',
                extra='cache_ttl = 0\nparams = { _ignore_filters = "1" }\n',
            )
        )
        got = conn.execute("SELECT id FROM t WHERE who = 'Ada' ORDER BY id").fetchall()
        assert got == [(i,) for i in range(10, 40) if i % 3]


def test_filter_only_must_be_declared_on_a_param_column(open_conn: Open) -> None:
    with pytest.raises(remotetables.ConfigError, match="filter_only"):
        open_conn(_table("http://127.0.0.1:9", 'x = { type = "TEXT", filter_only = true }\n'))


# ---------------------------------------------------------------- 3. ASCII-only numbers


def test_unicode_digits_and_spaces_are_not_numbers(open_conn: Open) -> None:
    data = [
        {"id": 42, "priority": 3, "state": "a", "score": -0.0},
        {"id": 2, "priority": 2, "state": 1e20, "score": 1.0},
        {"id": 3, "priority": "٣", "state": 0.1, "score": 2},
        {"id": 4, "priority": "\xa02", "state": 2.0, "score": "1.5"},
        {"id": 5, "priority": " 2\t", "state": "x", "score": None},
    ]
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'id = { type = "INTEGER", param = "id" }\n'
                'priority = { type = "INTEGER", param = "priority", on_error = "null" }\n'
                'state = "TEXT"\nscore = "REAL"\n',
                url="/styles/link/incidents?_match=loose",  # ' 2' and 2 alike: a wider answer
                extra="cache_ttl = 0\n",
            )
        )
        traps = (
            "priority = '\uff13'",  # fullwidth 3
            "id = '\u0664\u0662'",  # Arabic-Indic 42
            "priority = char(160) || '2'",
            "priority IN ('\u0663', '\uff13')",
            "priority = '2' || char(133)",
        )
        for where in traps:
            assert conn.execute(f"SELECT id FROM t WHERE {where}").fetchall() == [], where
        got = conn.execute("SELECT id FROM t WHERE priority = ' 2' ORDER BY id").fetchall()
        assert got == [(2,), (5,)]
        # the values themselves: what SQLite stores for the same JSON values
        got = conn.execute("SELECT id, priority, state, score FROM t ORDER BY id").fetchall()
        assert got == [
            (2, 2, "1.0e+20", 1.0),
            (3, None, "0.1", 2.0),
            (4, None, "2.0", 1.5),
            (5, 2, "x", None),
            (42, 3, "a", 0.0),
        ]
        assert str(got[-1][3]) == "0.0"  # a REAL column never holds -0.0


# ---------------------------------------------------------------- 4. BLOBs


def test_a_blob_never_equals_an_exact_numeric_column(
    fresh_api: IncidentsAPI, open_conn: Open
) -> None:
    conn = open_conn(
        _table(
            fresh_api.base_url,
            'number = "TEXT"\npriority = { type = "INTEGER", param = "priority", exact = true }\n'
            'state = { type = "TEXT", param = "state", exact = true }\n',
            extra="cache_ttl = 0\n",
            page_size=100,
        )
    )
    fresh_api.clear_requests()
    for where in ("priority = x'33'", "priority IN (x'33', x'32')", "state = x'6f70656e'"):
        assert conn.execute(f"SELECT count(*) FROM t WHERE {where}").fetchone() == (0,), where
    assert conn.execute("SELECT count(*) FROM t WHERE priority = ?", (b"3",)).fetchone() == (0,)
    assert not any("priority" in r.query for r in fresh_api.requests)
    n3 = sum(1 for r in fresh_api.dataset("incidents").snapshot.rows if r["priority"] == 3)
    got = conn.execute("SELECT count(*) FROM t WHERE priority IN (x'33', 3)").fetchone()
    assert got == (n3,)


# ---------------------------------------------------------------- 5. commas in comma lists


@pytest.mark.parametrize("exact", ["", ", exact = true"], ids=["rechecked", "exact"])
def test_a_value_with_a_comma_is_not_sent_as_a_comma_list(open_conn: Open, exact: str) -> None:
    data = [{"id": i, "state": s} for i, s in enumerate(["new", "open", "new,open", "closed"] * 5)]
    with IncidentsAPI(datasets={"incidents": data}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                f'id = "INTEGER"\nstate = {{ type = "TEXT", param = "state", in = "comma"{exact} }}\n',
                url="/list/styles/link/incidents",
                extra="cache_ttl = 0\n",
            )
        )
        got = conn.execute(
            "SELECT state, count(*) FROM t WHERE state IN ('new,open', 'closed') GROUP BY 1"
        ).fetchall()
        assert sorted(got) == [("closed", 5), ("new,open", 5)]
        got = conn.execute("SELECT count(*) FROM t WHERE state = 'new,open'").fetchone()
        assert got == (5,)
        srv.clear_requests()
        got = conn.execute("SELECT count(*) FROM t WHERE state IN ('new', 'open')").fetchone()
        assert got == (10,)  # values without a comma still go as one list
        assert [r.query.get("state") for r in srv.requests] == [["new,open"]] * len(srv.requests)


# ---------------------------------------------------------------- 6. short and empty pages


def _acl_rows(n: int = 100) -> list[dict[str, Any]]:
    rows = generate_incidents(n, users=("alice",), seed=5)
    for i, row in enumerate(rows):
        row.pop("assigned_to", None)  # visible to everyone
        if 20 <= i < 40 or i % 7 == 3:  # whole pages of 10 denied, and some rows of others
            row["_acl"] = "deny"
    return rows


ACL_STYLES = {
    "servicenow": dict(url="/api/now/table/incident?_acl=1", rows='"result"',
                       size_param="sysparm_limit"),
    "link": dict(url="/styles/link/incidents?_acl=1"),
    "next_url": dict(url="/styles/next_url/incidents?_acl=1", rows='"data"',
                     pagination='{ style = "next_url", next_path = "links.next" }'),
    "cursor": dict(url="/styles/cursor/incidents?_acl=1", rows='"items"',
                   pagination='{ style = "cursor", cursor_path = "next_cursor" }'),
    "offset": dict(url="/styles/offset/incidents?_acl=1", rows='"results"',
                   pagination='{ style = "offset", total_path = "total" }'),
    "page": dict(url="/styles/page/incidents?_acl=1", rows='"rows"', size_param="per_page",
                 pagination='{ style = "page", total_pages_path = "total_pages" }'),
}  # fmt: skip


@pytest.mark.parametrize("style", sorted(ACL_STYLES))
@pytest.mark.parametrize("concurrency", [1, 4])
def test_short_and_empty_pages_are_not_the_end(
    open_conn: Open, style: str, concurrency: int
) -> None:
    """ServiceNow applies ACLs after paging: pages 3 and 4 come back empty, others short."""
    rows = _acl_rows()
    visible = sorted(r["number"] for r in rows if "_acl" not in r)
    with IncidentsAPI(datasets={"incidents": rows}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'number = "TEXT"\nstate = { type = "TEXT", param = "state" }\n',
                extra=f"cache_ttl = 0\nconcurrency = {concurrency}\n",
                **ACL_STYLES[style],  # type: ignore[arg-type]
            )
        )
        got = [n for (n,) in conn.execute("SELECT number FROM t").fetchall()]
        assert sorted(got) == visible  # every visible row, each once
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (len(visible),)
        want = sum(1 for r in rows if "_acl" not in r and r["state"] == "open")
        assert conn.execute("SELECT count(*) FROM t WHERE state = 'open'").fetchone() == (want,)


@pytest.mark.parametrize("style", ["servicenow", "offset", "link"])
def test_sql_offset_over_short_pages_skips_rows_the_api_returned(
    open_conn: Open, style: str
) -> None:
    """An API that filters after paging (ServiceNow's ACLs) counts its offset before the filter:
    SQL's OFFSET counts the rows that came back, so it is never handed to such an API's offset
    parameter (only with ``offset_by = "rows"``, an API counting what it returned)."""
    rows = _acl_rows()
    with IncidentsAPI(datasets={"incidents": rows}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'number = "TEXT"\nstate = { type = "TEXT", param = "state" }\n',
                extra="cache_ttl = 0\n",
                **ACL_STYLES[style],  # type: ignore[arg-type]
            )
        )
        conn.execute("CREATE TABLE n AS SELECT * FROM t")
        for sql in (
            "SELECT number FROM {} LIMIT 2 OFFSET 3",
            "SELECT number FROM {} LIMIT 5 OFFSET 17",
            "SELECT number FROM {} LIMIT -1 OFFSET 30",
            "SELECT number FROM {} WHERE state = 'open' LIMIT 3 OFFSET 4",
        ):
            native = conn.execute(sql.format("n")).fetchall()
            assert conn.execute(sql.format("t")).fetchall() == native, sql


def test_offset_advances_by_the_page_size_asked_for_unless_told_otherwise() -> None:
    spec = PaginationSpec(style="offset")
    pager = make_paginator(spec, "https://a/x", [("limit", "10")], page_size=10)
    pager.first()
    short = pager.next({}, {}, 4)  # a short page: the next one still starts 10 further
    assert short is not None and short.url.endswith("offset=10")
    empty = pager.next({}, {}, 0)  # no total, no has_more: an empty page is the only end
    assert empty is None
    returned = make_paginator(
        PaginationSpec(style="offset", offset_by="rows"), "https://a/x", [], page_size=10
    )
    returned.first()
    step = returned.next({}, {}, 4)
    assert step is not None and step.url.endswith("offset=4")


def test_empty_pages_still_stop_at_max_pages(open_conn: Open) -> None:
    rows = [{**r, "_acl": "deny"} for r in _acl_rows(50)]
    with IncidentsAPI(datasets={"incidents": rows}) as srv:
        conn = open_conn(
            _table(
                srv.base_url,
                'number = "TEXT"\n',
                url="/styles/link/incidents?_acl=1",
                extra="cache_ttl = 0\nmax_pages = 3\n",
            )
        )
        with pytest.raises(remotetables.OperationalError, match="more than 3 pages"):
            conn.execute("SELECT * FROM t").fetchall()


# ---------------------------------------------------------------- 7. static vs pushed params


def test_a_pushed_parameter_replaces_a_static_one(fresh_api: IncidentsAPI, open_conn: Open) -> None:
    conn = open_conn(
        _table(
            fresh_api.base_url,
            'number = "TEXT"\npriority = { type = "INTEGER", param = "priority", exact = true }\n',
            extra='cache_ttl = 0\nparams = { priority = "1" }\n',
            page_size=100,
        )
    )
    rows = fresh_api.dataset("incidents").snapshot.rows
    fresh_api.clear_requests()
    got = conn.execute("SELECT DISTINCT priority FROM t WHERE priority = 3").fetchall()
    assert got == [(3,)]
    assert {tuple(r.query["priority"]) for r in fresh_api.requests} == {("3",)}
    # without a pushed value the static one is sent
    got = conn.execute("SELECT count(*) FROM t").fetchone()
    assert got == (sum(1 for r in rows if r["priority"] == 1),)


# ---------------------------------------------------------------- the documented exception


def test_the_empty_in_subquery_exception_is_an_operational_error(
    api: IncidentsAPI, open_conn: Open
) -> None:
    """README: with in = "comma"/"repeat" an IN over an empty subquery fails (apsw 3.54.1);
    through the DB-API the user sees OperationalError. When apsw fixes it this test fails:
    then drop the exception from the README."""
    conn = open_conn(
        _table(api.base_url, 'state = { type = "TEXT", param = "state", in = "repeat" }\n')
    )
    conn.execute("CREATE TABLE empty(v TEXT)")
    with pytest.raises(remotetables.OperationalError) as info:
        conn.execute("SELECT * FROM t WHERE state IN (SELECT v FROM empty)").fetchall()
    assert type(info.value).__name__ == "OperationalError"
    assert isinstance(info.value.__cause__, apsw.SQLError)
