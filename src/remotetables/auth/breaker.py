"""A circuit breaker per authorization server: after a few outages in a row, fail fast."""

from __future__ import annotations

import threading
from collections.abc import Callable

from remotetables.errors import ProviderUnavailable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """One per provider: after ``threshold`` outages in a row, fail fast for ``cooldown`` s.

    Many users' queries then do not hammer an authorization server that is down; one probe is
    let through after the cooldown (half-open).
    """

    def __init__(
        self, clock: Callable[[], float], *, threshold: int = 3, cooldown: float = 30.0
    ) -> None:
        self._clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    def before(self, provider: str) -> None:
        with self._lock:
            now = self._clock()
            if self._failures >= self.threshold and now < self._open_until:
                raise ProviderUnavailable(
                    f"provider {provider}: the authorization server failed {self._failures} times in a row; "
                    f"not asking it again for {self._open_until - now:.0f} s (stored tokens are kept)",
                    provider=provider,
                )
            if self._failures >= self.threshold:
                self._open_until = now + self.cooldown  # half-open: this caller is the probe

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = 0.0

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open_until = self._clock() + self.cooldown

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._failures >= self.threshold and self._clock() < self._open_until
