"""The pushdown layer: what a WHERE term becomes in the request (path segments, API parameters)
and how SQLite's meaning is kept (the local re-check). Pure: no I/O, no apsw types."""

from __future__ import annotations

from remotetables.pushdown.describe import COLUMNS, describe_columns
from remotetables.pushdown.ops import (
    OPS_BY_CODE,
    RANGE_OPS,
    check,
    like_term,
    request_param,
    sql_compare,
)
from remotetables.pushdown.path import encode_segment, fill_path, placeholders
from remotetables.pushdown.query import compile_query, query_term

__all__ = [
    "COLUMNS",
    "OPS_BY_CODE",
    "RANGE_OPS",
    "check",
    "compile_query",
    "describe_columns",
    "encode_segment",
    "fill_path",
    "like_term",
    "placeholders",
    "query_term",
    "request_param",
    "sql_compare",
]
