"""TokenManager under store faults and slow refreshes (issues 15, 16 and 23).

Unit cases drive a MemoryTokenStore and the manager with one fake clock; the stall cases run
two "hosts" (two store instances, two managers) on SQLite and PostgreSQL against the rotating
authorization server, with a real lock held on the store while they want a lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remotetables.auth.manager import TokenManager
from remotetables.auth.store import MemoryTokenStore, SQLiteTokenStore, TokenKey, TokenSet
from remotetables.auth.store.base import TokenRecord, TokenStore
from remotetables.auth.store.crypto import TokenCipher
from remotetables.errors import TokenStoreError
from tests.pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)

from .rotating_as import RotatingAS, make_refresher
from .test_manager import KEY, T0, FakeClock, FakeRefresher, never


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryTokenStore:
    return MemoryTokenStore(clock=clock)


def put(store: TokenStore, *, lifetime: float, left: float, at: str = "at-0") -> int:
    """A grant whose access token was issued for ``lifetime`` s, ``left`` s of it to go."""
    now = T0
    return store.put(KEY, TokenSet(at, "rt-0", expires_at=now + left), now=now + left - lifetime)


# ----------------------------------------------------------------------------- issue 15: leeway


@pytest.mark.parametrize("ttl", [5, 60])
def test_short_tokens_are_refreshed_once_per_expiry(ttl: int) -> None:
    """A 5 s or 60 s token is used for most of its life: one refresh per lifetime, not one
    per request (a fixed 60 s leeway made such tokens never fresh)."""
    clock = FakeClock()
    with RotatingAS(access_ttl=ttl) as server:
        at, rt = server.seed("alice")
        store = MemoryTokenStore(clock=clock)
        store.put(KEY, TokenSet(at, rt, expires_at=T0 + ttl), now=T0)
        m = TokenManager(store, clock=clock, sleep=clock.sleep, leeway=60.0)
        refresher = make_refresher(server.token_url, server.client_id, clock=clock)
        step = ttl / 20
        for _ in range(80):  # four lifetimes, 20 requests in each
            m.access_token(KEY, refresher)
            clock.now += step
        # refreshed at 90% of each lifetime: 0.9, 1.8, 2.7, 3.6 lifetimes
        assert (server.refresh_calls, server.reuse_detected) == (4, 0)


# ----------------------------------------------------------------------------- issue 23 #2


class DownStore(MemoryTokenStore):
    """Every call fails while ``down`` is set (an outage or a lock of the shared store)."""

    down = False

    def get(self, key: TokenKey) -> TokenRecord | None:
        if self.down:
            raise TokenStoreError("token store memory: connection refused")
        return super().get(key)


def test_a_valid_access_token_is_used_while_the_store_is_down(clock: FakeClock) -> None:
    store = DownStore(clock=clock)
    put(store, lifetime=3600, left=3600)
    m = TokenManager(store, clock=clock, sleep=clock.sleep)
    assert m.access_token(KEY, never) == "at-0"
    store.down = True
    clock.now += 3500  # not due yet (refresh from 3540 s on)
    assert m.access_token(KEY, never) == "at-0"
    clock.now += 50  # due: the store is on the refresh path again, but the token still works
    assert m.access_token(KEY, never) == "at-0"
    clock.now += 51  # expired, and the store cannot be read
    with pytest.raises(TokenStoreError, match="token store"):
        m.access_token(KEY, never)


def test_the_token_kept_in_memory_is_dropped_after_a_401(clock: FakeClock) -> None:
    store = MemoryTokenStore(clock=clock)
    put(store, lifetime=3600, left=3600)
    m = TokenManager(store, clock=clock, sleep=clock.sleep)
    assert m.access_token(KEY, never) == "at-0"
    refresher = FakeRefresher(TokenSet("at-1", "rt-1", expires_at=T0 + 3600))
    assert m.refresh_if_current(KEY, "at-0", refresher) == "at-1"
    assert m.access_token(KEY, never) == "at-1"
    m.forget(KEY)
    store.put(KEY, TokenSet("at-9", "rt-9", expires_at=T0 + 3600), now=T0)
    assert m.access_token(KEY, never) == "at-9"


# ----------------------------------------------------------------------------- issue 23 #4


def test_waiters_keep_a_working_token_while_another_worker_refreshes(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    """A token inside its leeway still works: others do not wait for the lease holder."""
    v = put(store, lifetime=3600, left=30)
    assert store.try_lease(KEY, version=v, owner="other-host", lease_seconds=120)
    m = TokenManager(store, clock=clock, sleep=clock.sleep, wait_deadline=45.0)
    assert m.access_token(KEY, never) == "at-0"
    assert clock.sleeps == []


def test_a_successor_keeps_a_working_token_after_an_interrupted_refresh(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    """The lease of a holder whose refresh was in flight ran out (it may have died after the
    server rotated): while the access token works, nobody replays the refresh token."""
    v = put(store, lifetime=3600, left=100)
    assert store.try_lease(KEY, version=v, owner="dead-host", lease_seconds=10)
    assert store.begin_refresh(KEY, owner="dead-host", min_left=5)
    clock.now += 80  # the lease is over, the token is due but still works
    m = TokenManager(store, clock=clock, sleep=clock.sleep, takeover_grace=5.0)
    assert m.access_token(KEY, never) == "at-0"
    clock.now += 25  # expired: after the grace, the successor refreshes
    refresher = FakeRefresher(TokenSet("at-1", "rt-1", expires_at=clock.now + 3600))
    assert m.access_token(KEY, refresher) == "at-1"
    assert refresher.calls == ["rt-0"] and 5.0 <= sum(clock.sleeps) < 7.0


# ----------------------------------------------------------------------------- issue 16 #5


def test_tokens_from_a_refresh_that_outlived_its_lease_are_compared_and_set(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    """The token endpoint answered after the lease ran out and another worker took it (but
    had not refreshed yet): the grant is still the one refreshed from, so the issued tokens go
    in, and the other worker's lease is void."""
    put(store, lifetime=3600, left=-1)

    def slow(refresh_token: str) -> TokenSet:
        clock.now += 200  # past the 120 s lease
        rec = store.get(KEY)
        assert rec is not None
        assert store.try_lease(KEY, version=rec.version, owner="other", lease_seconds=120)
        return TokenSet("at-1", "rt-1", expires_at=clock.now + 3600)

    m = TokenManager(store, clock=clock, sleep=clock.sleep, lease_seconds=120.0)
    assert m.access_token(KEY, slow) == "at-1"
    rec = store.get(KEY)
    assert rec is not None and rec.tokens is not None and rec.tokens.refresh_token == "rt-1"
    assert rec.lease_owner is None
    assert not store.begin_refresh(KEY, owner="other", min_left=1)


def test_a_late_refresh_keeps_the_newer_grant_and_says_so(
    store: MemoryTokenStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    put(store, lifetime=3600, left=-1)

    def slow(refresh_token: str) -> TokenSet:
        clock.now += 200
        rec = store.get(KEY)
        assert rec is not None
        assert store.try_lease(KEY, version=rec.version, owner="other", lease_seconds=120)
        store.commit_refresh(
            KEY, owner="other", tokens=TokenSet("at-new", "rt-new", expires_at=clock.now + 3600),
            now=clock.now,
        )  # fmt: skip
        return TokenSet("at-1", "rt-1", expires_at=clock.now + 3600)

    m = TokenManager(store, clock=clock, sleep=clock.sleep, lease_seconds=120.0)
    with caplog.at_level(logging.WARNING, logger="remotetables.auth"):
        assert m.access_token(KEY, slow) == "at-new"
    assert "newer stored grant is kept" in caplog.text
    assert "at-1" not in caplog.text and "rt-1" not in caplog.text


# ----------------------------------------------------------------------------- issue 23 #7


class StalledStore(MemoryTokenStore):
    """``get`` blocks until ``release`` is set (a stalled store connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()
        self._where = "postgresql://tokens@db.internal/rt"

    def get(self, key: TokenKey) -> TokenRecord | None:
        self.inside.set()
        self.release.wait(30)
        return super().get(key)


def test_a_stalled_store_is_named_as_the_cause() -> None:
    store = StalledStore()
    store.put(KEY, TokenSet("at-0", "rt-0", expires_at=time.time() + 3600), now=time.time())
    m = TokenManager(store, wait_deadline=0.5)
    first = threading.Thread(target=m.access_token, args=(KEY, never), daemon=True)
    first.start()
    assert store.inside.wait(10)
    try:
        with pytest.raises(TokenStoreError, match=r"token store postgresql://tokens@db\.internal"):
            m.access_token(KEY, never)
    finally:
        store.release.set()
        first.join(10)


# ----------------------------------------------------------------------------- issue 23 #1


def _sqlite_pair(
    tmp_path: Path,
) -> Iterator[tuple[TokenStore, TokenStore, Callable[[float], None]]]:
    cipher = TokenCipher.from_key(bytes(range(32)))
    path = tmp_path / "state" / "tokens.db"
    a = SQLiteTokenStore(path, cipher, busy_timeout_ms=8000)
    b = SQLiteTokenStore(path, cipher, busy_timeout_ms=8000)

    def hold(seconds: float) -> None:  # another process's write transaction
        import apsw

        conn = apsw.Connection(str(path))
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    yield a, b, hold
    a.close()
    b.close()


def _pg_pair(url: str) -> Iterator[tuple[TokenStore, TokenStore, Callable[[float], None]]]:
    import psycopg

    from remotetables.auth.store.postgres import PostgresTokenStore

    cipher = TokenCipher.from_key(bytes(range(32)))
    a = PostgresTokenStore(url, cipher, timeout=8.0)
    b = PostgresTokenStore(url, cipher, timeout=8.0)

    def hold(seconds: float) -> None:  # a session that keeps the grant's row locked
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1 FROM oauth_token FOR UPDATE").fetchall()
            time.sleep(seconds)
            conn.rollback()

    yield a, b, hold
    a.close()
    b.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_hosts(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TokenStore, TokenStore, Callable[[float], None]]]:
    if request.param == "sqlite":
        yield from _sqlite_pair(tmp_path)
    else:
        yield from _pg_pair(request.getfixturevalue("pg_url"))


@pytest.mark.timeout(60)
def test_a_lease_granted_after_a_store_stall_is_not_already_over(
    two_hosts: tuple[TokenStore, TokenStore, Callable[[float], None]],
) -> None:
    """The store is locked longer than the lease while both hosts want to refresh: the lease
    that is granted after the stall runs from then, so the other host waits instead of
    replaying the same refresh token (the server would revoke the grant)."""
    a, b, hold = two_hosts
    lease, stall = 2.0, 3.0
    with RotatingAS(refresh_delay=0.5) as server:
        at, rt = server.seed("alice")
        a.put(KEY, TokenSet(at, rt, expires_at=time.time() - 10), now=time.time() - 3600)
        refresher = make_refresher(server.token_url, server.client_id)
        managers = [
            TokenManager(s, lease_seconds=lease, min_lease_left=0.5, wait_deadline=30.0)
            for s in (a, b)
        ]
        holder = threading.Thread(target=hold, args=(stall,))
        holder.start()
        time.sleep(0.3)  # the lock is held
        results: list[str] = []

        def work(m: TokenManager) -> None:
            try:
                results.append(m.access_token(KEY, refresher))
            except Exception as exc:  # the assertion below shows it
                results.append(f"{type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=work, args=(m,)) for m in managers]
        for w in workers:
            w.start()
        for t in (holder, *workers):
            t.join(40)
        family = server.family_of(rt)
        assert (server.reuse_detected, family.revoked) == (0, False)
        assert server.rotations == 1
        assert results == [family.access_token] * 2
