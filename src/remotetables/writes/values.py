"""What a write sends and how rows are named: SQL values -> JSON values, nested bodies, rowids."""

from __future__ import annotations

import math
from typing import Any

import orjson

from remotetables.config import ColumnSpec
from remotetables.errors import ReadOnlyError
from remotetables.rows import apply_affinity, coerce

__all__ = ["json_value", "key_rowid", "put_path", "sql_value"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def key_rowid(key: Any) -> int:
    """The rowid of the row whose key column holds ``key`` (the cursor's and the writer's).

    An integer key that fits SQLite's 64-bit rowid IS the rowid: two keys never share one
    (snowflake IDs, -1 and -2 ...). Any other key (text, a REAL, a huge integer) gets a 64-bit
    hash, stable within the process; two such keys may share a rowid by chance (about one
    pair in 2^64), and the writer then tells their rows apart by the key itself.
    """
    if type(key) is int and _INT64_MIN <= key <= _INT64_MAX:
        return key
    return hash((type(key).__name__, key))


def sql_value(col: ColumnSpec, value: Any) -> Any:
    """``value`` as SQLite handed it over (no affinity is applied to a virtual table's writes),
    converted to the column's declared type with the rules of reads (:func:`rows.coerce`) and
    SQLite's: ``' 5 '`` in an INTEGER column is ``5``, ``1``/``'yes'``/``'true'`` in a BOOLEAN one
    is ``1``, a number in a TEXT column is the text SQLite would store, JSON text is stored
    compact (as reads give it). ``ValueError`` says why a value does not fit."""
    typ = col.type
    if isinstance(value, bytes):
        raise ValueError("a BLOB cannot be sent to the API")
    if typ == "TEXT":
        return apply_affinity(value, "TEXT")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number (JSON has none)")
    if typ == "JSON":
        if isinstance(value, str):
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                short = value if len(value) <= 40 else value[:37] + "..."
                raise ValueError(f"{short!r} is not valid JSON text") from None
        else:
            parsed = value  # a number is a JSON value as it is
        return coerce(parsed, "JSON")
    return coerce(value, typ)


def json_value(col: ColumnSpec, value: Any) -> Any:
    """The JSON value sent for ``value`` (already converted by :func:`sql_value`)."""
    if value is None:
        return None
    if col.type == "BOOLEAN":
        return bool(value)
    if col.type == "JSON":
        return orjson.loads(value)
    return value


def put_path(body: dict[str, Any], col: ColumnSpec, value: Any) -> None:
    """Set ``value`` at the column's path in ``body`` (nested objects are created)."""
    path = col.path or (col.name,)
    node = body
    for part in path[:-1]:
        if not isinstance(part, str):
            raise ReadOnlyError(
                f"column {col.name}: its path has a list index and cannot be written "
                "(set writable = false)"
            )
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ReadOnlyError(f"column {col.name}: its path collides with another column")
        node = nxt
    last = path[-1]
    if not isinstance(last, str):
        raise ReadOnlyError(
            f"column {col.name}: its path has a list index and cannot be written (set writable = false)"
        )
    node[last] = value
