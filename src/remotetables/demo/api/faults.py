"""Fault injection for the loopback test API.

>>> faults = FaultSet(seed=0)
>>> _ = faults.add(Fault("status", path="/styles/", page=2, status=503, headers={"Retry-After": "1"}))
>>> faults.match("GET", "/styles/link/incidents", user=None, page=1, offset=0) is None
True
>>> faults.match("GET", "/styles/link/incidents", user=None, page=2, offset=100).status
503
>>> faults.match("GET", "/styles/link/incidents", user=None, page=2, offset=100) is None  # times=1
True
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = ["Fault", "FaultKind", "FaultSet"]

FaultKind = Literal[
    "status",  # answer `status` with `headers` and `body` (JSON error body by default)
    "html_error",  # 502 (or `status`) with a text/html body
    "invalid_json",  # 200 application/json whose body is not JSON
    "truncated_body",  # Content-Length larger than the body sent, then close
    "close_connection",  # close the connection without answering (FIN)
    "reset",  # abort the connection without answering (RST)
    "delay",  # wait `seconds`, then answer normally
    "trickle",  # answer normally, but send the body `chunk` bytes every `seconds`
    "redirect",  # 302 to `url` (absolute)
    "next_loop",  # answer normally, but the next link/cursor points at this same page
    "next_foreign",  # answer normally, but the next link's origin is `url`'s origin
    "wrong_content_type",  # answer normally with Content-Type: text/plain
]

FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


@dataclass(eq=False)
class Fault:
    """One injected fault.

    Matches requests whose path starts with ``path`` and, when given, whose ``method``, ``user``,
    ``page`` (1-based page number; for limit/offset styles ``offset // limit + 1``) and ``offset``
    (first row index of the page, any style) are equal. It applies to ``times`` matching requests,
    then is removed; ``times=None`` keeps it until :meth:`FaultSet.clear`.
    """

    kind: FaultKind
    path: str = "/"
    page: int | None = None
    offset: int | None = None
    user: str | None = None
    method: str | None = None
    times: int | None = 1
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str | None = None
    seconds: float = 0.5
    chunk: int = 1
    url: str | None = None
    #: how many requests this fault was applied to (updated by the FaultSet)
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind in ("redirect", "next_foreign") and not self.url:
            raise ValueError(f"fault {self.kind!r} needs url=")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None")

    def matches(
        self, method: str, path: str, *, user: str | None, page: int | None, offset: int | None
    ) -> bool:
        return (
            path.startswith(self.path)
            and (self.method is None or self.method == method)
            and (self.user is None or self.user == user)
            and (self.page is None or self.page == page)
            and (self.offset is None or self.offset == offset)
        )


class FaultSet:
    """Thread-safe set of pending faults, plus an optional random fault rate.

    With ``fault_rate > 0`` each GET that no explicit fault matched fails with that
    probability, as one of ``rate_kinds`` (``"status"`` means a 500), drawn from a seeded RNG.
    ``rate_kinds`` must not need a ``url`` (so not ``redirect`` or ``next_foreign``).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        fault_rate: float = 0.0,
        rate_kinds: Sequence[FaultKind] = ("status", "reset"),
    ) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []
        self._rng = random.Random(f"faults:{seed}")
        self.fault_rate = fault_rate
        self.rate_kinds: tuple[FaultKind, ...] = tuple(rate_kinds)
        self.fired: list[tuple[FaultKind, str]] = []

    def add(self, fault: Fault) -> Fault:
        """Register ``fault`` (first added, first matched) and return it."""
        with self._lock:
            self._pending.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._pending:
                self._pending.remove(fault)

    def clear(self) -> None:
        """Drop every pending fault, switch off the random rate and forget ``fired``."""
        with self._lock:
            self._pending.clear()
            self.fired.clear()
            self.fault_rate = 0.0

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._pending)

    def match(
        self,
        method: str,
        path: str,
        *,
        user: str | None,
        page: int | None = None,
        offset: int | None = None,
        random_ok: bool = False,
    ) -> Fault | None:
        """The fault to apply to this request, if any (consumes one of its ``times``)."""
        with self._lock:
            for fault in self._pending:
                if fault.matches(method, path, user=user, page=page, offset=offset):
                    fault.hits += 1
                    if fault.times is not None and fault.hits >= fault.times:
                        self._pending.remove(fault)
                    self.fired.append((fault.kind, path))
                    return fault
            if random_ok and self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                kind = self._rng.choice(self.rate_kinds)
                fault = Fault(kind, status=500 if kind == "status" else None)
                fault.hits = 1
                self.fired.append((kind, path))
                return fault
        return None
