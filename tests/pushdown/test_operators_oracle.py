"""Differential oracle for the operators of ``filters``: every generated WHERE clause runs on
remote tables and on a native SQLite copy of the same rows, and the answers must be equal.

The loopback API answers from its own SQLite copy, in one of three meanings:

* ``strict``: a parameter means exactly its SQL term (``n_gt=5`` is ``n > 5``; ``name_like`` is
  an ASCII case-insensitive contains, as SQLite's LIKE; ``ts_ge`` compares the ISO 8601 text);
  its table marks the columns ``exact``: rows are not re-checked unless a value had to be
  rewritten (a date rounded, a strict bound sent as an inclusive one);
* ``loose``: a looser meaning (``>`` as ``>=``, ``!=`` and IS NULL ignored, contains ignoring
  every case, Unicode too): the local re-check must fix the answer;
* ``ignore``: every filter ignored;
* ``midnight``: ``strict``, with ``ts`` a ``date`` parameter that the API reads as that day's
  midnight against its date-times (as Jira's JQL does), on exact columns.

The requests are checked too: a term is sent only in a form whose strict meaning keeps every
row SQLite keeps (else the ``strict`` table would lose rows and the oracle would see it).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remotetables
from tests.servers.mockapi import LoopbackAPI, Reply

NAMES = [
    "alpha",
    "Alpha",
    "ALPHA",
    "beta",
    "b%ta",
    "b_ta",
    "10",
    "9",
    "",
    "Ünï",
    "ünï",
    "a*b",
    "x[y]",
]
TIMES = [
    "2024-05-31T23:59:59Z",
    "2024-06-01T00:00:00Z",
    "2024-06-01T10:00:00Z",
    "2024-06-02T00:00:00Z",
    "2024-06-15T12:30:00Z",
]


def _rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(60):
        rows.append(
            {
                "id": i,
                "name": None if i % 11 == 0 else NAMES[i % len(NAMES)],
                "n": None if i % 7 == 0 else (i * 5) % 13 - 3,
                "x": None if i % 9 == 0 else ((i * 3) % 10) / 4,
                "ts": None if i % 8 == 0 else TIMES[i % len(TIMES)],
            }
        )
    return rows


ROWS = _rows()
SCHEMA = "CREATE TABLE {t}(id INTEGER, name TEXT, n INTEGER, x REAL, ts TEXT)"
COLS = ("id", "name", "n", "x", "ts")
SUFFIX = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "ne": "!="}


class OperatorAPI:
    """``GET /{meaning}/items?limit=&offset=&<column>_<op>=value``; rows in ``items``, the next
    page's URL in ``next``."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute(SCHEMA.format(t="items"))
        self.db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)", [tuple(r[c] for c in COLS) for r in ROWS]
        )
        self.queries: list[list[tuple[str, str]]] = []

    def __call__(
        self, method: str, seg: list[str], query: list[tuple[str, str]], base: str
    ) -> Reply:
        meaning = seg[0]
        self.queries.append(query)
        where, args = ["1"], []
        for name, value in query:
            col, _, op = name.rpartition("_")
            if meaning == "ignore" or col not in COLS:
                continue
            if op in SUFFIX:
                sql_op = SUFFIX[op]
                if meaning == "midnight" and re.fullmatch(r"\d{4}-\d\d-\d\d", value):
                    value += "T00:00:00Z"  # JQL: "if a time-component is not specified,
                    # midnight will be assumed", then the term's own operator, exactly
                if meaning == "loose":
                    if sql_op == "!=":
                        continue
                    sql_op = {">": ">=", "<": "<="}.get(sql_op, sql_op)
                where.append(f"{col} {sql_op} ?")
                args.append(value)
            elif op == "null":
                if meaning in ("strict", "midnight"):
                    where.append(f"{col} IS NULL" if value == "true" else f"{col} IS NOT NULL")
            elif op == "has":  # contains, ASCII case-insensitive (strict) or any case (loose)
                if meaning in ("strict", "midnight"):
                    where.append(f"instr(lower({col}), lower(?)) > 0")
                else:
                    where.append(f"instr(py_fold({col}), py_fold(?)) > 0")
                args.append(value)
            elif op == "glob":  # contains, case-sensitive (strict) or not (loose)
                where.append(
                    f"instr({col}, ?) > 0"
                    if meaning in ("strict", "midnight")
                    else f"instr(py_fold({col}), py_fold(?)) > 0"
                )
                args.append(value)
        q = dict(query)
        limit, offset = int(q.get("limit", "10")), int(q.get("offset", "0"))
        self.db.create_function("py_fold", 1, lambda s: None if s is None else s.casefold())
        order = "id"
        if q.get("sort") in COLS and meaning != "ignore":
            direction = "DESC" if q.get("order") == "desc" else "ASC"
            if meaning in ("strict", "midnight"):  # SQLite's own order (NULLs first ascending)
                order = f"{q['sort']} {direction}, id"
            else:  # another order: case-insensitive, NULLs last
                order = f"{q['sort']} IS NULL, {q['sort']} COLLATE NOCASE {direction}, id"
        sql = f"SELECT {', '.join(COLS)} FROM items WHERE {' AND '.join(where)} ORDER BY {order}"
        rows = self.db.execute(sql + " LIMIT ? OFFSET ?", (*args, limit + 1, offset)).fetchall()
        more = len(rows) > limit
        items = [dict(zip(COLS, r, strict=True)) for r in rows[:limit]]
        nxt = None
        if more:
            nxt = f"{base}/{meaning}/items?" + urlencode({**q, "offset": str(offset + limit)})
        return Reply(200, {"items": items, "next": nxt})


def _table(name: str, meaning: str, exact: bool, cache: bool, ts_format: str = "datetime") -> str:
    ex = ", exact = true" if exact else ""
    ex += ", sort_exact = true" if meaning in ("strict", "midnight") else ""

    def ops(col: str, fmt: str = "") -> str:
        f = f', format = "{fmt}"' if fmt else ""
        return (
            ", ".join(
                f'"{op}" = {{ param = "{col}_{suffix}"{f} }}' for suffix, op in SUFFIX.items()
            )
            + f', "IS NULL" = {{ param = "{col}_null", value = "true" }}, "IS NOT NULL" = {{ param = "{col}_null", value = "false" }}'
        )

    return f"""
[tables.{name}]
url = "{{base}}/{meaning}/items"
rows = "items"
pagination = {{ style = "next_url", next_path = "next" }}
page_size_param = "limit"
max_page_size = 20
key = "id"
cache_ttl = {30 if cache else 0}
order_by = {{ param = "sort", direction_param = "order" }}
[tables.{name}.columns]
id = "INTEGER"
name = {{ sort = "name", type = "TEXT"{ex}, filters = {{ {ops("name")}, "LIKE" = {{ param = "name_has", case = "insensitive" }}, "GLOB" = {{ param = "name_glob" }} }} }}
n = {{ sort = "n", type = "INTEGER"{ex}, filters = {{ {ops("n")} }} }}
x = {{ sort = "x", type = "REAL"{ex}, filters = {{ {ops("x")} }} }}
ts = {{ sort = "ts", type = "TEXT"{ex}, filters = {{ {ops("ts", ts_format)} }} }}
"""


TABLES = {
    "t_strict": ("strict", True, False),
    "t_strict_text": ("strict", False, False),
    # ts as a date parameter of an API that reads a date as midnight against its date-times
    # (Jira's JQL), every operator applied exactly, exact columns
    "t_strict_day": ("midnight", True, False, "date"),
    "t_loose": ("loose", False, False),
    "t_loose_cached": ("loose", False, True),
    "t_ignore": ("ignore", False, False),
}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, OperatorAPI]]:
    api_impl = OperatorAPI()
    with LoopbackAPI(api_impl) as api:
        text = "".join(_table(n, *spec) for n, spec in TABLES.items()).replace(
            "{base}", api.base_url
        )
        cfg = tmp_path_factory.mktemp("ops") / "remotetables.toml"
        cfg.write_text(text, encoding="utf-8")
        with remotetables.connect(":memory:", cfg) as conn:
            conn.execute(SCHEMA.format(t="native"))
            conn.executemany(
                "INSERT INTO native VALUES (?, ?, ?, ?, ?)",
                [tuple(r[c] for c in COLS) for r in ROWS],
            )
            yield conn, api_impl


VALUES: dict[str, list[Any]] = {
    "name": ["alpha", "ALPHA", "b", "9", "10", "", "ü", "Ünï", 9, 10, 9.5, None, "z"],
    "n": [0, 3, -3, 2.5, "3", "03", "abc", "", None, 9],
    "x": [0, 0.75, 1.5, "1.5", "x", None, 2],
    "ts": [*TIMES, "2024-06-01", "2024-06-01T10:00", "2024-06-01 10:00", "2024-06", 5, None],
}
PATTERNS = ["%alp%", "%ALP%", "%b%", "alp%", "%%", "%", "%ü%", "%Ü%", "%b_t%", "%b\\%t%", 5, None]
GLOBS = ["*alp*", "*Alp*", "*b*", "alp*", "*[x]*", "*", "*ü*", None]


@st.composite
def terms(draw: Callable[..., Any]) -> tuple[str, list[Any]]:
    col = draw(st.sampled_from(["name", "n", "x", "ts"]))
    kind = draw(st.sampled_from(["cmp", "cmp", "cmp", "null", "like"]))
    if kind == "null":
        return f"{col} IS {draw(st.sampled_from(['', 'NOT ']))}NULL", []
    if kind == "like" and col == "name":
        if draw(st.booleans()):
            return "name LIKE ?", [draw(st.sampled_from(PATTERNS))]
        return "name GLOB ?", [draw(st.sampled_from(GLOBS))]
    op = draw(st.sampled_from(list(SUFFIX.values())))
    value = draw(st.sampled_from(VALUES[col]))
    if draw(st.booleans()):
        return f"? {_flip(op)} {col}", [value]  # SQLite hands the term over as `col op ?`
    return f"{col} {op} ?", [value]


def _flip(op: str) -> str:
    return {">": "<", ">=": "<=", "<": ">", "<=": ">="}.get(op, op)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible, never a flake
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    where=st.lists(terms(), min_size=1, max_size=3),
    table=st.sampled_from(sorted(TABLES)),
    literal=st.booleans(),
    limit=st.sampled_from([None, None, 3]),
)
def test_every_operator_answers_as_sqlite(
    oracle: tuple[Any, OperatorAPI], where: list[tuple[str, list[Any]]], table: str,
    literal: bool, limit: int | None,
) -> None:  # fmt: skip
    conn, _ = oracle
    clause = " AND ".join(t for t, _ in where)
    params = [p for _, ps in where for p in ps]
    if literal:  # constants in the SQL text: SQLite shows them to BestIndex
        for p in params:
            clause = clause.replace("?", _sql_literal(p), 1)
        params = []
    tail = " ORDER BY id" + (f" LIMIT {limit}" if limit else "")
    sql = f"SELECT id, name, n, x, ts FROM {{t}} WHERE {clause}{tail}"
    remote = conn.execute(sql.format(t=table), params).fetchall()
    native = conn.execute(sql.format(t="native"), params).fetchall()
    assert remote == native, sql


def _every_term() -> list[str]:
    out = []
    for col, values in VALUES.items():
        out += [f"{col} IS NULL", f"{col} IS NOT NULL"]
        out += [f"{col} {op} {_sql_literal(v)}" for op in SUFFIX.values() for v in values]
    out += [f"name LIKE {_sql_literal(p)}" for p in PATTERNS]
    out += [f"name GLOB {_sql_literal(p)}" for p in GLOBS]
    return out


@pytest.mark.parametrize("table", ["t_strict", "t_strict_day", "t_loose"])
def test_every_single_term(oracle: tuple[Any, OperatorAPI], table: str) -> None:
    """Each operator with each value of the pools alone, so no case is left to chance."""
    conn, _ = oracle
    wrong = []
    for term in _every_term():
        sql = f"SELECT id, name, n, x, ts FROM {{t}} WHERE {term} ORDER BY id"
        if (
            conn.execute(sql.format(t=table)).fetchall()
            != conn.execute(sql.format(t="native")).fetchall()
        ):
            wrong.append(term)
    assert wrong == []


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible, never a flake
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    where=st.lists(terms(), min_size=0, max_size=2),
    table=st.sampled_from(sorted(TABLES)),
    col=st.sampled_from(["name", "n", "x", "ts"]),
    desc=st.booleans(),
    limit=st.sampled_from([None, 1, 4, 25]),
)
def test_order_by_and_limit_answer_as_sqlite(
    oracle: tuple[Any, OperatorAPI], where: list[tuple[str, list[Any]]], table: str, col: str,
    desc: bool, limit: int | None,
) -> None:  # fmt: skip
    """ORDER BY one column: consumed where the API sorts as SQLite does (strict tables), re-sorted
    by SQLite elsewhere; with LIMIT the keys come in SQLite's order, ties may pick any row."""
    conn, _ = oracle
    clause = " AND ".join(t for t, _ in where) or "1"
    for p in [p for _, ps in where for p in ps]:
        clause = clause.replace("?", _sql_literal(p), 1)
    order = f" ORDER BY {col}{' DESC' if desc else ''}" + (f" LIMIT {limit}" if limit else "")
    sql = f"SELECT {col}, id, name, n, x, ts FROM {{t}} WHERE {clause}"
    remote = conn.execute(sql.format(t=table) + order).fetchall()
    native = conn.execute(sql.format(t="native") + order).fetchall()
    assert [r[0] for r in remote] == [r[0] for r in native], sql + order
    assert set(remote) <= set(conn.execute(sql.format(t="native")).fetchall())


@pytest.mark.parametrize(
    ("table", "consumed", "sent"),
    [
        ("t_strict", True, [("sort", "ts"), ("order", "desc"), ("limit", "3")]),
        ("t_loose", False, [("sort", "ts"), ("order", "desc"), ("limit", "20")]),
    ],
)
def test_order_by_is_consumed_only_where_the_api_sorts_as_sqlite(
    oracle: tuple[Any, OperatorAPI], table: str, consumed: bool, sent: list[tuple[str, str]]
) -> None:
    conn, api = oracle
    sql = f"SELECT id FROM {table} ORDER BY ts DESC LIMIT 3"
    plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
    assert ("TEMP B-TREE FOR ORDER BY" not in plan) == consumed, plan
    api.queries.clear()
    conn.execute(sql).fetchall()
    assert api.queries[0] == sent  # not consumed: the API still sorts, and no LIMIT is sent


def _sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


@pytest.mark.parametrize(
    ("where", "sent"),
    [
        ("n > 3", [("n_gt", "3")]),
        ("n >= 2.5", [("n_ge", "2")]),  # rounded down for a lower bound
        ("n <= 2.5", [("n_le", "3")]),  # ... up for an upper bound
        ("n < 2.5", [("n_le", "3")]),  # a strict bound not written exactly: the inclusive one
        ("n > 2.5", [("n_ge", "2")]),  # a strict bound not written exactly: the inclusive one
        ("n != 3", [("n_ne", "3")]),
        ("n != 2.5", []),  # no exact form: local only
        ("n > 'abc'", []),  # text sorts after every number: nothing sent
        ("ts >= '2024-06-01'", [("ts_ge", "2024-06-01T00:00:00Z")]),
        ("ts > '2024-06-01'", [("ts_ge", "2024-06-01T00:00:00Z")]),
        ("ts > '2024-06-01T10:00:00Z'", [("ts_gt", "2024-06-01T10:00:00Z")]),
        ("ts < '2024-06-01 10:00'", []),  # not the API's form
        ("ts IS NULL", [("ts_null", "true")]),
        ("name IS NOT NULL", [("name_null", "false")]),
        ("name LIKE '%alp%'", [("name_has", "alp")]),
        ("name LIKE 'a_p%'", []),  # not a contains pattern: SQLite checks it
        ("name GLOB '*Alp*'", [("name_glob", "Alp")]),
        ("name > 5", []),  # a number against a TEXT column: SQLite's affinity rules, kept local
        ("n > 1 AND n > 2", [("n_gt", "1")]),  # one value per parameter; the other stays local
    ],
)
def test_what_is_sent(
    oracle: tuple[Any, OperatorAPI], where: str, sent: list[tuple[str, str]]
) -> None:
    conn, api = oracle
    api.queries.clear()
    conn.execute(f"SELECT id FROM t_strict_text WHERE {where}").fetchall()
    assert api.queries, "no request"
    assert [(k, v) for k, v in api.queries[0] if k not in ("limit", "offset")] == sent
