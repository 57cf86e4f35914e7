"""The row cache: complete scans kept briefly, bounded in bytes, keyed by principal.

Beside it, :class:`PageCopies`: the pages an API answered with a validator (``ETag`` /
``Last-Modified``), kept after the rows expire so that the next scan can revalidate them with a
conditional request; keyed by (principal, table, URL), so a validator never crosses users.

No I/O here. A key is ``(principal, table, params)``: the principal is always part of it, so a
personal table's rows filled for alice can never be found for bob. Only complete scans are put
in the cache; a failed or partial fetch never is, and neither is a scan that started before a
write invalidated its table (:meth:`RowCache.invalidate` moves the table's epoch; a scan puts
its rows with the epoch it started in, and they are refused if it moved since).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache, TLRUCache

__all__ = ["CacheEntry", "CacheKey", "PageCopies", "PageCopy", "RowCache"]

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CacheKey:
    principal: str
    table: str
    params: Params  # sorted pushed-down parameters: () is the whole table

    @classmethod
    def make(cls, principal: str, table: str, params: Sequence[tuple[str, str]]) -> CacheKey:
        return cls(principal, table.lower(), tuple(sorted(params)))


@dataclass(frozen=True)
class CacheEntry:
    rows: list[tuple[Any, ...]]
    nbytes: int
    ttl: float
    stored_at: float
    covering: bool = True  # a whole-table entry that may answer narrower queries


@dataclass(frozen=True)
class PageCopy:
    """One page as the API sent it (JSON bytes), with its validators."""

    etag: str | None
    last_modified: str | None
    content: bytes
    headers: tuple[tuple[str, str], ...] = ()  # the 200's (a 304 need not repeat Link ...)

    def conditions(self) -> list[tuple[str, str]]:
        """The headers that ask the API whether the page changed."""
        out = []
        if self.etag:
            out.append(("If-None-Match", self.etag))
        if self.last_modified:
            out.append(("If-Modified-Since", self.last_modified))
        return out


class PageCopies:
    """Pages kept for revalidation, LRU-bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._pages: LRUCache[tuple[str, str, str], PageCopy] = LRUCache(
            maxsize=max(1, max_bytes),
            getsizeof=lambda v: max(1, len(v.content) + sum(len(a) + len(b) for a, b in v.headers)),
        )

    def get(self, principal: str, table: str, url: str) -> PageCopy | None:
        with self._lock:
            return self._pages.get((principal, table.lower(), url))

    def put(self, principal: str, table: str, url: str, page: PageCopy) -> None:
        if len(page.content) > self.max_bytes // 4:
            return
        with self._lock:
            self._pages[(principal, table.lower(), url)] = page

    def clear(self, table: str | None, principals: Collection[str] | None) -> None:
        with self._lock:
            for key in list(self._pages.keys()):
                if (table is None or key[1] == table.lower()) and (
                    principals is None or key[0] in principals
                ):
                    self._pages.pop(key, None)


class RowCache:
    """A thread-safe TLRU cache of complete scans."""

    def __init__(
        self, max_bytes: int = 256 * 1024 * 1024, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: TLRUCache[CacheKey, CacheEntry] = TLRUCache(
            maxsize=max(1, max_bytes),
            ttu=lambda _k, v, now: now + v.ttl,
            timer=clock,
            getsizeof=lambda v: max(1, v.nbytes),
        )
        self.hits = 0
        self.misses = 0
        self.pages = PageCopies(max_bytes)
        self._epochs: dict[str, int] = {}  # table -> writes seen (see invalidate)

    def epoch(self, table: str) -> int:
        """The table's epoch: a scan takes it when it starts and hands it to :meth:`put`."""
        with self._lock:
            return self._epochs.get(table.lower(), 0)

    def invalidate(self, tables: Collection[str]) -> int:
        """After a write: drop every principal's entries of ``tables`` and move their epochs,
        so that a scan still running since before the write cannot store what it read."""
        names = {t.lower() for t in tables}
        for name in names:  # the server would say so, but nothing stale is kept either
            self.pages.clear(name, None)
        with self._lock:
            for name in names:
                self._epochs[name] = self._epochs.get(name, 0) + 1
            doomed = [k for k in list(self._cache.keys()) if k.table in names]
            for k in doomed:
                self._cache.pop(k, None)
            return len(doomed)

    def get(self, key: CacheKey) -> list[tuple[Any, ...]] | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            return entry.rows

    def get_covering(self, key: CacheKey) -> list[tuple[Any, ...]] | None:
        """The whole-table scan of the same principal, for a narrower query to filter locally."""
        if not key.params:
            return None
        with self._lock:
            entry = self._cache.get(CacheKey(key.principal, key.table, ()))
            if entry is None or not entry.covering:
                self.misses += 1
                return None
            self.hits += 1
            return entry.rows

    def put(
        self,
        key: CacheKey,
        rows: list[tuple[Any, ...]],
        nbytes: int,
        ttl: float,
        *,
        covering: bool = True,
        epoch: int | None = None,
    ) -> bool:
        """``covering=False``: the rows lack a field a parameter filters on; such a whole-table
        entry answers only the same query, never a narrower one. ``epoch``: the table's epoch
        when the scan started; if a write moved it since, the rows are not stored (they may
        predate the write). Returns whether the rows were stored."""
        if ttl <= 0 or nbytes > self.max_bytes:
            return False
        with self._lock:
            if epoch is not None and self._epochs.get(key.table, 0) != epoch:
                return False
            self._cache[key] = CacheEntry(rows, nbytes, ttl, self._clock(), covering)
            return True

    def clear(
        self,
        table: str | None = None,
        principal: str | None = None,
        *,
        principals: Collection[str] | None = None,
    ) -> int:
        """Drop entries (all, one table's, one principal's or those of ``principals``), and
        their pages kept for revalidation; returns how many entries."""
        who = principals if principal is None else {principal}
        self.pages.clear(table, who if who is not None else None)
        with self._lock:
            doomed = [
                k
                for k in list(self._cache.keys())
                if (table is None or k.table == table.lower())
                and (principal is None or k.principal == principal)
                and (principals is None or k.principal in principals)
            ]
            for k in doomed:
                self._cache.pop(k, None)
            return len(doomed)

    def state(self) -> list[tuple[str, str, str, int, int, float]]:
        """(table, principal, params, rows, bytes, seconds left) per live entry."""
        with self._lock:
            self._cache.expire()
            now = self._clock()
            out = []
            for k, v in self._cache.items():
                params = "&".join(f"{a}={b}" for a, b in k.params)
                out.append(
                    (
                        k.table,
                        k.principal,
                        params,
                        len(v.rows),
                        v.nbytes,
                        max(0.0, v.stored_at + v.ttl - now),
                    )
                )
            return out

    @property
    def current_bytes(self) -> int:
        with self._lock:
            return int(self._cache.currsize)

    def entry_budget(self) -> int:
        """How many bytes one scan may buffer on its way into the cache."""
        return self.max_bytes // 2
