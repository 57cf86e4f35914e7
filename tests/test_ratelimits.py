"""Rate limits as real APIs announce them (tests/servers/ratelimited.py, on a fake clock shared
by server and client: nothing here really waits).

GitHub's primary limit (403 or 429 with remaining 0: wait for the reset within max_retry_wait,
else fail naming it), its secondary limit (403 + Retry-After), the IETF RateLimit fields, 429
with and without Retry-After; pacing of parallel pages when the budget is low; separate budgets
per user; the budget in remotetables_stats().
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import remotetables
from remotetables.auth.store import MemoryTokenStore, TokenSet
from remotetables.http.ratelimit import describe_reset, is_rate_limit, read_budget
from tests.servers.ratelimited import FakeClock, State, serve

CONFIG = """
[providers.gh]
issuer = "http://127.0.0.1:9"
client_id = "c"
api_origins = ["{base}"]
max_retry_wait = {wait}
max_retries = 3

[tables.items]
provider = "gh"
url = "{base}/{shape}/items"
rows = "rows"
pagination = { style = "page", page_param = "page", total_pages_path = "total_pages" }
page_size_param = "per_page"
max_page_size = 5
concurrency = {concurrency}
cache_ttl = 0
[tables.items.columns]
id = "INTEGER"
name = "TEXT"
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def connect(
    write_config: Callable[..., Path], clock: FakeClock
) -> Iterator[Callable[..., remotetables.Connection]]:
    """``connect(base, shape, users=("alice",), wait=120, concurrency=4)``: one runtime, a
    connection per user, each user with a stored token ``tok-USER``."""
    conns: list[remotetables.Connection] = []

    def make(
        base: str, shape: str, *, wait: float = 120, concurrency: int = 4
    ) -> remotetables.Connection:
        cfg = write_config(CONFIG, base=base, shape=shape, wait=wait, concurrency=concurrency)
        store = MemoryTokenStore()
        conn = remotetables.connect(
            ":memory:", cfg, user="alice", token_store=store, clock=clock.now, sleep=clock.sleep
        )
        conns.append(conn)
        service = conn.runtime.oauth_service()
        provider = conn.runtime.config.providers["gh"]
        for user in ("alice", "bob"):
            tokens = TokenSet(f"tok-{user}", None, expires_at=clock.now() + 10**6)
            store.put(service.key(provider, user), tokens, now=clock.now())
        return conn

    yield make
    for conn in conns:
        conn.close()


def ids(conn: remotetables.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM items").fetchall()]


def stats(conn: remotetables.Connection) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(conn.execute("SELECT remotetables_stats()").fetchone()[0])
    return result


# ------------------------------------------------------------------ reading the headers


def test_read_budget_shapes() -> None:
    now = 1_800_000_000.0
    github = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-reset": "1800000600",
        "x-ratelimit-resource": "core",
    }
    b = read_budget(github, now)
    assert b is not None and (b.remaining, b.limit, b.reset_at, b.resource) == (
        4999,
        5000,
        1_800_000_600.0,
        "core",
    )
    ietf = {
        "RateLimit": '"burst";r=3;t=20, "day";r=900;t=3600',
        "RateLimit-Policy": '"burst";q=10;w=60, "day";q=1000;w=86400',
    }
    b = read_budget({k.lower(): v for k, v in ietf.items()}, now)
    assert b is not None and (b.remaining, b.limit, b.reset_at, b.resource) == (
        3,
        10,
        now + 20,
        "burst",
    )
    old = {"ratelimit-limit": "100", "ratelimit-remaining": "7", "ratelimit-reset": "30"}
    b = read_budget(old, now)
    assert b is not None and (b.remaining, b.limit, b.reset_at) == (7, 100, now + 30)
    jira = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2027-01-15T10:30Z"}
    b = read_budget(jira, now)
    assert (
        b is not None and b.reset_at == dt.datetime(2027, 1, 15, 10, 30, tzinfo=dt.UTC).timestamp()
    )
    servicenow = {"x-ratelimit-limit": "1000", "x-ratelimit-reset": "120"}  # seconds from now
    b = read_budget(servicenow, now)
    assert b is not None and (b.remaining, b.reset_at) == (None, now + 120)
    assert read_budget({"content-type": "application/json"}, now) is None
    assert read_budget({"x-ratelimit-remaining": "²"}, now) is None


@pytest.mark.parametrize(
    ("status", "headers", "limited"),
    [
        (429, {}, True),
        (403, {"retry-after": "60"}, True),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000600"}, True),
        (403, {"x-ratelimit-remaining": "12"}, False),  # a permission problem
        (403, {}, False),
        (500, {"retry-after": "1"}, False),
    ],
)
def test_is_rate_limit(status: int, headers: dict[str, str], limited: bool) -> None:
    assert is_rate_limit(status, headers, 1_800_000_000.0) is limited


def test_describe_reset_local_time_and_how_long() -> None:
    cet = dt.timezone(dt.timedelta(hours=1), "CET")
    now = dt.datetime(2027, 1, 15, 10, 0, tzinfo=dt.UTC).timestamp()
    assert describe_reset(now + 720, now, tz=cet) == "11:12:00 CET (in 12 min)"
    assert describe_reset(now + 86400, now, tz=cet) == "2027-01-16 11:00:00 CET (in 24.0 h)"
    assert describe_reset(now + 30, now, tz=cet) == "11:00:30 CET (in 30 s)"


# ------------------------------------------------------------------ GitHub primary limit


@pytest.mark.parametrize("status_429", [False, True], ids=["403", "429"])
def test_github_primary_limit_waits_for_the_reset(
    connect: Callable[..., remotetables.Connection], clock: FakeClock, status_429: bool
) -> None:
    """10 pages, a budget of 6 an hour: the query waits for the reset (within max_retry_wait)
    and finishes; it never keeps sending while the budget is spent."""
    state = State(clock, limit=6, window=100, n_rows=50, status_429=status_429)
    with serve(state) as base:
        conn = connect(base, "github", wait=120, concurrency=1)
        assert ids(conn) == list(range(50))
    assert 95 <= clock.total_slept() <= 100 + 5  # waited for the reset, once
    # at most one refused request: the one that found the limit spent
    assert state.refused("tok-alice") <= 1
    s = stats(conn)
    assert s["rate_limit"] == 6 and s["rate_limit_remaining"] == 2
    assert s["rate_limit_resource"] == "core"


def test_github_primary_limit_beyond_max_retry_wait_fails_naming_the_reset(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    state = State(clock, limit=3, window=3600, n_rows=50)
    with serve(state) as base:
        conn = connect(base, "github", wait=60, concurrency=1)
        with pytest.raises(remotetables.RateLimited) as info:
            ids(conn)
        message = str(info.value)
        reset = describe_reset(clock.now() + 3600, clock.now())
        assert reset.split(" (")[0] in message and "(in 60 min)" in message, message
        assert "table items" in message and "provider gh" in message and "alice" in message
        assert "max_retry_wait (60 s)" in message
        assert "not allowed" not in message and "scope" not in message
        assert "tok-alice" not in message
        assert clock.total_slept() == 0
        # the next query knows the budget is spent: it fails without sending anything
        sent = len(state.log)
        with pytest.raises(remotetables.RateLimited, match=r"spent until .*\(in 60 min\)"):
            ids(conn)
        assert len(state.log) == sent


def test_a_403_that_is_not_a_rate_limit_still_says_permission(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    state = State(clock)
    with serve(state) as base:
        conn = connect(base, "forbidden")
        with pytest.raises(remotetables.RemoteError) as info:
            ids(conn)
    assert not isinstance(info.value, remotetables.RateLimited)
    assert info.value.status_code == 403 and "not allowed" in str(info.value)
    assert len(state.log) == 1 and clock.total_slept() == 0


# ------------------------------------------------------------------ secondary limit, 429


def test_github_secondary_limit_403_with_retry_after(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    state = State(clock, n_rows=10, secondary_refusals=1)
    with serve(state) as base:
        conn = connect(base, "secondary", wait=60, concurrency=1)
        assert ids(conn) == list(range(10))
    assert clock.slept and 30 <= clock.total_slept() < 31  # the Retry-After, not a backoff
    assert stats(conn)["retries"] == 1


def test_secondary_limit_longer_than_max_retry_wait_fails(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    state = State(clock, n_rows=10, secondary_refusals=1)
    with serve(state) as base:
        conn = connect(base, "secondary", wait=10, concurrency=1)
        with pytest.raises(remotetables.RateLimited, match=r"secondary rate limit.*\(in 30 s\)"):
            ids(conn)
    assert clock.total_slept() == 0


@pytest.mark.parametrize(
    ("retry_after", "slept"),
    [("7", (7.0, 7.5)), (None, (0.0, 1.5))],  # none: exponential backoff from 0.5 s
    ids=["with-retry-after", "without"],
)
def test_429(
    connect: Callable[..., remotetables.Connection],
    clock: FakeClock,
    retry_after: str | None,
    slept: tuple[float, float],
) -> None:
    state = State(clock, n_rows=10, plain_refusals=2, plain_retry_after=retry_after)
    with serve(state) as base:
        conn = connect(base, "plain429", concurrency=1)
        assert ids(conn) == list(range(10))
    low, high = slept
    assert 2 * low <= clock.total_slept() <= 2 * high
    assert stats(conn)["retries"] == 2


def test_ietf_ratelimit_fields(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    """RateLimit / RateLimit-Policy: the budget is read, spent pages wait for t seconds."""
    state = State(clock, limit=4, window=30, n_rows=30)
    with serve(state) as base:
        conn = connect(base, "ietf", wait=60, concurrency=1)
        assert ids(conn) == list(range(30))
    assert state.refused("tok-alice") <= 1  # no request sent past zero but the first
    assert 25 <= clock.total_slept() <= 31 + 1
    s = stats(conn)
    assert s["rate_limit"] == 4 and s["rate_limit_resource"] == "default"
    assert s["rate_limit_remaining"] == 4 - (6 - 4)  # 6 pages: 4, then 2 after the reset


# ------------------------------------------------------------------ pacing, per principal


def test_parallel_pages_go_one_at_a_time_when_the_budget_is_low(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    """A page-numbered table fetches pages 2..N in parallel; once the API says the budget is
    low, that user's requests go one at a time and none is sent past zero."""
    state = State(clock, limit=6, window=100, n_rows=60)  # 12 pages, 6 per window: low at once
    with serve(state) as base:
        conn = connect(base, "github", wait=120, concurrency=4)
        assert ids(conn) == list(range(60))
    assert state.max_in_flight["tok-alice"] == 1
    assert state.refused("tok-alice") == 0  # the client waited for the reset instead
    assert 95 <= clock.total_slept() <= 105


def test_parallel_pages_overlap_while_the_budget_is_comfortable(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    state = State(clock, limit=5000, n_rows=60)
    with serve(state) as base:
        conn = connect(base, "github", concurrency=4)
        # a few tries: overlapping is likely, not certain, on a busy machine
        for _ in range(5):
            assert ids(conn) == list(range(60))
            if state.max_in_flight["tok-alice"] > 1:
                break
    assert state.max_in_flight["tok-alice"] > 1
    assert stats(conn)["rate_limit_remaining"] == 5000 - len(state.log)


def test_users_have_separate_budgets(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    """alice spends her budget; bob's queries neither wait nor fail, and alice's still fail."""
    state = State(clock, limit=4, window=3600, n_rows=50)
    with serve(state) as base:
        conn = connect(base, "github", wait=60, concurrency=1)
        with pytest.raises(remotetables.RateLimited, match="user alice"):
            ids(conn)
        conn.set_user("bob")
        state.limit = 100
        assert ids(conn) == list(range(50))
        assert stats(conn)["rate_limit_remaining"] == 90
        conn.set_user("alice")
        sent = len(state.log)
        with pytest.raises(remotetables.RateLimited, match="user alice"):
            ids(conn)
        assert len(state.log) == sent  # not even sent: alice's budget is known to be spent
    assert clock.total_slept() == 0
    tokens = {t for t, _, _ in state.log}
    assert tokens == {"tok-alice", "tok-bob"}


def test_shell_stats_shows_the_budget(
    connect: Callable[..., remotetables.Connection], clock: FakeClock
) -> None:
    state = State(clock, limit=5000, n_rows=10)
    with serve(state) as base:
        conn = connect(base, "github", concurrency=1)
        ids(conn)
    s = stats(conn)
    assert s["rate_limit_remaining"] == 4998 and s["rate_limit"] == 5000
    assert re.fullmatch(r"\d\d:\d\d:\d\d \S+ \(in 60 min\)|\d{4}-.*", s["rate_limit_reset"]) or (
        "(in" in s["rate_limit_reset"]
    )
