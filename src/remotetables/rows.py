"""JSON paths and type coercion: a decoded page becomes a list of SQLite-ready tuples.

Paths are dotted names with optional ``[n]`` indexes: ``caller.name``, ``tags[0]``,
``links.next``; ``""`` (or ``$``) is the document itself. A key holding a dot is written
quoted: ``meta."x.y"``.

The row builder is compiled once per table into one Python function, so a page of rows
costs one call per row, not one per value.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import threading
from collections.abc import Callable, Collection, Sequence
from itertools import repeat
from typing import Any

import apsw
import orjson

from remotetables.errors import CoercionError

__all__ = [
    "JsonPath",
    "RowBuilder",
    "affinity_of",
    "apply_affinity",
    "coerce",
    "get_path",
    "is_sql_number",
    "parse_path",
    "sql_equal",
    "sqlite_real_text",
]

JsonPath = tuple[str | int, ...]

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^.\[\]"]+)|\[(-?\d+)\])')


def parse_path(text: str) -> JsonPath:
    """Parse ``a.b[0]."c.d"`` into ``("a", "b", 0, "c.d")``; ``""`` and ``"$"`` are the root."""
    text = text.strip()
    if text in ("", "$"):
        return ()
    if text.startswith("$."):
        text = text[2:]
    out: list[str | int] = []
    pos = 0
    expect_name = True
    while pos < len(text):
        if not expect_name and text[pos] == ".":
            pos += 1
            expect_name = True
            if pos >= len(text):
                raise ValueError("ends with '.'")
            continue
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unexpected {text[pos]!r} at position {pos}")
        quoted, bare, index = m.groups()
        if index is not None:
            out.append(int(index))
        elif not expect_name:
            raise ValueError(f"missing '.' before position {pos}")
        elif quoted is not None:
            out.append(quoted.replace('\\"', '"'))
        else:
            name = bare.strip()
            if not name:
                raise ValueError("empty name")
            out.append(name)
        pos = m.end()
        expect_name = False
    return tuple(out)


def get_path(doc: Any, path: JsonPath) -> Any:
    """Follow ``path`` into ``doc``; a missing key or index gives ``None``."""
    for step in path:
        if isinstance(step, int):
            if isinstance(doc, list) and -len(doc) <= step < len(doc):
                doc = doc[step]
            else:
                return None
        elif isinstance(doc, dict):
            doc = doc.get(step)
        else:
            return None
    return doc


# ------------------------------------------------------------------ coercion


class _Bad(Exception):
    pass


def _to_json(v: Any) -> str:
    try:
        out = orjson.dumps(v)
        if b"null" in out and _has_infinity(v):
            # orjson writes +-Inf (a number beyond a double's range, http.response.loads_json)
            # as null; SQLite writes 9.0e+999 (json_array(1e999)) and reads it back as Inf
            out = orjson.dumps(_sqlite_infinities(v))
    except orjson.JSONEncodeError:  # nested past orjson's 254 levels (decoding allows 1024)
        raise _Bad("a JSON value nested too deep (more than 254 levels) to store") from None
    return out.decode()


_INF_JSON = {math.inf: orjson.Fragment(b"9.0e+999"), -math.inf: orjson.Fragment(b"-9.0e+999")}


def _has_infinity(v: Any) -> bool:
    stack = [v]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if node in _INF_JSON:
                return True
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _sqlite_infinities(v: Any) -> Any:
    """``v`` with each +-Inf as SQLite writes it in JSON (nested no deeper than orjson writes)."""
    if isinstance(v, float):
        return _INF_JSON.get(v, v)
    if isinstance(v, dict):
        return {k: _sqlite_infinities(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_sqlite_infinities(x) for x in v]
    return v


# SQLite's text-to-number rules are ASCII-only: digits 0-9 and its own whitespace set (space,
# \t \n \v \f \r; sqlite3Isspace), never Python's Unicode \d and \s (fullwidth or Arabic-Indic digits are texts)
SQL_SPACE = " \t\n\v\f\r"
_INT_RE = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*", re.ASCII)
_NUM_RE = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\n\v\f\r]*", re.ASCII
)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1  # SQLite's INTEGER range


def is_sql_number(text: str) -> bool:
    """Whether SQLite reads ``text`` as a number (a well-formed ASCII numeric literal)."""
    return _NUM_RE.fullmatch(text) is not None


def _in_range(n: int, v: Any) -> int:
    if _I64_MIN <= n <= _I64_MAX:
        return n
    raise _Bad(
        f"{_short(v)} is outside SQLite's 64-bit integer range (declare the column TEXT to keep "
        "every digit)"
    )


def _integer(v: Any) -> Any:
    if v is True or v is False:
        return int(v)
    if isinstance(v, int):
        return _in_range(v, v)
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer() and _I64_MIN <= v <= _I64_MAX:
            return int(v)
        return v  # SQLite keeps a non-integral (or too large) REAL in an INTEGER column as REAL
    if isinstance(v, str):
        s = v.strip(SQL_SPACE)
        if s == "":
            return None
        if _INT_RE.fullmatch(s):
            if len(s.lstrip("+-").lstrip("0")) > 19:  # past int64, and int() refuses 4300+ digits
                raise _Bad(
                    f"{_short(v)} is outside SQLite's 64-bit integer range (declare the column "
                    "TEXT to keep every digit)"
                )
            return _in_range(int(s), v)
        if not _NUM_RE.fullmatch(s):
            raise _Bad(f"{_short(v)} is not an integer")
        f = float(s)
        if not math.isfinite(f):
            raise _Bad(f"{v!r} is not an integer")
        return int(f) if f.is_integer() and _I64_MIN <= f <= _I64_MAX else f
    raise _Bad(f"a JSON {_kind(v)} is not an integer")


def _real(v: Any) -> Any:
    # + 0.0: a REAL column holds 0.0 for -0.0 (SQLite stores an integral REAL as an integer)
    if isinstance(v, (int, float)):
        return float(v) + 0.0
    if isinstance(v, str):
        s = v.strip(SQL_SPACE)
        if s == "":
            return None
        if not _NUM_RE.fullmatch(s):
            raise _Bad(f"{v!r} is not a number")
        f = float(s)
        if not math.isfinite(f):
            raise _Bad(f"{v!r} is not a finite number")
        return f + 0.0
    raise _Bad(f"a JSON {_kind(v)} is not a number")


_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def _boolean(v: Any) -> Any:
    if v is True or v is False:
        return int(v)
    if isinstance(v, (int, float)) and v in (0, 1):
        return int(v)
    if isinstance(v, str):
        s = v.strip(SQL_SPACE).lower()
        if s == "":
            return None
        if s in _TRUE:
            return 1
        if s in _FALSE:
            return 0
    raise _Bad(f"{_short(v)} is not a boolean")


def _text(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return sqlite_real_text(v)
    return _to_json(v)


def _json(v: Any) -> Any:
    return _to_json(v)


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return type(v).__name__


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "INTEGER": _integer,
    "REAL": _real,
    "TEXT": _text,
    "BOOLEAN": _boolean,
    "JSON": _json,
}
# Values of these Python types are already right for the SQL type: no call needed.
_FAST_TYPE: dict[str, type] = {"REAL": float, "TEXT": str}  # INTEGER: also a range check


def coerce(value: Any, sql_type: str) -> Any:
    """Convert one JSON value to the declared SQL type; raise ``ValueError`` if it cannot be."""
    if value is None:
        return None
    try:
        return _CONVERTERS[sql_type](value)
    except _Bad as exc:
        raise ValueError(str(exc)) from None


class RowBuilder:
    """Turns decoded JSON items into tuples, one compiled function per table.

    Two functions are compiled: a fast one that takes every top-level key with one
    ``operator.itemgetter`` call (it raises ``KeyError`` when a row lacks a key) and a tolerant
    one that reads keys with ``dict.get`` (a missing key is NULL). A page is built with the fast
    one; if it fails, with the tolerant one; if a value cannot be converted, row by row with
    messages. After a page with a missing key the fast one is skipped for a few pages.
    """

    _FAST_PAUSE = 8  # pages built tolerantly after the fast builder missed a key

    def __init__(
        self,
        table: str,
        columns: Sequence[tuple[str, str, JsonPath, bool]],
        used: Collection[int] | None = None,
        *,
        carry: bool = False,
    ) -> None:
        """``columns``: (name, sql type, path, null_on_error) for each column, in order.

        ``used``: the column positions the query reads (SQLite's colUsed); the others are
        NULL in the tuples, and nothing is extracted or converted for them. None: all.
        ``carry``: each tuple ends with its JSON item, after the columns (a keyless table's
        rowid is the identity of the whole row, worked out from the item only when asked).
        """
        self.table = table
        self.columns = list(columns)
        self.used = frozenset(range(len(self.columns)) if used is None else used)
        self.carry = carry
        # a query that reads no column (count(*)): every row is the same tuple
        self._const: tuple[Any, ...] | None = (
            (None,) * len(self.columns) if not self.used and not carry else None
        )
        tolerant = self._compile(fast=False)
        assert tolerant is not None
        self._build: Callable[[Any], tuple[Any, ...]] = tolerant
        self._fast: Callable[[Any], tuple[Any, ...]] | None = self._compile(fast=True)
        self._skip_fast = 0

    def _compile(self, *, fast: bool) -> Callable[[Any], tuple[Any, ...]] | None:
        env: dict[str, Any] = {"_dict": dict, "_get_path": get_path, "_T": True, "_F": False}
        lines = ["def build(item):"]
        tops: list[str] = []  # top-level keys taken by one itemgetter call (fast builder)
        if fast:
            for i, (_name, _typ, path, _null) in enumerate(self.columns):
                if i not in self.used:
                    continue
                if path and all(isinstance(step, str) for step in path) and path[0] not in tops:
                    tops.append(str(path[0]))
            if not tops and self.used:
                return None
            if tops:
                env["_ig"] = operator.itemgetter(*tops)
                names = ", ".join(f"k{j}" for j in range(len(tops)))
                # itemgetter with one key returns the value itself, not a 1-tuple
                lines.append(f"    {names} = _ig(item)")
        else:
            lines.append("    g = item.get")
        outs: list[str] = []
        for i, (_name, typ, path, _null) in enumerate(self.columns):
            if i not in self.used:
                outs.append("None")
                continue
            var = f"v{i}"
            if not path:
                lines.append(f"    {var} = item")
            elif all(isinstance(step, str) for step in path):
                first = f"k{tops.index(str(path[0]))}" if fast else f"g({path[0]!r})"
                lines.append(f"    {var} = {first}")
                for step in path[1:]:
                    lines.append(
                        f"    {var} = {var}.get({step!r}) if {var}.__class__ is _dict else None"
                    )
            else:
                env[f"_p{i}"] = path
                lines.append(f"    {var} = _get_path(item, _p{i})")
            env[f"c{i}"] = _CONVERTERS[typ]
            fast_type = _FAST_TYPE.get(typ)
            if typ == "INTEGER":
                # decoders give integers up to 2**64 - 1; SQLite stores up to 2**63 - 1
                env["_MAX"] = _I64_MAX
                outs.append(
                    f"({var} if {var}.__class__ is int and {var} <= _MAX or {var} is None "
                    f"else c{i}({var}))"
                )
            elif typ == "REAL":
                env[f"t{i}"] = float  # 0.0 and -0.0 go through the converter (-0.0 -> 0.0)
                outs.append(
                    f"({var} if {var}.__class__ is t{i} and {var} or {var} is None "
                    f"else c{i}({var}))"
                )
            elif fast_type is not None:
                env[f"t{i}"] = fast_type
                outs.append(f"({var} if {var}.__class__ is t{i} or {var} is None else c{i}({var}))")
            elif typ == "BOOLEAN":
                outs.append(
                    f"(1 if {var} is _T else 0 if {var} is _F else None if {var} is None "
                    f"else c{i}({var}))"
                )
            else:
                outs.append(f"(None if {var} is None else c{i}({var}))")
        if self.carry:
            outs.append("item")
        lines.append("    return (" + ", ".join(outs) + ("," if len(outs) == 1 else "") + ")")
        exec("\n".join(lines), env)
        build: Callable[[Any], tuple[Any, ...]] = env["build"]
        return build

    def build_page(self, items: list[Any], first_row: int) -> list[tuple[Any, ...]]:
        """Tuples for a page; ``first_row`` (0-based) is used in error messages."""
        if self._const is not None:
            return [self._const] * len(items)
        if not self.used:
            # count(*) on a keyless table: NULLs and the item, tuples made in C (repeat is endless)
            nulls = [repeat(None)] * len(self.columns)
            return list(zip(*nulls, items, strict=False))
        fast = self._fast
        if fast is not None:
            if self._skip_fast:
                self._skip_fast -= 1
            else:
                try:
                    return list(map(fast, items))
                except (KeyError, TypeError, AttributeError):
                    self._skip_fast = self._FAST_PAUSE  # a row lacks a key (or is no object)
                except _Bad:
                    return [self._slow(item, first_row + n) for n, item in enumerate(items)]
        try:
            return list(map(self._build, items))
        except (_Bad, AttributeError, TypeError):
            return [self._slow(item, first_row + n) for n, item in enumerate(items)]

    def identity(self, item: Any) -> tuple[Any, ...]:
        """The whole row ``item`` makes (what a whole-row build gives), for rowids; a value that
        cannot be converted stands for itself instead of failing."""
        try:
            return self._build(item)[: len(self.columns)]
        except (_Bad, AttributeError, TypeError):
            pass
        out: list[Any] = []
        for _name, typ, path, null_on_error in self.columns:
            raw = get_path(item, path)
            try:
                out.append(coerce(raw, typ))
            except ValueError:
                out.append(None if null_on_error else ("\x00unconvertible", _to_json(raw)))
        return tuple(out)

    def _slow(self, item: Any, row: int) -> tuple[Any, ...]:
        if not isinstance(item, dict):
            raise CoercionError(
                f"{self.table}: row {row + 1} is a JSON {_kind(item)}, not an object",
                table=self.table,
                column="*",
                row=row + 1,
            )
        out: list[Any] = []
        for i, (name, typ, path, null_on_error) in enumerate(self.columns):
            if i not in self.used:
                out.append(None)
                continue
            raw = get_path(item, path)
            try:
                out.append(coerce(raw, typ))
            except ValueError as exc:
                if null_on_error:
                    out.append(None)
                    continue
                raise CoercionError(
                    f"{self.table}.{name}: row {row + 1}: {exc} (declared {typ}; "
                    f'set on_error = "null" on the column to read it as NULL)',
                    table=self.table,
                    column=name,
                    row=row + 1,
                ) from None
        if self.carry:
            out.append(item)
        return tuple(out)


# ------------------------------------------------------- SQLite comparison semantics


def affinity_of(sql_type: str) -> str:
    """SQLite's column affinity for the type we declare in the schema."""
    return {"INTEGER": "INTEGER", "REAL": "REAL", "TEXT": "TEXT", "JSON": "TEXT"}.get(
        sql_type, "NUMERIC"
    )


def apply_affinity(value: Any, affinity: str) -> Any:
    """What SQLite does to a constant compared with a column of ``affinity``."""
    if value is None or isinstance(value, bytes):
        return value
    if affinity == "TEXT":
        if isinstance(value, bool):
            return str(int(value))
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return sqlite_real_text(value)
        return value
    # NUMERIC, INTEGER, REAL
    if isinstance(value, str):
        if not _NUM_RE.fullmatch(value):
            return value
        s = value.strip(SQL_SPACE)
        if _INT_RE.fullmatch(s):
            n = int(s)
            if -(2**63) <= n < 2**63:
                return float(n) if affinity == "REAL" else n
        f = float(s)
        value = f
    if isinstance(value, float):
        if affinity == "REAL":
            return value
        if value.is_integer() and -(2**63) <= value < 2**63:
            return int(value)
        return value
    if isinstance(value, int) and affinity == "REAL":
        return float(value)
    return value


_local = threading.local()


@functools.lru_cache(maxsize=4096)
def sqlite_real_text(value: float) -> str:
    """A REAL as SQLite writes it as text (``1.0e+20``, ``100.0``, ``0.30000000000000004``).

    SQLite's own digit generation is not Python's (it is not always the shortest or the
    correctly rounded form), so SQLite itself renders it: an in-memory connection per thread.
    """
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = apsw.Connection(":memory:")
    row = conn.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()
    return str(row[0]) if row is not None else ""


def sql_equal(a: Any, b: Any) -> bool:
    """``a = b`` with SQLite's rules once affinity is applied (NULL is never equal)."""
    if a is None or b is None:
        return False
    a_num = isinstance(a, (int, float))
    b_num = isinstance(b, (int, float))
    if a_num and b_num:
        return bool(a == b)
    if a_num or b_num:
        return False
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return bool(a == b) and type(a) is type(b)
