"""Query languages: every pushable term of a statement in one parameter.

A table's ``query`` (:class:`~remotetables.config.QuerySpec`) says how a term is written per
operator, how terms are joined, how a value is quoted and escaped, and where ORDER BY goes:

* ServiceNow: ``sysparm_query=state=1^priority<=2^short_descriptionLIKEdisk^ORDERBYDESCopened_at``
* OData: ``$filter=state eq 'open' and priority le 2`` (a ``'`` inside a value doubled)
* JQL: ``jql=project = X AND updated >= "2024-01-01" ORDER BY updated DESC``

A value is data, never syntax: a text value is escaped and quoted by the table's rules, and a
value holding a character the language gives no escape for (``local_if``) is not sent, so no
value can change the expression's structure. As with parameters, a term is sent only in a form
whose meaning keeps every row SQLite keeps (see :mod:`remotetables.pushdown.ops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remotetables.config import ColumnSpec, FilterSpec, QuerySpec
from remotetables.pushdown.ops import RANGE_OPS, format_value, like_term

__all__ = ["compile_query", "query_term"]

_INCLUSIVE = {">": ">=", "<": "<="}


def _literal(q: QuerySpec, col: ColumnSpec, value: Any, lower: bool) -> tuple[str, bool] | None:
    """``value`` written in the language, and whether it is exact (else rounded the safe way)."""
    got = format_value(value, col, col.query_format, lower)
    if got is None:
        return None
    text, exact = got
    if not isinstance(value, str):  # a number (numeric column)
        return (f"{q.quote}{text}{q.quote}" if q.quote_numbers else text), exact
    if col.query_format != "text":  # a date or date-time literal we wrote: digits, -, :, T, Z
        return text, exact
    quoted = _text(q, text)
    return None if quoted is None else (quoted, exact)


def _text(q: QuerySpec, text: str) -> str | None:
    if any(bad in text for bad in q.local_if):
        return None
    for old, new in q.escapes:
        text = text.replace(old, new)
    return f"{q.quote}{text}{q.quote}"


def query_term(
    q: QuerySpec, col: ColumnSpec, op: str, values: Sequence[Any]
) -> tuple[str, bool] | None:
    """The term for ``col op values`` (IN: several values) and whether it means exactly the
    SQL term; None when it cannot be written safely (the term stays local)."""
    assert col.query_field is not None
    field = col.query_field
    if op not in col.query_ops and not (op in _INCLUSIVE and _INCLUSIVE[op] in col.query_ops):
        return None
    if op in ("IS NULL", "IS NOT NULL"):
        template = q.template(op)
        return None if template is None else (template.replace("{field}", field), True)
    if op in ("LIKE", "GLOB"):
        template = q.template(op)
        pattern = like_term(FilterSpec(op, q.param, case=q.like_case), op, values[0])
        if pattern is None or template is None:
            return None
        text = _text(q, pattern)
        return None if text is None else (_fill(template, field, text), False)
    if op == "IN":
        template = q.template("IN")
        texts = []
        for v in values:
            got = _literal(q, col, v, lower=True)
            if got is None or not got[1] or (not q.quote and q.list_separator in got[0]):
                return None
            texts.append(got[0])
        if template is None:
            return None
        return template.replace("{field}", field).replace(
            "{values}", q.list_separator.join(texts)
        ), True
    value = values[0]
    if op in ("=", "!="):
        template = q.template(op)
        got = _literal(q, col, value, lower=True)
        if template is None or got is None or not got[1]:
            return None
        return _fill(template, field, got[0]), True
    if op not in RANGE_OPS:
        return None
    lower = op in (">", ">=")
    candidates = [(op, op in _INCLUSIVE)]
    if op in _INCLUSIVE:
        candidates.append((_INCLUSIVE[op], False))
    for name, strict in candidates:
        template = q.template(name)
        if template is None or name not in col.query_ops:
            continue
        got = _literal(q, col, value, lower)
        if got is None or (strict and not got[1]):
            continue
        return _fill(template, field, got[0]), got[1] and name == op
    return None


def _fill(template: str, field: str, value: str) -> str:
    # one pass, so a value that looks like {field} stays text
    head, sep, tail = template.partition("{value}")
    return head.replace("{field}", field) + (value if sep else "") + tail.replace("{field}", field)


def compile_query(q: QuerySpec, terms: Sequence[str], order: tuple[str, bool] | None) -> str | None:
    """The whole expression: base, terms joined, then ORDER BY (``(field, descending)``)."""
    parts = ([q.base] if q.base else []) + list(terms)
    text = q.joiner.join(parts)
    if order is not None:
        template = q.order_desc if order[1] else q.order_asc
        if template is not None:
            clause = template.replace("{field}", order[0])
            joiner = q.order_joiner if q.order_joiner is not None else q.joiner
            text = f"{text}{joiner}{clause}" if text else clause
    return text or None
