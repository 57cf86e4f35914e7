"""Trap data, its native copy and the API shapes for the differential tests of tests/oracle/.

The rows carry what real APIs send: NULL vs absent vs '', numbers as strings, unicode digits,
whole floats, huge integers, nested objects, duplicate rows, a value holding a comma. The native
copy is made by SQLite itself wherever SQLite has a rule (a text into an INTEGER column, a REAL
into a TEXT column); only the module's own documented rules are written out here ('' and a
value that is not a number of the column's type read as NULL with ``on_error = "null"``,
BOOLEAN words, integers beyond 64 bits).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import apsw
import orjson

MISSING: Any = object()

#: column name -> (declared type, JSON path)
COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("INTEGER", "id"),
    "num": ("INTEGER", "num"),
    "state": ("TEXT", "state"),
    "score": ("REAL", "score"),
    "flag": ("BOOLEAN", "flag"),
    "who": ("TEXT", "who.name"),
    "tags": ("JSON", "tags"),
}
#: the columns an API can filter on (top-level fields)
PARAM_COLUMNS = ("id", "num", "state", "score", "flag")

_NUMS: list[Any] = [
    0, 1, 2, 3, -1, 2.0, 2.5, "2", " 3", "2e0", "+4", "02", "٣", "\uff13", "\xa02", "", None,
    MISSING, True, 2**63 + 5, 9007199254740993, "1_0", "0x10", "1e999", "-0", 1e20, {"v": 1},
]  # fmt: skip
_STATES: list[Any] = [
    "open", "new", "closed", "Open", "", None, MISSING, "1", "01", "1.0", 1, 2.0, 1e20, 0.1,
    "٤٢", "new,open", "a%b", "x_y", {"a": [1, 2]}, [1, "x"], True, " open", "ñ",
]  # fmt: skip
_SCORES: list[Any] = [0.5, 1.0, 2, "1.5", " 2.5 ", None, MISSING, "", "abc", 1e-7, -0.0, 3]
_FLAGS: list[Any] = [True, False, "yes", "no", 0, 1, "TRUE", None, MISSING, "", "maybe", 2]
_WHO: list[Any] = [
    {"name": "Ada"}, {"name": "Grace"}, {"name": None}, {}, None, MISSING, {"name": 7},
    {"name": "ada"}, {"name": ["x"]},
]  # fmt: skip
_TAGS: list[Any] = [[], ["a"], ["a", "b"], {"k": "v"}, None, MISSING, "s", 3]


def _pick(pool: Sequence[Any], i: int, mul: int) -> Any:
    return pool[(i * mul + i // len(pool)) % len(pool)]


def trap_rows(n: int = 90) -> list[dict[str, Any]]:
    """``n`` rows plus exact duplicates; about a fifth are ACL-denied (``_acl`` deny), a run of
    them together so that whole pages come back empty under ``_acl=1``."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"id": 1000 + i, "sys_id": f"s{i:05d}"}
        for name, pool, mul in (
            ("num", _NUMS, 7),
            ("state", _STATES, 5),
            ("score", _SCORES, 3),
            ("flag", _FLAGS, 11),
            ("who", _WHO, 13),
            ("tags", _TAGS, 2),
        ):
            value = _pick(pool, i, mul)
            if value is not MISSING:
                row[name] = value
        if 20 <= i < 32 or i % 9 == 4:
            row["_acl"] = "deny"
        rows.append(row)
    for i in (3, 3, 17, 40, 41, 41):  # duplicates, next to and away from the original
        dup = dict(rows[i])
        rows.insert(min(len(rows), i + 1 + (i % 3) * 20), dup)
    return rows


def unique_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with one per ``id`` (for keyed tables: a key identifies one row)."""
    seen: set[Any] = set()
    out = []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            out.append(row)
    return out


def get(row: dict[str, Any], path: str) -> Any:
    cur: Any = row
    for step in path.split("."):
        if not isinstance(cur, dict) or step not in cur:
            return MISSING
        cur = cur[step]
    return cur


# ------------------------------------------------------------------ the native reference

_SPACE = " \t\n\v\f\r"
_INT_TEXT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*", re.ASCII)
_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


class Reference:
    """SQLite as the reference for values: one private in-memory connection, thread-safe."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._memo: dict[tuple[str, str, str], bool] = {}

    @property
    def _conn(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = apsw.Connection(":memory:")
            conn.execute("CREATE TEMP TABLE probe(i INTEGER, r REAL, t TEXT, n NUMERIC)")
        return conn

    def _stored(self, value: Any, typ: str) -> Any:
        """``value`` after being stored in a column of ``typ`` (SQLite's affinity)."""
        col = {"INTEGER": "i", "REAL": "r", "TEXT": "t"}.get(typ, "n")
        conn = self._conn
        conn.execute("DELETE FROM probe")
        conn.execute(f"INSERT INTO probe({col}) VALUES (?)", (value,))
        rows = conn.execute(f"SELECT {col} FROM probe").fetchall()
        return rows[0][0]

    def value(self, raw: Any, typ: str) -> Any:
        """What a column of ``typ`` with ``on_error = "null"`` holds for the JSON value ``raw``."""
        if raw is MISSING or raw is None:
            return None
        if typ == "JSON":
            return orjson.dumps(raw).decode()
        if typ == "TEXT":
            if isinstance(raw, bool):
                return "true" if raw else "false"
            if isinstance(raw, (dict, list)):
                return orjson.dumps(raw).decode()
            if isinstance(raw, int):
                return str(raw)
            return self._stored(raw, "TEXT")  # SQLite writes the REAL as text
        if isinstance(raw, (dict, list)):
            return None
        if typ == "BOOLEAN":
            if isinstance(raw, bool):
                return int(raw)
            if isinstance(raw, (int, float)):
                return int(raw) if raw in (0, 1) else None
            word = raw.strip(_SPACE).lower()
            return 1 if word in _TRUE else 0 if word in _FALSE else None
        if isinstance(raw, bool):
            raw = int(raw)
        if isinstance(raw, int) and not -(2**63) <= raw < 2**63:
            return float(raw) if typ == "REAL" else None  # beyond 64 bits: an error, so NULL
        if isinstance(raw, str):
            if raw.strip(_SPACE) == "":
                return None
            if typ == "INTEGER" and _INT_TEXT.fullmatch(raw) and not -(2**63) <= int(raw) < 2**63:
                return None
        stored = self._stored(raw, typ)
        if isinstance(stored, str):
            return None  # SQLite keeps it as text: not a number
        if isinstance(stored, float) and stored in (float("inf"), float("-inf")):
            return None
        return stored

    def equal(self, field: str, raw: Any, text: str) -> bool:
        """An exact API: the row's value equals the parameter text under SQLite's ``=``."""
        typ = COLUMNS[field][0]
        key = (field, orjson.dumps(raw if raw is not MISSING else None).decode(), text)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        stored = self.value(raw, typ)
        # a BOOLEAN goes to the API as true/false (remotetables' format), the rest as SQLite text
        want = {"true": 1, "false": 0}.get(text) if typ == "BOOLEAN" else None
        if want is None:
            want = self._stored(text, typ)
        rows = self._conn.execute("SELECT ? = ?", (stored, want)).fetchall()
        result = bool(rows[0][0])
        self._memo[key] = result
        return result

    def native_row(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(self.value(get(row, path), typ) for typ, path in COLUMNS.values())


NATIVE_DECL = {
    "INTEGER": "INTEGER",
    "REAL": "REAL",
    "TEXT": "TEXT",
    "BOOLEAN": "BOOLEAN",
    "JSON": "TEXT",
}


def native_schema(name: str) -> str:
    cols = ", ".join(f"{c} {NATIVE_DECL[t]}" for c, (t, _) in COLUMNS.items())
    return f"CREATE TABLE {name}({cols})"
