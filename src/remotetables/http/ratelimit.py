"""Rate limits as APIs announce them, and a budget per principal and origin.

What is read (:func:`read_budget`):

* GitHub's ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (UTC epoch seconds) /
  ``-Resource``; the same names elsewhere with ``-Reset`` as seconds from now (a small number),
  or an ISO 8601 time (Jira's ``yyyy-MM-ddTHH:mmZ``);
* the IETF fields of draft-ietf-httpapi-ratelimit-headers: ``RateLimit: "p";r=50;t=30``
  (remaining, seconds to reset) with ``RateLimit-Policy: "p";q=100;w=60`` (quota, window),
  and the older drafts' ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (seconds);
* ``Retry-After`` (seconds or an HTTP date), on 429 and on 403 (GitHub's secondary limits).

:class:`RateLimits` keeps the last budget each (principal, origin) was told. Before a request
it says how long to wait: nothing while the budget is comfortable; when the remaining count is
low, that principal's requests go one at a time (each after the previous answer said what is
left), and one that would be sent past zero waits for the reset. Principals never share a
budget: alice's exhausted limit does not slow bob (a system token is one principal).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "Budget",
    "RateLimits",
    "describe_reset",
    "error_json",
    "is_rate_limit",
    "limit_wait",
    "newer",
    "parse_retry_after",
    "read_budget",
]

EPOCH_THRESHOLD = 1_000_000_000  # a reset above this is a Unix time, below it seconds from now


@dataclass(frozen=True)
class Budget:
    """What one answer said of the caller's rate limit."""

    remaining: int | None = None
    limit: int | None = None
    reset_at: float | None = None  # Unix time
    resource: str | None = None

    def low(self) -> bool:
        """Whether the remaining count is low enough to pace requests (5% of the limit, at
        least 5; 10 when the limit is not known)."""
        if self.remaining is None:
            return False
        floor = max(5, self.limit // 20) if self.limit else 10
        return self.remaining <= floor


def newer(old: Budget | None, new: Budget) -> Budget:
    """What to keep of two answers' budgets: answers to parallel requests arrive in any order,
    so within one window the lower remaining count is the truer one; a later reset is a new
    window."""
    if old is None or old.remaining is None or new.remaining is None:
        return new
    if new.reset_at is not None and old.reset_at is not None and new.reset_at > old.reset_at + 1:
        return new
    return new if new.remaining <= old.remaining else old


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip().split(",")[0].split(";")[0].strip()
    if value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _reset(value: str | None, now: float) -> float | None:
    """A reset as a Unix time: epoch seconds, seconds from now, or an ISO 8601 time."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if number != number or number < 0 or number > 1e12:  # NaN, negative, absurd
            return None
        return number if number >= EPOCH_THRESHOLD else now + number
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


_MEMBER = re.compile(r'\s*(?:"(?P<name>[^"]*)"|(?P<token>[A-Za-z*][\w:./*-]*))(?P<params>[^,]*)')


def _structured(value: str) -> list[tuple[str, dict[str, str]]]:
    """The members of an RFC 8941 list of strings/tokens with parameters (enough for the
    RateLimit fields: ``"name";r=1;t=2, "other";r=5``)."""
    out = []
    for part in value.split(","):
        m = _MEMBER.match(part)
        if m is None:
            continue
        params = {}
        for item in m.group("params").split(";"):
            key, _, val = item.partition("=")
            if key.strip():
                params[key.strip().lower()] = val.strip().strip('"')
        out.append((m.group("name") or m.group("token") or "", params))
    return out


def read_budget(headers: Mapping[str, str], now: float) -> Budget | None:
    """The budget the answer's headers announce, or None when they say nothing of it."""
    remaining = _int(headers.get("x-ratelimit-remaining"))
    limit = _int(headers.get("x-ratelimit-limit"))
    reset_at = _reset(headers.get("x-ratelimit-reset"), now)
    resource = headers.get("x-ratelimit-resource")
    ietf = headers.get("ratelimit")
    if ietf and "=" in ietf:  # the structured field: the tightest of the listed policies
        members = [(n, p) for n, p in _structured(ietf) if _int(p.get("r")) is not None]
        if members:
            name, params = min(members, key=lambda m: _int(m[1]["r"]) or 0)
            remaining = _int(params["r"])
            t = _int(params.get("t"))
            reset_at = now + t if t is not None else reset_at
            resource = resource or name or None
            policies = dict(_structured(headers.get("ratelimit-policy", "")))
            q = _int(policies.get(name, {}).get("q"))
            limit = q if q is not None else limit
    if remaining is None and headers.get("ratelimit-remaining") is not None:  # older drafts
        remaining = _int(headers.get("ratelimit-remaining"))
        limit = _int(headers.get("ratelimit-limit"))
        seconds = _int(headers.get("ratelimit-reset"))
        reset_at = now + seconds if seconds is not None else None
    if remaining is None and limit is None and reset_at is None:
        return None
    return Budget(remaining, limit, reset_at, resource.strip() if resource else None)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, float("²") fails
        return float(value)  # a huge value is inf: retry_delay caps it
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def error_json(status: int, content: bytes | bytearray) -> Any:
    """A 403's small body decoded (for its reason), or None."""
    if status != 403 or not content or len(content) > 65536:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


# Google's 403 reasons for a rate limit (sent without Retry-After: back off)
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def is_rate_limit(status: int, headers: Mapping[str, str], now: float, body: Any = None) -> bool:
    """Whether an error answer is a rate limit: any 429; a 403 with ``Retry-After`` (GitHub's
    secondary limits), with nothing remaining (GitHub's primary limit, which is a 403 or 429)
    or with Google's ``rateLimitExceeded`` / ``userRateLimitExceeded`` reason in the decoded
    ``body``. Any other 403 is a permission problem."""
    if status == 429:
        return True
    if status != 403:
        return False
    if headers.get("retry-after"):
        return True
    budget = read_budget(headers, now)
    if budget is not None and budget.remaining == 0:
        return True
    error = body.get("error") if isinstance(body, dict) else None
    errors = error.get("errors") if isinstance(error, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("reason") in RATE_REASONS for e in errors
    )


def limit_wait(headers: Mapping[str, str], now: float, retry_after: float | None) -> float | None:
    """Seconds before a rate-limited request may go again, by GitHub's rule: ``Retry-After``
    if present; else, with nothing remaining, until the reset; else None (back off)."""
    if retry_after is not None:
        return retry_after
    budget = read_budget(headers, now)
    if budget is not None and budget.remaining == 0 and budget.reset_at is not None:
        return max(0.0, budget.reset_at - now)
    return None


def describe_reset(reset_at: float, now: float, tz: dt.tzinfo | None = None) -> str:
    """``14:05:09 CET (in 12 min)``: the local time of a reset and how long until it."""
    when = dt.datetime.fromtimestamp(reset_at, tz=dt.UTC).astimezone(tz)
    today = dt.datetime.fromtimestamp(now, tz=dt.UTC).astimezone(tz).date()
    day = "" if when.date() == today else "%Y-%m-%d "
    left = max(0.0, reset_at - now)
    if left < 90:
        span = f"{left:.0f} s"
    elif left < 90 * 60:
        span = f"{left / 60:.0f} min"
    else:
        span = f"{left / 3600:.1f} h"
    return f"{when.strftime(day + '%H:%M:%S')} {when.tzname() or ''} (in {span})".replace("  ", " ")


@dataclass
class _State:
    budget: Budget
    estimate: int | None  # remaining, less the requests sent since the last answer
    gate: threading.Lock  # held by the one request in flight while the budget is low


class RateLimits:
    """The last budget of each (principal, origin); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], _State] = {}

    def note(self, key: tuple[str, str], budget: Budget | None, now: float) -> None:
        """Remember what an answer said (an answer that says nothing changes nothing)."""
        if budget is None:
            return
        with self._lock:
            state = self._state.get(key)
            if state is None:
                self._state[key] = _State(budget, budget.remaining, threading.Lock())
            else:
                old = state.budget
                new_window = state.estimate is None or (
                    budget.reset_at is not None
                    and old.reset_at is not None
                    and budget.reset_at > old.reset_at + 1
                )
                state.budget = newer(old, budget)
                remaining = state.budget.remaining
                if new_window or state.estimate is None or remaining is None:
                    state.estimate = remaining
                else:  # requests still in flight were counted already
                    state.estimate = min(state.estimate, remaining)

    def gate(self, key: tuple[str, str]) -> threading.Lock | None:
        """The lock that makes this principal's requests go one at a time while its budget is
        low (the caller holds it from before the request until its answer is noted); None
        while the budget is comfortable or unknown."""
        with self._lock:
            state = self._state.get(key)
            return state.gate if state is not None and state.budget.low() else None

    @contextmanager
    def turn(
        self, key: tuple[str, str], poll: float, interrupted: Callable[[], bool] | None
    ) -> Iterator[bool]:
        """Hold this principal's turn while a request is sent and its answer noted (only while
        its budget is low: otherwise at once). Yields False if the query was interrupted while
        waiting for its turn."""
        gate = self.gate(key)
        if gate is None:
            yield True
            return
        while not gate.acquire(timeout=poll):
            if interrupted is not None and interrupted():
                yield False
                return
        try:
            yield True
        finally:
            gate.release()

    def reserve(self, key: tuple[str, str], now: float) -> float:
        """Before sending: seconds to wait for the reset (0 unless the budget, less the
        requests already sent since the last answer, is spent and the reset is ahead)."""
        with self._lock:
            state = self._state.get(key)
            if state is None:
                return 0.0
            b = state.budget
            if b.reset_at is not None and b.reset_at <= now:
                state.budget = Budget(None, b.limit, None, b.resource)  # a new window
                state.estimate = None
                return 0.0
            if state.estimate is not None and state.estimate <= 0 and b.reset_at is not None:
                return b.reset_at - now
            if state.estimate is not None:
                state.estimate -= 1
            return 0.0

    def snapshot(self, principal: str, now: float) -> dict[str, Budget]:
        """The known budgets of one principal, by origin."""
        with self._lock:
            items = [(k[1], s.budget) for k, s in self._state.items() if k[0] == principal]
        return {o: b for o, b in items if b.reset_at is None or b.reset_at > now}
