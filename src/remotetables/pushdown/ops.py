"""Comparison operators: SQLite's meaning (for the local re-check) and the API parameter a term
goes to (for the request).

The promise of a pushed term is one-sided: the API keeps **at least** the rows SQLite keeps.
Where a value must be rewritten for the API (a date form, a pattern), a lower bound is rounded
down and an upper bound up; a strict bound (``>``, ``<``) whose value cannot be written exactly
goes only to the inclusive parameter; anything else stays local. The rows the API returns are
re-checked here with SQLite's rules (unless the column is ``exact``).

>>> check("b", ">", "a"), check(None, "!=", 1), check(2, "<", "x")
(True, False, True)
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from remotetables.config import ColumnSpec, FilterSpec
from remotetables.rows import affinity_of

__all__ = [
    "OPS_BY_CODE",
    "RANGE_OPS",
    "check",
    "format_value",
    "like_term",
    "request_param",
    "sql_compare",
]

# sqlite3 index constraint codes -> the operator as the config writes it
OPS_BY_CODE = {
    4: ">",
    8: "<=",
    16: "<",
    32: ">=",
    65: "LIKE",
    66: "GLOB",
    68: "!=",
    70: "IS NOT NULL",
    71: "IS NULL",
}
RANGE_OPS = (">", ">=", "<", "<=")
_LOWER = (">", ">=")
_INCLUSIVE = {">": ">=", "<": "<="}


def _rank(v: Any) -> int:
    if isinstance(v, (int, float)):
        return 1
    if isinstance(v, str):
        return 2
    return 3  # bytes


def sql_compare(a: Any, b: Any) -> int | None:
    """SQLite's ordering of two values once affinity is applied (BINARY collation):
    numbers < text < blobs, text by code point (UTF-8 byte order); None when either is NULL."""
    if a is None or b is None:
        return None
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    return -1 if a < b else (1 if a > b else 0)


def check(value: Any, op: str, rhs: Any) -> bool:
    """Whether SQLite keeps a row whose column holds ``value`` for ``value op rhs``."""
    if op == "IS NULL":
        return value is None
    if op == "IS NOT NULL":
        return value is not None
    c = sql_compare(value, rhs)
    if c is None:
        return False
    if op == ">":
        return c > 0
    if op == ">=":
        return c >= 0
    if op == "<":
        return c < 0
    if op == "<=":
        return c <= 0
    if op == "!=":
        return c != 0
    raise ValueError(f"no local check for {op}")


# ---------------------------------------------------------------- values for the API

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME_Z = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$")


def _as_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def format_value(value: Any, col: ColumnSpec, fmt: str, lower: bool) -> tuple[str, bool] | None:
    """``(text for the API, exact)``: exact when the API orders the text as SQLite orders the
    value; otherwise rounded down for a lower bound, up for an upper one. None: no safe form."""
    numeric = affinity_of(col.type) != "TEXT"
    if numeric:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # text against a numeric column: every number sorts before it
        if isinstance(value, int) or col.type == "REAL":
            return (str(value), True)
        if value != value or value in (float("inf"), float("-inf")):
            return None
        if value.is_integer():
            return (str(int(value)), True)
        bound = int(value // 1) if lower else int(-(-value // 1))
        return (str(bound), False)
    if not isinstance(value, str):
        return None
    if fmt == "text":
        return (value, True)
    if fmt == "datetime":
        if _DATETIME_Z.match(value) and _as_date(value[:10]):
            return (value, True)
        if _DATE.match(value) and _as_date(value):
            # '2024-06-01' sorts before every time of that day: midnight is a floor and a
            # ceiling for the rows written '2024-06-01T..Z' (the API's own form)
            return (value + "T00:00:00Z", False)
        return None
    if fmt == "date":
        if _DATE.match(value) and _as_date(value):
            # an API that takes a date may compare it with date-times (Jira's JQL: "if a
            # time-component is not specified, midnight will be assumed"), where SQLite's text
            # '2024-06-01T00:00..' is > '2024-06-01': so '>' goes to '>=', and '<=' is re-checked
            return (value, False)
        if _DATETIME_Z.match(value):
            day = _as_date(value[:10])
            if day is None:
                return None
            return ((day if lower else day + dt.timedelta(days=1)).isoformat(), False)
        return None
    return None


def request_param(col: ColumnSpec, op: str, value: Any) -> tuple[str, str, bool] | None:
    """``(parameter, text, exact)`` for ``col op value``: exact when the parameter means the
    term itself (not a looser one); None when it cannot be sent without risking a row SQLite
    keeps (the term is then applied locally only)."""
    if op in ("IS NULL", "IS NOT NULL"):
        f = col.filter_for(op)
        return None if f is None or f.value is None else (f.param, f.value, True)
    if op == "!=":
        f = col.filter_for(op)
        if f is None:
            return None
        got = format_value(value, col, f.format, lower=True)
        return None if got is None or not got[1] else (f.param, got[0], True)
    if op not in RANGE_OPS:
        return None
    lower = op in _LOWER
    own = col.filter_for(op)
    inclusive = col.filter_for(_INCLUSIVE[op]) if op in _INCLUSIVE else None
    for f, strict in ((own, op in _INCLUSIVE), (inclusive, False)):
        if f is None:
            continue
        got = format_value(value, col, f.format, lower)
        if got is None:
            continue
        text, exact = got
        if strict and not exact:
            continue  # '> 2024-06-01' is not '> 2024-06-01T00:00:00Z': try the >= parameter
        return (f.param, text, exact and f is own)
    return None


def like_term(f: FilterSpec, op: str, pattern: Any) -> str | None:
    """The text a LIKE/GLOB parameter takes for ``pattern``, or None when the pattern is not of
    the parameter's form, or the API could drop a row SQLite keeps (LIKE ignores ASCII case:
    an API that compares case is sent only a text without ASCII letters)."""
    if not isinstance(pattern, str):
        return None
    wild = "%" if op == "LIKE" else "*"
    specials = "%_" if op == "LIKE" else "*?["
    if f.match == "contains":
        if len(pattern) < 2 or not (pattern.startswith(wild) and pattern.endswith(wild)):
            return None
        text = pattern[1:-1]
    elif f.match == "prefix":
        if not pattern.endswith(wild):
            return None
        text = pattern[:-1]
    else:
        if not pattern.startswith(wild):
            return None
        text = pattern[1:]
    if not text or any(ch in specials for ch in text):
        return None
    if op == "LIKE" and f.case == "sensitive" and re.search(r"[A-Za-z]", text):
        return None
    return text
