"""TokenManager: single-flight refresh, failure handling, and the cross-process tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from remotetables.auth.manager import TokenManager
from remotetables.auth.store import MemoryTokenStore, SQLiteTokenStore, TokenKey, TokenSet
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.errors import (
    AuthError,
    ConsentRequired,
    ProviderError,
    ProviderUnavailable,
    TokenStoreError,
    TransportError,
)

from .rotating_as import RotatingAS, make_refresher

KEY = TokenKey("rotating", "test-client", "alice")
T0 = 1_000_000.0


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeRefresher:
    """Returns the next token set, or raises what it was told to; records the RTs it got."""

    def __init__(self, *results: TokenSet | BaseException) -> None:
        self.results = list(results)
        self.calls: list[str] = []

    def __call__(self, refresh_token: str) -> TokenSet:
        self.calls.append(refresh_token)
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result


def never(refresh_token: str) -> TokenSet:
    raise AssertionError("the refresher must not be called")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryTokenStore:
    return MemoryTokenStore(clock=clock)


def manager(store: object, clock: FakeClock, **kw: float) -> TokenManager:
    return TokenManager(store, clock=clock, sleep=clock.sleep, leeway=60.0, **kw)  # type: ignore[arg-type]


def seed(store: MemoryTokenStore, *, expires_in: float | None, rt: str | None = "rt-0") -> int:
    """A grant whose access token was issued for an hour (``expires_in`` of it left)."""
    expires_at = None if expires_in is None else T0 + expires_in
    issued = T0 if expires_in is None else T0 + expires_in - 3600
    return store.put(KEY, TokenSet("at-0", rt, scope="read", expires_at=expires_at), now=issued)


def new_tokens(n: int = 1, *, rt: bool = True) -> TokenSet:
    return TokenSet(f"at-{n}", f"rt-{n}" if rt else None, expires_at=T0 + 3600)


# ----------------------------------------------------------------------------- unit


def test_fresh_token_needs_no_refresh(store: MemoryTokenStore, clock: FakeClock) -> None:
    seed(store, expires_in=3600)
    assert manager(store, clock).access_token(KEY, never) == "at-0"


def test_unknown_expiry_counts_as_fresh(store: MemoryTokenStore, clock: FakeClock) -> None:
    seed(store, expires_in=None)
    assert manager(store, clock).access_token(KEY, never) == "at-0"


def test_no_row_or_needs_consent_raises_consent_required(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    with pytest.raises(ConsentRequired) as info:
        manager(store, clock).access_token(KEY, never)
    assert (info.value.provider, info.value.user) == ("rotating", "alice")
    seed(store, expires_in=3600)
    store.mark_needs_consent(KEY, reason="invalid_grant", now=T0)
    with pytest.raises(ConsentRequired):
        manager(store, clock).access_token(KEY, never)


@pytest.mark.parametrize("expires_in", [-10.0, 0.0, 59.0])  # expired, or inside the leeway
def test_expired_token_refreshed_once_and_committed(
    store: MemoryTokenStore, clock: FakeClock, expires_in: float
) -> None:
    v = seed(store, expires_in=expires_in)
    refresher = FakeRefresher(new_tokens(1))
    m = manager(store, clock)
    assert m.access_token(KEY, refresher) == "at-1"
    assert refresher.calls == ["rt-0"]
    rec = store.get(KEY)
    assert rec is not None and rec.version == v + 1 and rec.lease_owner is None
    assert rec.tokens is not None and rec.tokens.refresh_token == "rt-1"
    assert m.access_token(KEY, never) == "at-1"


def test_refresh_without_new_rt_keeps_old_rt(store: MemoryTokenStore, clock: FakeClock) -> None:
    seed(store, expires_in=-1)
    assert manager(store, clock).access_token(KEY, FakeRefresher(new_tokens(1, rt=False))) == "at-1"
    rec = store.get(KEY)
    assert rec is not None and rec.tokens is not None and rec.tokens.refresh_token == "rt-0"


@pytest.mark.parametrize(
    "error",
    [
        AuthError("rejected", error_code="invalid_grant"),
        ProviderError("rejected", error_code="invalid_grant"),
        ConsentRequired("gone"),
    ],
)
def test_invalid_grant_marks_needs_consent(
    store: MemoryTokenStore, clock: FakeClock, error: Exception
) -> None:
    seed(store, expires_in=-1)
    refresher = FakeRefresher(error)
    m = manager(store, clock)
    with pytest.raises(ConsentRequired) as info:
        m.access_token(KEY, refresher)
    assert info.value.user == "alice" and "rt-0" not in str(info.value)
    rec = store.get(KEY)
    assert rec is not None and (rec.status, rec.tokens, rec.last_error) == (
        "needs_consent",
        None,
        "invalid_grant",
    )
    with pytest.raises(ConsentRequired):  # no retry storm: the refresher is not called again
        m.access_token(KEY, never)
    assert len(refresher.calls) == 1


def test_provider_error_keeps_tokens(store: MemoryTokenStore, clock: FakeClock) -> None:
    v = seed(store, expires_in=-1)
    m = manager(store, clock)
    with pytest.raises(ProviderError):
        m.access_token(KEY, FakeRefresher(ProviderError("bad client", error_code="invalid_client")))
    rec = store.get(KEY)
    assert rec is not None and rec.status == "active" and rec.version == v
    assert rec.tokens is not None and rec.tokens.refresh_token == "rt-0"
    assert (rec.lease_owner, rec.last_error) == (None, "invalid_client")
    # the next call may try again (the lease was released)
    assert m.access_token(KEY, FakeRefresher(new_tokens(1))) == "at-1"


@pytest.mark.parametrize(
    "outage", [ProviderUnavailable("503"), TransportError("connection refused")]
)
def test_outage_with_still_valid_token_returns_it(
    store: MemoryTokenStore, clock: FakeClock, outage: Exception
) -> None:
    v = seed(store, expires_in=30)  # inside the leeway, but not yet expired
    assert manager(store, clock).access_token(KEY, FakeRefresher(outage)) == "at-0"
    rec = store.get(KEY)
    assert rec is not None and rec.version == v and rec.lease_owner is None
    assert rec.tokens is not None and rec.tokens.refresh_token == "rt-0"


@pytest.mark.parametrize(
    "outage", [ProviderUnavailable("503"), TransportError("connection refused")]
)
def test_outage_with_expired_token_raises_and_keeps_tokens(
    store: MemoryTokenStore, clock: FakeClock, outage: Exception
) -> None:
    seed(store, expires_in=-1)
    with pytest.raises(type(outage)):
        manager(store, clock).access_token(KEY, FakeRefresher(outage))
    rec = store.get(KEY)
    assert rec is not None and rec.status == "active" and rec.lease_owner is None
    assert rec.tokens is not None and rec.tokens.refresh_token == "rt-0"


def test_unexpected_refresher_error_releases_lease(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    seed(store, expires_in=-1)
    with pytest.raises(ValueError):
        manager(store, clock).access_token(KEY, FakeRefresher(ValueError("boom")))
    rec = store.get(KEY)
    assert rec is not None and rec.lease_owner is None and rec.last_error == "ValueError"


def test_expired_without_refresh_token_needs_consent(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    seed(store, expires_in=-1, rt=None)
    with pytest.raises(ConsentRequired):
        manager(store, clock).access_token(KEY, never)
    rec = store.get(KEY)
    assert rec is not None and rec.status == "needs_consent"


def test_refresh_if_current_only_refreshes_the_failed_token(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    seed(store, expires_in=3600)
    m = manager(store, clock)
    # someone already replaced the token that failed: return the stored one, no refresh
    assert m.refresh_if_current(KEY, "at-older", never) == "at-0"
    # the stored token is the one that failed: refresh even though it looks fresh
    refresher = FakeRefresher(new_tokens(1))
    assert m.refresh_if_current(KEY, "at-0", refresher) == "at-1"
    assert refresher.calls == ["rt-0"]
    # a second worker that also saw at-0 fail gets at-1 without another refresh
    assert m.refresh_if_current(KEY, "at-0", never) == "at-1"


def test_refresh_if_current_outage_raises_even_if_not_expired(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    seed(store, expires_in=3600)
    with pytest.raises(ProviderUnavailable):
        manager(store, clock).refresh_if_current(
            KEY, "at-0", FakeRefresher(ProviderUnavailable("x"))
        )


def test_waiting_for_a_stuck_holder_is_bounded(store: MemoryTokenStore, clock: FakeClock) -> None:
    v = seed(store, expires_in=-1)
    assert store.try_lease(KEY, version=v, owner="other", now=T0, lease_seconds=600)
    m = manager(store, clock, wait_deadline=10.0)
    with pytest.raises(ProviderUnavailable, match="waiting for another worker") as info:
        m.access_token(KEY, never)
    assert info.value.error_code == "refresh_wait_timeout"
    assert clock.now - T0 == pytest.approx(10.0)
    assert 3 < len(clock.sleeps) < 200 and max(clock.sleeps) <= 1.0


def test_waiter_uses_the_token_the_holder_committed(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    v = seed(store, expires_in=-1)
    assert store.try_lease(KEY, version=v, owner="other", now=T0, lease_seconds=30)

    def holder_finishes(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 2:
            store.commit_refresh(KEY, owner="other", tokens=new_tokens(7), now=clock.now)

    m = TokenManager(store, clock=clock, sleep=holder_finishes)
    assert m.access_token(KEY, never) == "at-7"


def test_expired_lease_of_a_dead_holder_is_taken_over(
    store: MemoryTokenStore, clock: FakeClock
) -> None:
    v = seed(store, expires_in=-1)
    assert store.try_lease(KEY, version=v, owner="dead", now=T0, lease_seconds=5)
    refresher = FakeRefresher(new_tokens(1))
    assert manager(store, clock, wait_deadline=30.0).access_token(KEY, refresher) == "at-1"
    assert refresher.calls == ["rt-0"]  # the stored RT was not lost


class FlakyStore(MemoryTokenStore):
    """Fails ``commit_refresh`` while ``failures`` > 0 (disk full, locked ...)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def commit_refresh(
        self,
        key: TokenKey,
        *,
        owner: str,
        tokens: TokenSet,
        now: float,
        from_version: int | None = None,
    ) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise TokenStoreError("disk I/O error")
        return super().commit_refresh(
            key, owner=owner, tokens=tokens, now=now, from_version=from_version
        )


def test_commit_failure_is_retried(clock: FakeClock) -> None:
    store = FlakyStore(failures=2)
    seed(store, expires_in=-1)
    assert manager(store, clock).access_token(KEY, FakeRefresher(new_tokens(1))) == "at-1"
    rec = store.get(KEY)
    assert rec is not None and rec.tokens is not None and rec.tokens.refresh_token == "rt-1"


def test_commit_failure_keeps_tokens_in_memory_and_raises_loudly(clock: FakeClock) -> None:
    store = FlakyStore(failures=10)
    seed(store, expires_in=-1)
    m = TokenManager(store, clock=clock, sleep=clock.sleep, commit_attempts=3)
    with pytest.raises(TokenStoreError, match="kept in memory") as info:
        m.access_token(KEY, FakeRefresher(new_tokens(1)))
    assert "rt-1" not in str(info.value) and "at-1" not in str(info.value)
    assert store.failures == 7
    with pytest.raises(TokenStoreError, match="still unsaved"):
        m.access_token(KEY, never)
    store.failures = 0  # the disk recovers: the rotated RT is saved, no second refresh
    assert m.access_token(KEY, never) == "at-1"
    rec = store.get(KEY)
    assert rec is not None and rec.tokens is not None and rec.tokens.refresh_token == "rt-1"


def test_threads_of_one_process_refresh_once(tmp_path: Path) -> None:
    store = SQLiteTokenStore(tmp_path / "tokens.db", TokenCipher.from_key(os.urandom(32)))
    store.put(KEY, TokenSet("at-0", "rt-0", expires_at=time.time() - 10), now=time.time())
    calls: list[str] = []
    gate = threading.Event()

    def slow_refresher(rt: str) -> TokenSet:
        calls.append(rt)
        gate.wait(timeout=2)  # let the other threads pile up behind the lock
        return TokenSet("at-1", "rt-1", expires_at=time.time() + 3600)

    m = TokenManager(store)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(m.access_token(KEY, slow_refresher)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(timeout=30)
    assert calls == ["rt-0"] and results == ["at-1"] * 8
    store.close()


# ----------------------------------------------------------------------------- loopback AS

WORKER = r"""
import json, sys, threading
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import httpx2
from rotating_as import make_refresher
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.auth.manager import TokenManager
from remotetables.auth.store import SQLiteTokenStore, TokenKey

db, key_file, token_url, api_url, client_id, n_threads, lease = sys.argv[2:9]
key_id, key = load_key(key_file=Path(key_file), use_keyring=False, default_key_file=Path(key_file))
store = SQLiteTokenStore(Path(db), TokenCipher({key_id: key}, current=key_id))
manager = TokenManager(store, leeway=5.0, lease_seconds=float(lease), wait_deadline=60.0)
refresher = make_refresher(token_url, client_id)
tkey = TokenKey("rotating", client_id, "alice")
go = threading.Event()
results, lock = [], threading.Lock()

def work():
    go.wait(60)
    try:
        at = manager.access_token(tkey, refresher)
        r = httpx2.get(api_url, headers={"Authorization": f"Bearer {at}"}, timeout=10)
        res = {"ok": r.status_code == 200, "status": r.status_code, "at": at}
    except Exception as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with lock:
        results.append(res)

threads = [threading.Thread(target=work) for _ in range(int(n_threads))]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for t in threads:
    t.join(120)
print(json.dumps(results), flush=True)
"""


@pytest.fixture
def auth_server() -> Iterator[RotatingAS]:
    with RotatingAS(refresh_delay=0.3) as server:
        yield server


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Path, Path, TokenCipher]:
    key_file = tmp_path / "token.key"
    key_id, key = load_key(key_file=key_file, use_keyring=False, default_key_file=key_file)
    return tmp_path / "state" / "tokens.db", key_file, TokenCipher({key_id: key}, current=key_id)


def seed_expired(server: RotatingAS, store: SQLiteTokenStore) -> tuple[str, int]:
    at, rt = server.seed("alice")
    version = store.put(KEY, TokenSet(at, rt, expires_at=time.time() - 10), now=time.time())
    return rt, version


def start_workers(
    tmp_path: Path,
    server: RotatingAS,
    db: Path,
    key_file: Path,
    *,
    processes: int,
    threads: int,
    lease: float = 30.0,
) -> list[subprocess.Popen[str]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [str(Path(__file__).parent), str(db), str(key_file), server.token_url, server.api_url]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *args, server.client_id, str(threads), str(lease)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.communicate(timeout=30)
    return procs


def go(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def test_loopback_as_detects_unsynchronised_refreshes(auth_server: RotatingAS) -> None:
    """Control: without single-flight, parallel refreshes of one RT revoke the family."""
    _, rt = auth_server.seed("alice")
    refresher = make_refresher(auth_server.token_url, auth_server.client_id)
    outcomes: list[str] = []

    def naive() -> None:
        try:
            refresher(rt)
            outcomes.append("ok")
        except AuthError as exc:
            outcomes.append(exc.error_code or "?")

    threads = [threading.Thread(target=naive) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["invalid_grant"] * 3 + ["ok"]
    assert auth_server.refresh_calls == 4 and auth_server.family_of(rt).revoked


@pytest.mark.timeout(180)
def test_four_processes_four_threads_refresh_once(
    tmp_path: Path, auth_server: RotatingAS, shared: tuple[Path, Path, TokenCipher]
) -> None:
    db, key_file, cipher = shared
    store = SQLiteTokenStore(db, cipher)
    rt0, v0 = seed_expired(auth_server, store)
    procs = start_workers(tmp_path, auth_server, db, key_file, processes=4, threads=4)
    go(procs)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.extend(json.loads(out.splitlines()[-1]))
    assert len(results) == 16
    assert [r for r in results if not r["ok"]] == []
    assert auth_server.refresh_calls == 1
    assert (auth_server.rotations, auth_server.reuse_detected) == (1, 0)
    family = auth_server.family_of(rt0)
    assert not family.revoked
    assert {r["at"] for r in results} == {family.access_token}
    rec = store.get(KEY)
    assert rec is not None and rec.version == v0 + 1 and rec.lease_owner is None
    assert rec.tokens is not None and rec.tokens.refresh_token == family.refresh_token
    store.close()


@pytest.mark.timeout(120)
def test_sigkilled_lease_holder_neither_blocks_forever_nor_loses_the_rt(
    tmp_path: Path, auth_server: RotatingAS, shared: tuple[Path, Path, TokenCipher]
) -> None:
    db, key_file, cipher = shared
    store = SQLiteTokenStore(db, cipher)
    rt0, v0 = seed_expired(auth_server, store)
    auth_server.mode = "hang"  # the holder's refresh request never gets an answer
    (proc,) = start_workers(tmp_path, auth_server, db, key_file, processes=1, threads=1)
    go([proc])
    assert auth_server.hang_arrived.wait(timeout=60)
    held = store.get(KEY)
    assert held is not None and held.lease_owner is not None and held.lease_until is not None
    assert f":{proc.pid}:" in held.lease_owner
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    auth_server.mode = "ok"
    auth_server.hang_release.set()  # the orphaned request ends without rotating

    refresher = make_refresher(auth_server.token_url, auth_server.client_id)
    assert held.refreshing  # the holder recorded that its refresh was in flight
    # While the dead holder's lease is still live (by the store's clock), others wait, and
    # give up at the deadline.
    clock = FakeClock(held.lease_until - 20)
    waiting = TokenManager(
        SQLiteTokenStore(db, cipher, clock=clock), clock=clock, sleep=clock.sleep, wait_deadline=5.0
    )
    with pytest.raises(ProviderUnavailable, match="waiting for another worker"):
        waiting.access_token(KEY, refresher)
    assert auth_server.refresh_calls == 1  # only the orphaned request
    # Once the lease has expired, the next caller whose token has expired waits the takeover
    # grace (the holder might still save a rotated token), then refreshes with the stored RT.
    clock = FakeClock(held.lease_until + 1)
    later = TokenManager(
        SQLiteTokenStore(db, cipher, clock=clock),
        clock=clock,
        sleep=clock.sleep,
        wait_deadline=30.0,
        takeover_grace=5.0,
    )
    at = later.access_token(KEY, refresher)
    assert 5.0 <= sum(clock.sleeps) < 7.0
    family = auth_server.family_of(rt0)
    assert (auth_server.rotations, auth_server.reuse_detected, family.revoked) == (1, 0, False)
    assert at == family.access_token
    assert (
        httpx2.get(auth_server.api_url, headers={"Authorization": f"Bearer {at}"}).status_code
        == 200
    )
    rec = store.get(KEY)
    assert rec is not None and rec.version == v0 + 1 and rec.lease_owner is None
    assert rec.tokens is not None and rec.tokens.refresh_token == family.refresh_token
    store.close()


@pytest.mark.parametrize(
    ("mode", "error"), [("500", ProviderUnavailable), ("invalid_client", ProviderError)]
)
def test_loopback_failures_keep_the_stored_tokens(
    auth_server: RotatingAS, shared: tuple[Path, Path, TokenCipher], mode: str, error: type
) -> None:
    db, _, cipher = shared
    store = SQLiteTokenStore(db, cipher)
    rt0, v0 = seed_expired(auth_server, store)
    auth_server.mode = mode
    refresher = make_refresher(auth_server.token_url, auth_server.client_id)
    with pytest.raises(error):
        TokenManager(store).access_token(KEY, refresher)
    rec = store.get(KEY)
    assert rec is not None and rec.status == "active" and rec.version == v0
    assert rec.tokens is not None and rec.tokens.refresh_token == rt0 and rec.lease_owner is None
    auth_server.mode = "ok"  # recovered: the kept RT still works
    assert (
        TokenManager(store).access_token(KEY, refresher) == auth_server.family_of(rt0).access_token
    )
    store.close()


def test_loopback_invalid_grant_needs_consent(
    auth_server: RotatingAS, shared: tuple[Path, Path, TokenCipher]
) -> None:
    db, _, cipher = shared
    store = SQLiteTokenStore(db, cipher)
    rt0, _ = seed_expired(auth_server, store)
    refresher = make_refresher(auth_server.token_url, auth_server.client_id)
    refresher(rt0)  # someone else used the RT behind our back: ours is now stale
    with pytest.raises(ConsentRequired):
        TokenManager(store).access_token(KEY, refresher)
    rec = store.get(KEY)
    assert rec is not None and rec.status == "needs_consent" and rec.tokens is None
    assert auth_server.refresh_calls == 2
    store.close()
