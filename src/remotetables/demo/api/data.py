"""Datasets for the loopback test API: seeded generators and copy-on-write row stores.

A dataset is a copy-on-write list of rows; per-user and per-filter views are computed once per
version and cached, so serving an unfiltered page costs O(page), never O(dataset).

>>> rows = generate_incidents(3, users=("alice", "bob"), seed=1)
>>> [r["number"] for r in rows]
['INC0000001', 'INC0000002', 'INC0000003']
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "SHARED",
    "Dataset",
    "Row",
    "Snapshot",
    "View",
    "generate_bulk",
    "generate_incidents",
    "generate_issues",
    "loose_match",
    "strict_match",
    "value_key",
]

Row = dict[str, Any]

#: Owner marker of a row without an ``assigned_to`` key: every user may read it.
SHARED: Final = "\x00shared"

_STATES = ("new", "open", "in_progress", "closed")
_TAGS = ("network", "vpn", "email", "hardware", "printer", "access", "urgent", "db")
_TAG_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("network",),
    ("vpn", "network"),
    ("email",),
    ("hardware", "printer"),
    ("access",),
    ("urgent", "db"),
    ("db",),
)
_WHAT = ("Printer", "VPN", "Laptop", "Email", "Database", "Badge reader", "Wi-Fi", "Payroll app")
_HOW = ("is down", "is slow", "shows an error", "needs a reset", "keeps crashing", "lost access")
_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov")
_EPOCH: Final = 1_704_067_200  # 2024-01-01T00:00:00Z
_MISSING: Final = object()


def value_key(value: Any) -> str:
    """The string form a query parameter is compared with: JSON text, strings bare.

    >>> [value_key(v) for v in ("open", 2, True, None, 2.5)]
    ['open', '2', 'true', 'null', '2.5']
    """
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


Matcher = Callable[[str, Any, frozenset[str]], bool]
"""``(field, the row's value, the accepted texts) -> bool``: how the API filters."""


def strict_match(field: str, value: Any, accepted: frozenset[str]) -> bool:
    """The default: the value's string form (:func:`value_key`) is one of the texts sent."""
    return value_key(value) in accepted


_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0"})


def _loose_forms(value: Any) -> tuple[str, float | None, bool | None]:
    text = value_key(value).strip().casefold()
    try:
        number: float | None = float(text)  # Python's lenient parse: wider than SQLite's
    except ValueError:
        number = None
    truth = True if text in _TRUE_WORDS else False if text in _FALSE_WORDS else None
    return text, number, truth


def loose_match(field: str, value: Any, accepted: frozenset[str]) -> bool:
    """A loose API (``_match=loose``): case-insensitive, trimmed, numbers equal as numbers,
    boolean words alike; it returns more rows than asked for, never fewer."""
    if value is None:
        return "null" in accepted
    text, number, truth = _loose_forms(value)
    for want in accepted:
        w_text, w_number, w_truth = _loose_forms(want)
        if text == w_text or (number is not None and number == w_number):
            return True
        if truth is not None and truth == w_truth:
            return True
    return False


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _common_columns(n: int, rng: random.Random) -> dict[str, list[Any]]:
    """Columns shared by the incident and bulk generators (fast: one pass per column)."""
    sys_ids = [f"{rng.getrandbits(128):032x}" for _ in range(n)]
    states = rng.choices(_STATES, weights=(2, 4, 2, 3), k=n)
    whats = rng.choices(_WHAT, k=n)
    hows = rng.choices(_HOW, k=n)
    steps = rng.choices(range(60, 3600), k=n)
    opened: list[str] = []
    ts = _EPOCH
    for step in steps:
        ts += step
        opened.append(_iso(ts))
    return {
        "sys_id": sys_ids,
        "number": [f"INC{i:07d}" for i in range(1, n + 1)],
        "short_description": [f"{w} {h}" for w, h in zip(whats, hows, strict=True)],
        "state": states,
        "priority": rng.choices((1, 2, 3, 4, 5), weights=(1, 2, 4, 2, 1), k=n),
        "opened_at": opened,
        "active": [s != "closed" for s in states],
        "score": [round(rng.random() * 100, 2) for _ in range(n)],
    }


def generate_incidents(n: int, *, users: Sequence[str], seed: int = 0) -> list[Row]:
    """``n`` incident rows, deterministic for ``(n, users, seed)``.

    ``reopen_count`` is an int, ``null`` (about 10%) or missing (about 10%).
    """
    rng = random.Random(f"incidents:{seed}")
    cols = _common_columns(n, rng)
    assignees = rng.choices([*users, None], k=n)
    reopen: list[object] = rng.choices((0, 0, 0, 1, 2, 3, None, _MISSING), k=n)
    callers = rng.choices(range(len(_NAMES)), k=n)
    tag_sets = rng.choices(_TAG_SETS, k=n)
    rows: list[Row] = []
    for i in range(n):
        row: Row = {
            "sys_id": cols["sys_id"][i],
            "number": cols["number"][i],
            "short_description": cols["short_description"][i],
            "state": cols["state"][i],
            "priority": cols["priority"][i],
            "assigned_to": assignees[i],
            "opened_at": cols["opened_at"][i],
        }
        if reopen[i] is not _MISSING:
            row["reopen_count"] = reopen[i]
        name = _NAMES[callers[i]]
        row["active"] = cols["active"][i]
        row["caller"] = {"name": name, "email": name.lower().replace(" ", ".") + "@example.com"}
        row["tags"] = list(tag_sets[i])
        row["score"] = cols["score"][i]
        rows.append(row)
    return rows


def generate_bulk(n: int, *, seed: int = 0) -> list[Row]:
    """``n`` flat rows of 8 fields for benchmarks; no ``assigned_to``, so every user sees all."""
    rng = random.Random(f"bulk:{seed}")
    cols = _common_columns(n, rng)
    names = list(cols)
    return [dict(zip(names, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def generate_issues(n: int, *, users: Sequence[str], seed: int = 0) -> list[Row]:
    """``n`` GitHub-shaped issues of ``acme/widgets`` (shared: no ``assigned_to`` key)."""
    rng = random.Random(f"issues:{seed}")
    logins = list(users) or ["octocat"]
    states = rng.choices(("open", "closed"), weights=(3, 2), k=n)
    authors = rng.choices(logins, k=n)
    assignees = rng.choices([*logins, None], k=n)
    labels = rng.choices(_TAG_SETS, k=n)
    comments = rng.choices(range(12), k=n)
    whats = rng.choices(_WHAT, k=n)
    hows = rng.choices(_HOW, k=n)
    rows: list[Row] = []
    for i in range(n):
        assignee = assignees[i]
        rows.append(
            {
                "id": 1_000_001 + i,
                "number": i + 1,
                "title": f"{whats[i]} {hows[i]}",
                "state": states[i],
                "user": {"login": authors[i]},
                "assignee": None if assignee is None else {"login": assignee},
                "labels": [{"name": name} for name in labels[i]],
                "comments": comments[i],
                "created_at": _iso(_EPOCH + 5400 * i),
            }
        )
    return rows


Filters = tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class View:
    """The rows one caller may see, in dataset order; ``key`` identifies it for caching."""

    key: tuple[str, int, str | None, Filters, str]
    rows: Sequence[Row]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One immutable version of a dataset (writes build a new snapshot)."""

    version: int
    rows: list[Row]
    owners: list[str | None]
    index: dict[str, int]  # sys_id -> position
    fields: frozenset[str]
    all_shared: bool  # no row has an owner: per-user views are the whole dataset


def _owner(row: Mapping[str, Any]) -> str | None:
    if "assigned_to" not in row:
        return SHARED
    owner = row["assigned_to"]
    return owner if isinstance(owner, str) else None


class Dataset:
    """A named list of rows with cached per-user and per-filter views; thread-safe."""

    def __init__(self, name: str, rows: Iterable[Row], *, view_cache_size: int = 128) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._views: OrderedDict[tuple[str, int, str | None, Filters, str], View] = OrderedDict()
        self._view_cache_size = view_cache_size
        self._snap = self._build(0, list(rows))
        self._next_number = len(self._snap.rows) + 1

    @staticmethod
    def _build(version: int, rows: list[Row]) -> Snapshot:
        fields: set[str] = set()
        for row in rows:
            fields.update(row)
        index = {str(r["sys_id"]): i for i, r in enumerate(rows) if "sys_id" in r}
        return Snapshot(
            version=version,
            rows=rows,
            owners=[_owner(r) for r in rows],
            index=index,
            fields=frozenset(fields),
            all_shared="assigned_to" not in fields,
        )

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    def view(
        self,
        user: str | None,
        filters: Filters,
        *,
        per_user: bool,
        match: Matcher = strict_match,
        match_name: str = "strict",
    ) -> View:
        """Rows visible to ``user`` (all when not ``per_user``) matching every filter.

        ``filters`` pairs a field with the accepted string forms; ``match`` decides whether a
        row's value is one of them (default :func:`strict_match`: :func:`value_key`).
        """
        snap = self._snap
        per_user = per_user and not snap.all_shared
        key = (self.name, snap.version, user if per_user else None, filters, match_name)
        if not per_user and not filters:
            return View(key, snap.rows)
        with self._lock:
            cached = self._views.get(key)
            if cached is not None:
                self._views.move_to_end(key)
                return cached
        picked = [
            i
            for i, row in enumerate(snap.rows)
            if (not per_user or snap.owners[i] in (user, SHARED))
            and all(match(f, row.get(f), accepted) for f, accepted in filters)
        ]
        view = View(key, [snap.rows[i] for i in picked])
        with self._lock:
            self._views[key] = view
            while len(self._views) > self._view_cache_size:
                self._views.popitem(last=False)
        return view

    # ---------------------------------------------------------------- writes (copy-on-write)

    def _commit(self, rows: list[Row]) -> None:
        self._snap = self._build(self._snap.version + 1, rows)
        self._views.clear()

    def get(self, sys_id: str) -> Row | None:
        snap = self._snap
        pos = snap.index.get(sys_id)
        return None if pos is None else snap.rows[pos]

    def create(self, fields: Mapping[str, Any], *, sys_id: str) -> Row:
        """Append a row with a fresh ``sys_id`` and ``number``; return it."""
        with self._lock:
            row: Row = {"sys_id": sys_id, "number": f"INC{self._next_number:07d}"}
            row.update((k, v) for k, v in fields.items() if k not in ("sys_id", "number"))
            self._next_number += 1
            self._commit([*self._snap.rows, row])
            return row

    def update(self, sys_id: str, fields: Mapping[str, Any]) -> Row | None:
        """Merge ``fields`` into a row (``sys_id`` and ``number`` stay); ``None`` if absent."""
        with self._lock:
            pos = self._snap.index.get(sys_id)
            if pos is None:
                return None
            rows = list(self._snap.rows)
            row = {
                **rows[pos],
                **{k: v for k, v in fields.items() if k not in ("sys_id", "number")},
            }
            rows[pos] = row
            self._commit(rows)
            return row

    def delete(self, sys_id: str) -> bool:
        with self._lock:
            pos = self._snap.index.get(sys_id)
            if pos is None:
                return False
            rows = list(self._snap.rows)
            del rows[pos]
            self._commit(rows)
            return True
