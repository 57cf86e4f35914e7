"""Pure pieces driven by hand: JSON paths and coercion, the planner, paginators, the cache."""

from __future__ import annotations

from typing import Any

import pytest

from remotetables.cache import CacheKey, RowCache
from remotetables.config import PaginationSpec, parse_config
from remotetables.errors import redact_url
from remotetables.pagination import build_url, make_paginator, parse_link_header
from remotetables.plan import OP_EQ, OP_LIMIT, OP_OFFSET, Constraint, Plan, make_plan
from remotetables.rows import apply_affinity, coerce, parse_path, sql_equal


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("", ()),
        ("$", ()),
        ("result", ("result",)),
        ("a.b[0].c", ("a", "b", 0, "c")),
        ('meta."x.y"', ("meta", "x.y")),
        ("$.a", ("a",)),
    ],
)
def test_parse_path(text: str, path: tuple[Any, ...]) -> None:
    assert parse_path(text) == path


@pytest.mark.parametrize("bad", ["a..b", "a.", "a[x]", 'a."b', "a b[0"])
def test_parse_path_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_path(bad)


@pytest.mark.parametrize(
    ("value", "typ", "out"),
    [
        ("42", "INTEGER", 42), (" 7 ", "INTEGER", 7), (True, "INTEGER", 1), (3.0, "INTEGER", 3), (2.5, "INTEGER", 2.5),
        ("", "INTEGER", None), ("1.5", "REAL", 1.5), (2, "REAL", 2.0), ("yes", "BOOLEAN", 1), ("false", "BOOLEAN", 0),
        (False, "BOOLEAN", 0), (12, "TEXT", "12"), (True, "TEXT", "true"), ({"a": 1}, "TEXT", '{"a":1}'),
        (["x"], "JSON", '["x"]'), ("x", "JSON", '"x"'), (None, "INTEGER", None),
    ],
)  # fmt: skip
def test_coerce(value: Any, typ: str, out: Any) -> None:
    got = coerce(value, typ)
    assert got == out and type(got) is type(out)


@pytest.mark.parametrize(
    ("value", "typ"),
    [("abc", "INTEGER"), ([1], "INTEGER"), ("maybe", "BOOLEAN"), ({}, "REAL"), ("nan", "REAL")],
)
def test_coerce_rejects(value: Any, typ: str) -> None:
    with pytest.raises(ValueError):
        coerce(value, typ)


def test_affinity_and_equality_follow_sqlite() -> None:
    assert apply_affinity("01", "INTEGER") == 1
    assert apply_affinity("2e0", "INTEGER") == 2
    assert apply_affinity("abc", "INTEGER") == "abc"
    assert apply_affinity(2, "TEXT") == "2"
    assert apply_affinity(2.5, "TEXT") == "2.5"
    assert apply_affinity(2, "REAL") == 2.0
    assert sql_equal(1, 1.0) and not sql_equal("1", 1) and not sql_equal(None, None)


def _spec(extra_cols: str = "") -> Any:
    cfg = parse_config(
        {
            "tables": {
                "t": {
                    "url": "http://127.0.0.1:1/x",
                    "columns": {
                        "a": {"type": "INTEGER", "param": "a"},
                        "b": {"type": "TEXT", "param": "b"},
                        "c": "TEXT",
                        "r": {"type": "TEXT", "param": "r", "required": True},
                        "e": {"type": "TEXT", "param": "e", "exact": True},
                    },
                }
            }
        }
    )
    return cfg.tables["t"]


def test_plan_pushes_eq_and_omits_only_when_exact_semantics() -> None:
    spec = _spec()
    cons = [
        Constraint(0, OP_EQ, True),  # a = ?  numeric: omit + local recheck
        Constraint(
            1, OP_EQ, True, rhs_known=False
        ),  # b = ? (could be a column with affinity): not omitted
        Constraint(2, OP_EQ, True, rhs_known=True),  # c has no param: left to SQLite
        Constraint(3, OP_EQ, True, rhs_known=True, rhs_text=True),  # r required, literal text
        Constraint(4, OP_EQ, True, rhs_known=True, rhs_text=True),  # e exact: omitted, no recheck
    ]
    res = make_plan(spec, cons, n_order_by=0)
    assert res.accept
    assert res.plan.args == [("eq", 0), ("eq", 1), ("eq", 3), ("eq", 4)]
    assert res.usage == {
        0: (1, True, False),
        1: (2, False, False),
        3: (3, True, False),
        4: (4, True, False),
    }
    assert res.plan.recheck == [0, 2]  # argv positions of a and r; e is exact
    assert Plan.from_idxstr(res.plan.to_idxstr()) == res.plan


def test_plan_limit_only_when_safe() -> None:
    spec = _spec()
    base = [Constraint(3, OP_EQ, True, rhs_known=True, rhs_text=True)]
    lim = [Constraint(-1, OP_LIMIT, True), Constraint(-1, OP_OFFSET, True)]
    assert [k for k, _ in make_plan(spec, base + lim, 0).plan.args] == ["eq", "limit", "offset"]
    assert [k for k, _ in make_plan(spec, base + lim, 1).plan.args] == [
        "eq"
    ]  # ORDER BY: SQLite applies LIMIT
    not_omitted = [*base, Constraint(1, OP_EQ, True, rhs_known=False)]
    assert "limit" not in [k for k, _ in make_plan(spec, not_omitted + lim, 0).plan.args]
    nocase = [*base, Constraint(1, OP_EQ, True, rhs_known=True, binary=False)]
    res = make_plan(spec, nocase + lim, 0)
    assert 1 not in res.usage and "limit" not in [k for k, _ in res.plan.args]


def test_plan_required_parameter() -> None:
    spec = _spec()
    res = make_plan(spec, [], 0)
    assert res.accept and res.plan.missing_required == ["r"]
    assert not make_plan(spec, [Constraint(3, OP_EQ, False)], 0).accept  # try another join order


def test_link_header_and_build_url() -> None:
    links = parse_link_header('<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last"')
    assert links == {"next": "https://a/x?page=2", "last": "https://a/x?page=9"}
    assert build_url("https://a/x?pagination=link&limit=5", [("limit", "10"), ("q", "a b")]) == (
        "https://a/x?pagination=link&limit=10&q=a+b"
    )


def test_paginators_by_hand() -> None:
    off = make_paginator(
        PaginationSpec(style="offset", total_path=("total",)),
        "https://a/x",
        [("limit", "2")],
        page_size=2,
    )
    assert off.first().url == "https://a/x?limit=2&offset=0"
    rest = off.parallel_rest({"total": 7}, {}, 2)
    assert rest is not None and rest.count == 3
    assert list(rest) == [off._at(2), off._at(4), off._at(6)]
    nxt = off.next({"total": 7}, {}, 2)
    assert nxt is not None and nxt.url.endswith("offset=2")
    assert off.next({"total": 4}, {}, 2) is None
    page = make_paginator(
        PaginationSpec(style="page", total_pages_path=("pages",)), "https://a/x", []
    )
    page.first()
    assert [r.url for r in page.parallel_rest({"pages": 3}, {}, 10) or []] == [
        "https://a/x?page=2",
        "https://a/x?page=3",
    ]
    cur = make_paginator(
        PaginationSpec(style="cursor", cursor_path=("next",)), "https://a/x", [("limit", "5")]
    )
    cur.first()
    step = cur.next({"next": "abc"}, {}, 5)
    assert step is not None and step.url == "https://a/x?limit=5&cursor=abc"
    assert cur.next({"next": None}, {}, 5) is None
    link = make_paginator(PaginationSpec(style="link"), "https://a/x", [])
    link.first()
    step = link.next([], {"link": '</x?after=9>; rel="next"'}, 3)
    assert step is not None and step.url == "https://a/x?after=9"
    # an empty page with a next link is not the end (ServiceNow applies ACLs after paging)
    step = link.next([], {"link": '</x?after=12>; rel="next"'}, 0)
    assert step is not None and step.url == "https://a/x?after=12"
    assert link.next([], {}, 0) is None  # no next link: the end


def test_cache_keys_include_principal_and_expire() -> None:
    now = [0.0]
    cache = RowCache(1000, clock=lambda: now[0])
    alice = CacheKey.make("user:alice", "T", [("b", "1"), ("a", "2")])
    cache.put(alice, [(1,)], 10, ttl=30)
    assert cache.get(alice) == [(1,)]
    assert cache.get(CacheKey.make("user:bob", "t", [("a", "2"), ("b", "1")])) is None
    assert cache.get(CacheKey.make("user:alice", "t", [("a", "2"), ("b", "1")])) == [(1,)]
    now[0] = 31.0
    assert cache.get(alice) is None
    cache.put(alice, [(1,)], 2000, ttl=30)  # larger than the whole cache: not kept
    assert cache.get(alice) is None
    for i in range(5):
        cache.put(CacheKey.make("p", f"t{i}", []), [(i,)], 300, ttl=30)
    assert cache.current_bytes <= 1000
    assert cache.clear("t4") == 1


def test_redact_url() -> None:
    assert (
        redact_url("https://u:p@h.example/x?api_key=abc&page=2&code=zz")
        == "https://h.example/x?api_key=***&page=2&code=***"
    )


def test_plan_takes_unpushed_equality_locally_and_records_columns_used() -> None:
    spec = _spec()
    cons = [
        Constraint(2, OP_EQ, True, rhs_known=True, rhs_text=True),  # c has no param: a local check
        Constraint(2, OP_EQ, True, rhs_known=False),  # a second one on c: left to SQLite
        Constraint(-1, OP_LIMIT, True),
    ]
    res = make_plan(spec, cons, 0, col_used={2})
    assert res.plan.args == [("local", 2)]
    assert res.usage == {0: (1, True, False)}
    assert res.plan.used == [2]
    # a text column with a non-literal right-hand side is not taken: SQLite decides
    assert make_plan(spec, [Constraint(2, OP_EQ, True)], 0).plan.args == []
    assert make_plan(spec, [Constraint(2, OP_EQ, True)], 0, col_used={63}).plan.used is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.6.7", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("127.evil.example", False), ("127.0.0.1.nip.io", False), ("10.0.0.1", False), ("", False), (None, False)],
)  # fmt: skip
def test_loopback_is_an_ip_literal_not_a_name_prefix(host: str | None, loopback: bool) -> None:
    from remotetables.config import is_loopback_host

    assert is_loopback_host(host) is loopback


def test_plain_http_to_a_lookalike_host_is_refused() -> None:
    from remotetables.errors import ConfigError

    with pytest.raises(ConfigError, match="plain http"):
        parse_config(
            {"tables": {"t": {"url": "http://127.evil.example/x", "columns": {"a": "TEXT"}}}}
        )
