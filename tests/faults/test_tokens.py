"""Fault scenarios F1-F7, F12, F13, F15, F17 (token side), through SQL over loopback servers.

Unit-level versions live in tests/auth/ and are referenced per scenario rather than repeated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import remotetables
from remotetables.demo.api.server import Fault, token_fingerprint
from remotetables.errors import (
    ConsentRequired,
    ProviderError,
    ProviderUnavailable,
    RemoteError,
)
from tests.auth.rotating_as import make_refresher
from tests.faults.env import Clock, DemoEnv, OutageAS, RotatingEnv, rows_of

WWW_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnv]:
    e = DemoEnv(tmp_path)
    yield e
    e.close()


@pytest.fixture
def rot(tmp_path: Path) -> Iterator[RotatingEnv]:
    e = RotatingEnv(tmp_path)
    yield e
    e.close()


def only_user(rows: list[tuple[str, str | None]], user: str) -> bool:
    return bool(rows) and all(r[1] in (user, None) for r in rows)


# ----------------------------------------------------------------------------- F1


def test_f01_expired_access_token_refreshed_once_and_stored_before_use(env: DemoEnv) -> None:
    conn = env.connect("alice")
    before = rows_of(conn)
    assert only_user(before, "alice")
    version = env.expire_stored(conn, "alice")
    refreshes = env.auth.stats.refreshes
    store = conn.runtime.oauth_service().store
    key = env.key(conn, "alice")
    stored_when_used: list[bool] = []
    validate = env.auth.validate_token

    def checking_validator(token: str) -> str | None:
        rec = store.get(key)  # persist-then-use: the AT the API sees is already committed
        stored_when_used.append(
            rec is not None and rec.tokens is not None and rec.tokens.access_token == token
        )
        return validate(token)

    env.api._validator = checking_validator
    assert rows_of(conn) == before
    assert env.auth.stats.refreshes == refreshes + 1
    rec = env.record(conn, "alice")
    assert rec is not None and rec.version == version + 1
    assert stored_when_used and all(stored_when_used)
    conn.close()


# ----------------------------------------------------------------------------- F2


def test_f02_401_mid_pagination_refreshes_once_and_resumes_the_page(env: DemoEnv) -> None:
    conn = env.connect("alice")
    expected = rows_of(conn)
    env.api.clear_requests()
    refreshes = env.auth.stats.refreshes
    env.api.faults.add(
        Fault("status", path="/styles/link/", page=3, status=401, headers=WWW_INVALID)
    )
    got = rows_of(conn)
    assert got == expected and len({r[0] for r in got}) == len(got)  # none lost, none twice
    assert env.auth.stats.refreshes == refreshes + 1
    pages = [r.query.get("offset", r.query.get("page", ["?"]))[0] for r in env.api.requests]
    assert len(env.api.requests) == len(set(pages)) + 1  # only the failed page twice
    assert [r.status for r in env.api.requests].count(401) == 1
    conn.close()


def test_f02_always_401_one_refresh_two_attempts_then_error(env: DemoEnv) -> None:
    conn = env.connect("alice")
    rows_of(conn)
    env.api.clear_requests()
    refreshes = env.auth.stats.refreshes
    env.api.faults.add(
        Fault("status", path="/styles/", status=401, headers=WWW_INVALID, times=None)
    )
    with pytest.raises(RemoteError, match="401") as info:
        rows_of(conn)
    assert info.value.status_code == 401
    assert env.auth.stats.refreshes == refreshes + 1
    assert len(env.api.requests) == 2
    conn.close()


def test_f02_403_insufficient_scope_never_refreshes(env: DemoEnv) -> None:
    conn = env.connect("alice")
    rows_of(conn)
    refreshes = env.auth.stats.refreshes
    env.api.faults.add(
        Fault(
            "status",
            path="/styles/",
            status=403,
            times=None,
            headers={
                "WWW-Authenticate": 'Bearer error="insufficient_scope", scope="incidents.admin"'
            },
        )
    )
    with pytest.raises(RemoteError, match="403") as info:
        rows_of(conn)
    assert info.value.status_code == 403 and "scope" in str(info.value)
    assert env.auth.stats.refreshes == refreshes
    conn.close()


# ----------------------------------------------------------------------------- F3
# Also: tests/auth/test_manager.py::test_threads_of_one_process_refresh_once,
# ::test_four_processes_four_threads_refresh_once (rotating AS, 4x4 -> 1 refresh).


@pytest.mark.parametrize("shared_runtime", [True, False], ids=["one-runtime", "four-runtimes"])
def test_f03_concurrent_queries_refresh_once(env: DemoEnv, shared_runtime: bool) -> None:
    first = env.connect("alice")
    expected = rows_of(first)
    env.expire_stored(first, "alice")
    refreshes = env.auth.stats.refreshes
    cfg = env.config()
    conns = []
    for i in range(8):
        if shared_runtime:
            conns.append(env.connect("alice", runtime=first.runtime))
        elif i % 2 == 0:
            conns.append(env.connect("alice", config=cfg))
        else:
            conns.append(env.connect("alice", runtime=conns[-1].runtime))
    results: list[object] = []
    go = threading.Event()

    def work(c: remotetables.Connection) -> None:
        go.wait(10)
        try:
            results.append(rows_of(c))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    assert results == [expected] * 8
    assert env.auth.stats.refreshes == refreshes + 1
    assert env.auth.stats.refresh_reuse_detected == 0
    assert env.consent.calls == ["alice"]
    for c in conns:
        c.close()
    first.close()


# ----------------------------------------------------------------------------- F4


def test_f04_lost_refresh_response_at_most_two_calls_then_consent(tmp_path: Path) -> None:
    """The AS rotates after our timeout: the answer is lost; the old RT is tried once more."""
    env = RotatingEnv(tmp_path, refresh_delay=1.0)
    try:
        conn = remotetables.connect(
            ":memory:", config=env.config("read_timeout = 0.3"), user="alice"
        )
        rt0 = env.seed(conn)
        with pytest.raises(ProviderUnavailable):
            rows_of(conn)
        rec = conn.runtime.oauth_service().store.get(env.key())
        assert rec is not None and rec.status == "active" and rec.tokens.refresh_token == rt0
        deadline = time.time() + 10
        while env.auth.rotations < 1 and time.time() < deadline:  # the server finishes late
            time.sleep(0.05)
        env.auth.refresh_delay = 0.0  # the AS answers promptly now: the old RT is refused
        with pytest.raises(ConsentRequired):
            rows_of(conn)
        assert env.auth.refresh_calls == 2
        rec = conn.runtime.oauth_service().store.get(env.key())
        assert rec is not None and rec.status == "needs_consent" and rec.tokens is None
        with pytest.raises(ConsentRequired):  # no loop: needs_consent asks no AS again
            rows_of(conn)
        assert env.auth.refresh_calls == 2
        conn.close()
    finally:
        env.close()


# ----------------------------------------------------------------------------- F5


def test_f05_revoked_refresh_token_needs_consent_once(env: DemoEnv) -> None:
    conn = env.connect("alice")
    expected = rows_of(conn)
    env.expire_stored(conn, "alice")
    env.auth.revoke_all_for("alice")
    token_requests = env.auth.stats.token_requests
    assert rows_of(conn) == expected
    assert env.consent.calls == ["alice", "alice"]  # one new consent for this query
    assert env.auth.stats.token_requests == token_requests + 2  # failed refresh + code exchange
    conn.close()


def test_f05_revoked_refresh_token_with_raise_consent(env: DemoEnv) -> None:
    conn = env.connect("alice")
    rows_of(conn)
    env.expire_stored(conn, "alice")
    env.auth.revoke_all_for("alice")
    conn.session.consent = "raise"
    token_requests = env.auth.stats.token_requests
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    assert info.value.authorization_url and info.value.authorization_url.startswith(env.auth.issuer)
    assert env.auth.stats.token_requests == token_requests + 1
    rec = env.record(conn, "alice")
    assert rec is not None and rec.status == "needs_consent" and rec.tokens is None
    conn.close()


# ----------------------------------------------------------------------------- F6
# Also: tests/auth/test_manager.py::test_loopback_failures_keep_the_stored_tokens[invalid_client]


def test_f06_invalid_client_is_a_config_error_and_keeps_tokens(rot: RotatingEnv) -> None:
    conn = remotetables.connect(":memory:", config=rot.config(), user="alice")
    rt0 = rot.seed(conn)
    rot.auth.mode = "invalid_client"
    with pytest.raises(ProviderError, match="invalid_client"):
        rows_of(conn)
    rec = conn.runtime.oauth_service().store.get(rot.key())
    assert rec is not None and rec.status == "active" and rec.tokens.refresh_token == rt0
    rot.auth.mode = "ok"
    assert rows_of(conn)  # the kept RT still works once the client is fixed
    conn.close()


# ----------------------------------------------------------------------------- F7 + breaker


@pytest.mark.parametrize("mode", ["500", "429_text", "502_html", "not_json", "down"])
def test_f07_token_endpoint_outage_keeps_tokens(rot: RotatingEnv, mode: str) -> None:
    outage = OutageAS("500" if mode == "down" else mode)
    url = outage.url
    if mode == "down":
        outage.close()
    text = rot.config_text().replace(rot.auth.token_url, f"{url}/token")
    cfg = rot.tmp / "outage.toml"
    cfg.write_text(text)
    conn = remotetables.connect(":memory:", config=cfg, user="alice")
    key = conn.runtime.oauth_service().key(conn.runtime.provider("rot"), "alice")
    at, rt = rot.auth.seed("alice")
    store = conn.runtime.oauth_service().store
    from remotetables.auth.store import TokenSet

    # still valid but inside the refresh leeway (an hour-long token with 30 s left): the outage
    # is absorbed, the AT keeps working
    store.put(key, TokenSet(at, rt, expires_at=time.time() + 30), now=time.time() - 3570)
    assert rows_of(conn)
    # expired: a retryable error, not a consent problem; the tokens stay
    store.put(key, TokenSet(at, rt, expires_at=time.time() - 1), now=time.time())
    with pytest.raises(ProviderUnavailable) as info:
        rows_of(conn)
    assert rt not in str(info.value) and at not in str(info.value)
    rec = store.get(key)
    assert rec is not None and rec.status == "active" and rec.tokens.refresh_token == rt
    if mode != "down":
        outage.close()
    conn.close()


def test_f07_one_breaker_per_provider_spares_a_failing_as(rot: RotatingEnv) -> None:
    outage = OutageAS("503")
    text = rot.config_text().replace(rot.auth.token_url, f"{outage.url}/token")
    cfg = rot.tmp / "outage.toml"
    cfg.write_text(text)
    clock = Clock()
    first = remotetables.connect(":memory:", config=cfg, user="u0", clock=clock)
    from remotetables.auth.store import TokenSet

    users = [f"u{i}" for i in range(10)]
    store = first.runtime.oauth_service().store
    for u in users:
        at, rt = rot.auth.seed(u)
        key = first.runtime.oauth_service().key(first.runtime.provider("rot"), u)
        store.put(key, TokenSet(at, rt, expires_at=time.time() - 1), now=time.time())
    conns = [remotetables.connect(":memory:", runtime=first.runtime, user=u) for u in users]
    errors = []
    for c in conns:
        with pytest.raises(ProviderUnavailable) as info:
            rows_of(c)
        errors.append(str(info.value))
    threshold = first.runtime.oauth_service().breaker(first.runtime.provider("rot")).threshold
    assert outage.hits == threshold  # 10 users, only `threshold` token requests
    assert sum("not asking it again" in e for e in errors) == len(users) - threshold
    clock.offset += 31  # cooldown over: one probe goes through (half-open)
    with pytest.raises(ProviderUnavailable):
        rows_of(conns[0])
    with pytest.raises(ProviderUnavailable, match="not asking it again"):
        rows_of(conns[1])
    assert outage.hits == threshold + 1
    outage.close()
    for c in conns:
        c.close()
    first.close()


# ----------------------------------------------------------------------------- F12


def test_f12_no_expiry_and_no_new_refresh_token(tmp_path: Path) -> None:
    env = RotatingEnv(tmp_path, include_refresh_token=False)
    try:
        conn = remotetables.connect(":memory:", config=env.config(), user="alice")
        rt0 = env.seed(conn, expires_in=None)  # no expires_in: used until a 401
        assert rows_of(conn)
        assert env.auth.refresh_calls == 0
        make_refresher(env.auth.token_url, env.auth.client_id)(rt0)  # the AT dies server-side
        assert rows_of(conn)  # 401 -> one refresh -> retry
        assert env.auth.refresh_calls == 2
        rec = conn.runtime.oauth_service().store.get(env.key())
        assert rec is not None and rec.tokens is not None
        assert rec.tokens.refresh_token == rt0  # the response had none: the old RT is kept
        assert rec.tokens.access_token == env.auth.family_of(rt0).access_token
        conn.close()
    finally:
        env.close()


# ----------------------------------------------------------------------------- F13


@pytest.mark.parametrize("skew", [-600.0, 600.0])
def test_f13_clock_skew_uses_local_receipt_time(env: DemoEnv, skew: float) -> None:
    clock = Clock(skew)
    conn = env.connect("alice", clock=clock)
    expected = rows_of(conn)
    rec = env.record(conn, "alice")
    assert rec is not None and rec.tokens is not None and rec.tokens.expires_at is not None
    assert abs(rec.tokens.expires_at - (clock() + 3600)) < 60  # local time + expires_in
    refreshes = env.auth.stats.refreshes
    assert rows_of(conn) == expected and env.auth.stats.refreshes == refreshes
    clock.offset += 3600 - 30  # suspend/resume: inside the leeway -> one proactive refresh
    assert rows_of(conn) == expected and env.auth.stats.refreshes == refreshes + 1
    env.auth.expire_access_tokens()  # the AS thinks otherwise: the 401 path still works
    assert rows_of(conn) == expected and env.auth.stats.refreshes == refreshes + 2
    conn.close()


# ----------------------------------------------------------------------------- F15
# Also: tests/auth/test_store.py::test_copied_ciphertext_makes_row_needs_consent,
# ::test_flipped_byte_makes_row_needs_consent, ::test_wrong_key_gives_needs_consent_not_crash;
# tests/auth/test_manager.py::test_commit_failure_keeps_tokens_in_memory_and_raises_loudly.


def _tamper(db: Path, sql: str, *args: object) -> None:
    # apsw, not the stdlib sqlite3: two SQLite libraries in one process break POSIX locks
    raw = apsw.Connection(str(db))
    raw.set_busy_timeout(5000)
    with raw:
        raw.execute(sql, args)
    raw.close()


def test_f15_flipped_byte_is_needs_consent_through_sql(env: DemoEnv) -> None:
    conn = env.connect("alice")
    expected = rows_of(conn)
    db = env.tmp / "tokens.db"
    raw = apsw.Connection(str(db))
    (blob,) = raw.execute("SELECT access_token FROM oauth_token WHERE subject='alice'").fetchone()
    raw.close()
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x01
    _tamper(db, "UPDATE oauth_token SET access_token=? WHERE subject='alice'", bytes(flipped))
    # this process keeps alice's own access token in memory until it is due: no store read
    assert rows_of(conn) == expected and env.consent.calls == ["alice"]
    # a process that reads the store: no crash, the row is treated as needing consent
    again = env.connect("alice")
    assert rows_of(again) == expected
    assert env.consent.calls == ["alice", "alice"]
    conn.close()


def test_f15_row_copied_from_another_user_is_not_used(env: DemoEnv) -> None:
    conn = env.connect("alice")
    alice_rows = rows_of(conn)
    conn.execute("SELECT set_user('bob')")
    bob_rows = rows_of(conn)
    assert only_user(bob_rows, "bob") and bob_rows != alice_rows
    db = env.tmp / "tokens.db"
    _tamper(
        db,
        "UPDATE oauth_token SET (access_token, refresh_token) = "
        "(SELECT access_token, refresh_token FROM oauth_token WHERE subject='alice') "
        "WHERE subject='bob'",
    )
    env.api.clear_requests()
    # this process keeps bob's own access token in memory until it is due: no store read
    assert rows_of(conn) == bob_rows and env.consent.calls == ["alice", "bob"]
    fresh = env.connect("bob")  # a process that reads the store
    assert rows_of(fresh) == bob_rows  # bob consents again; never alice's rows
    assert env.consent.calls == ["alice", "bob", "bob"]
    assert {r.user for r in env.api.requests} == {"bob"}
    _tamper(
        db,
        "UPDATE oauth_token SET refresh_token = "
        "(SELECT refresh_token FROM oauth_token WHERE subject='alice'), expires_at = 0 "
        "WHERE subject='bob'",
    )
    with pytest.raises(ConsentRequired):
        rows_of(env.connect("bob", consent="raise"))
    conn.close()


def test_f15_busy_token_store_waits_instead_of_failing(env: DemoEnv) -> None:
    conn = env.connect("alice")
    expected = rows_of(conn)
    env.expire_stored(conn, "alice")  # the next query must write the store
    locker = apsw.Connection(str(env.tmp / "tokens.db"))
    locker.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.5, lambda: locker.execute("ROLLBACK"))
    release.start()
    assert rows_of(conn) == expected  # the store's busy_timeout waits for the lock
    release.join()
    locker.close()
    conn.close()


# ----------------------------------------------------------------------------- F17


def test_f17_logout_revokes_and_deletes(env: DemoEnv) -> None:
    conn = env.connect("alice")
    rows_of(conn)
    rec = env.record(conn, "alice")
    assert rec is not None and rec.tokens is not None
    at = rec.tokens.access_token
    svc = conn.runtime.oauth_service()
    assert svc.logout(conn.runtime.provider("demo"), "alice") is True
    assert env.auth.stats.revocations >= 1
    assert env.record(conn, "alice") is None
    assert env.auth.validate_token(at) is None  # the grant is gone at the AS too
    conn.close()


def test_f17_logout_during_revocation_outage_queues_the_revocation(env: DemoEnv) -> None:
    conn = env.connect("alice")
    rows_of(conn)
    outage = OutageAS("503")
    text = (
        env.config()
        .read_text()
        .replace(
            'scopes = ["incidents.read"]',
            f'scopes = ["incidents.read"]\nrevocation_endpoint = "{outage.url}/revoke"',
        )
    )
    cfg = env.tmp / "revoke-outage.toml"
    cfg.write_text(text)
    conn2 = env.connect("alice", config=cfg)
    svc = conn2.runtime.oauth_service()
    provider = conn2.runtime.provider("demo")
    assert svc.logout(provider, "alice") is False
    assert outage.hits == 2  # RT, then the AT as a fallback
    # the user asked: the grant is unusable at once; it is kept (encrypted) only to retry the
    # revocation, and a query as alice asks for consent again
    rec = env.record(conn2, "alice")
    assert rec is not None and rec.status == "revoked" and rec.last_error == "revocation pending"
    infos = [i for i in svc.tokens() if i.subject == "alice"]
    assert [i.status for i in infos] == ["revoked"]
    # still down: the retry keeps it queued
    assert svc.retry_revocations(provider) == 0
    assert outage.hits == 4
    # the provider is back: the queued revocation goes through and the row is gone
    outage.mode = "ok_revoke"
    assert svc.retry_revocations(provider) == 1
    assert outage.hits == 5 and env.record(conn2, "alice") is None
    outage.close()
    conn2.close()
    conn.close()


def test_fingerprints_only_in_request_log(env: DemoEnv) -> None:
    conn = env.connect("alice")
    rows_of(conn)
    rec = env.record(conn, "alice")
    assert rec is not None and rec.tokens is not None
    fp = token_fingerprint(rec.tokens.access_token)
    assert {r.token_fp for r in env.api.requests} == {fp}
    conn.close()
