"""Generated SQL over the trap table ``{t}`` (tests/oracle/model.py): WHERE terms with =, IN, OR,
ranges, LIKE, IS NULL, affinity traps ('1' vs 1), unicode and BLOB literals; projections,
DISTINCT, GROUP BY, LIMIT/OFFSET with and without ORDER BY, self-joins, rowid, subqueries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.oracle.model import COLUMNS


@dataclass(frozen=True)
class Query:
    template: str  # {t} is the table
    params: tuple[Any, ...]
    mode: str  # "bag" | "ordered" | "window"


# SQL literal text -> the Python value of the same thing, for bound parameters
LITERALS: list[tuple[str, Any]] = [
    ("1", 1), ("2", 2), ("3", 3), ("0", 0), ("-1", -1), ("2.0", 2.0), ("2.5", 2.5),
    ("1000", 1000), ("1005", 1005), ("1003", 1003), ("1e20", 1e20), ("0.5", 0.5),
    ("'1'", "1"), ("'2'", "2"), ("'01'", "01"), ("' 2'", " 2"), ("'2e0'", "2e0"),
    ("'2.0'", "2.0"), ("'\uff13'", "\uff13"), ("'٣'", "٣"), ("'٤٢'", "٤٢"),
    ("char(160) || '2'", "\xa02"), ("x'33'", b"3"), ("x''", b""), ("''", ""),
    ("'open'", "open"), ("'Open'", "Open"), ("'new'", "new"), ("'closed'", "closed"),
    ("'new,open'", "new,open"), ("'1.0e+20'", "1.0e+20"), ("'true'", "true"),
    ("'Ada'", "Ada"), ("'ada'", "ada"), ("'7'", "7"), ("'[]'", "[]"), ("'a%b'", "a%b"),
    ("'ñ'", "ñ"), ("NULL", None), ("1.5", 1.5), ("'1.5'", "1.5"), ("1e-07", 1e-07),
]  # fmt: skip

COLS = list(COLUMNS)
lit = st.sampled_from(LITERALS)


@st.composite
def term(draw: st.DrawFn, alias: str = "") -> tuple[str, list[Any]]:
    col = alias + draw(st.sampled_from(COLS))
    kind = draw(
        st.sampled_from(
            [
                "eq",
                "eq",
                "eq",
                "bound",
                "in",
                "in",
                "in_bound",
                "not_in",
                "ne",
                "lt",
                "ge",
                "between",
                "null",
                "not_null",
                "like",
                "is",
                "in_sub",
                "rowid_sub",
            ]
        )
    )
    text, value = draw(lit)
    if kind == "eq":
        return f"{col} = {text}", []
    if kind == "bound":
        return f"{col} = ?", [value]
    if kind in ("in", "not_in", "in_bound"):
        items = draw(st.lists(lit, min_size=1, max_size=4))
        if kind == "in_bound":
            return f"{col} IN ({', '.join('?' for _ in items)})", [v for _, v in items]
        neg = "NOT " if kind == "not_in" else ""
        return f"{col} {neg}IN ({', '.join(t for t, _ in items)})", []
    if kind == "ne":
        return f"{col} != {text}", []
    if kind == "lt":
        return f"{col} < {text}", []
    if kind == "ge":
        return f"{col} >= {text}", []
    if kind == "between":
        other, _ = draw(lit)
        return f"{col} BETWEEN {text} AND {other}", []
    if kind == "null":
        return f"{col} IS NULL", []
    if kind == "not_null":
        return f"{col} IS NOT NULL", []
    if kind == "like":
        pattern = draw(st.sampled_from(["'o%'", "'%n'", "'_'", "'A%'", "'%,%'", "'1%'", "'%'"]))
        return f"{col} LIKE {pattern}", []
    if kind == "is":
        return f"{col} IS {text}", []
    if kind == "in_sub":
        src = draw(st.sampled_from(["aux_nums", "aux_texts"]))
        return f"{col} IN (SELECT v FROM {src})", []
    # the remote table in its own subquery, through rowid
    inner = draw(term_simple())
    rowid = "b.rid" if alias == "b." else f"{alias}rowid"  # b: a materialized scan (its rowids)
    return f"{rowid} IN (SELECT rowid FROM {{t}} WHERE {inner})", []


@st.composite
def term_simple(draw: st.DrawFn) -> str:
    col = draw(st.sampled_from(COLS))
    text, _ = draw(lit)
    op = draw(st.sampled_from(["=", "=", "IS", ">", "!="]))
    return f"{col} {op} {text}"


def where(alias: str = "") -> st.SearchStrategy[tuple[str, list[Any]]]:
    def extend(
        inner: st.SearchStrategy[tuple[str, list[Any]]],
    ) -> st.SearchStrategy[tuple[str, list[Any]]]:
        pair = st.tuples(inner, inner, st.sampled_from(["AND", "AND", "OR", "OR"]))
        return st.one_of(
            pair.map(lambda p: (f"({p[0][0]}) {p[2]} ({p[1][0]})", p[0][1] + p[1][1])),
            inner.map(lambda e: (f"NOT ({e[0]})", e[1])),
        )

    return st.recursive(term(alias), extend, max_leaves=4)


@st.composite
def queries(draw: st.DrawFn) -> Query:
    w, params = draw(where())
    shape = draw(
        st.sampled_from(
            [
                "rows",
                "rows",
                "rows",
                "count",
                "group",
                "distinct",
                "self_rowid",
                "self_value",
                "exists",
                "rowid_count",
            ]
        )
    )
    if shape == "count":
        sql = (
            "SELECT count(*), count(num), sum(num), total(score), count(DISTINCT rowid), "
            f"max(state), min(who) FROM {{t}} WHERE {w}"
        )
        return Query(sql, tuple(params), "bag")
    if shape == "rowid_count":
        return Query(
            f"SELECT count(*), count(DISTINCT rowid) FROM {{t}} WHERE {w}", tuple(params), "bag"
        )
    if shape == "group":
        col = draw(st.sampled_from(COLS))
        return Query(
            f"SELECT {col}, count(*), count(DISTINCT rowid) FROM {{t}} WHERE {w} GROUP BY {col}",
            tuple(params),
            "bag",
        )
    if shape == "distinct":
        cols = draw(st.lists(st.sampled_from(COLS), min_size=1, max_size=3, unique=True))
        return Query(
            f"SELECT DISTINCT {', '.join(cols)} FROM {{t}} WHERE {w}", tuple(params), "bag"
        )
    if shape == "self_rowid":
        a, b = draw(st.sampled_from(COLS)), draw(st.sampled_from(COLS))
        w1, p1 = draw(where("a."))
        w2, p2 = draw(where("b."))
        join = draw(st.sampled_from(["AND", "OR"]))
        # b is materialized from its own scan (else SQLite rescans the table per row of a):
        # the rowids of two scans must meet
        return Query(
            f"WITH b AS MATERIALIZED (SELECT rowid AS rid, * FROM {{t}}) "
            f"SELECT a.{a}, b.{b} FROM {{t}} a CROSS JOIN b ON a.rowid = b.rid "
            f"WHERE ({w1}) {join} ({w2})",
            tuple(p1 + p2),
            "bag",
        )
    if shape == "self_value":
        col = draw(st.sampled_from(["num", "state", "flag", "id"]))
        return Query(
            f"WITH b AS MATERIALIZED (SELECT * FROM {{t}} WHERE {w}) "
            f"SELECT count(*), sum(a.id), count(DISTINCT a.rowid) FROM {{t}} a "
            f"CROSS JOIN b ON a.{col} = b.{col}",
            tuple(params),
            "bag",
        )
    if shape == "exists":
        return Query(
            f"SELECT v FROM aux_texts a WHERE EXISTS (SELECT 1 FROM {{t}} WHERE state = a.v AND ({w}))",
            tuple(params),
            "bag",
        )
    cols = draw(
        st.one_of(
            st.just(["*"]),
            st.lists(st.sampled_from(COLS), min_size=1, max_size=4, unique=True),
        )
    )
    proj = ", ".join(cols)
    sql = f"SELECT {proj} FROM {{t}} WHERE {w}"
    mode = "bag"
    ordered = draw(st.booleans())
    if ordered:
        keys = list(COLUMNS) if cols == ["*"] else cols
        sql += " ORDER BY " + ", ".join(keys)
        mode = "ordered"
    if draw(st.booleans()):
        limit = draw(st.sampled_from([-1, 0, 1, 2, 5, 13, 50]))
        offset = draw(st.sampled_from([0, 0, 1, 3, 20, 90]))
        sql += f" LIMIT {limit}" + (f" OFFSET {offset}" if offset else "")
        if not ordered:
            mode = "window"
    return Query(sql, tuple(params), mode)
