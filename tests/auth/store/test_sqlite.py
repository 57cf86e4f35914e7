"""TokenStore semantics (memory and SQLite), file permissions, tamper handling."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import apsw
import pytest

from remotetables.auth.store import (
    MemoryTokenStore,
    PendingAuth,
    SQLiteTokenStore,
    TokenKey,
    TokenSet,
    TokenStore,
)
from remotetables.auth.store.crypto import TokenCipher
from remotetables.errors import ConsentFailed, LeaseLostError, TokenStoreError, UnknownKeyError

ALICE = TokenKey("github", "cli", "alice")
BOB = TokenKey("github", "cli", "bob")


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher.from_key(os.urandom(32))


@pytest.fixture(params=["memory", "sqlite"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, cipher: TokenCipher
) -> Iterator[TokenStore]:
    s: TokenStore
    if request.param == "memory":
        s = MemoryTokenStore()
    else:
        s = SQLiteTokenStore(tmp_path / "tokens" / "tokens.db", cipher)
    yield s
    s.close()


def tokens(n: int, *, rt: bool = True, expires_at: float | None = 1000.0) -> TokenSet:
    return TokenSet(f"at-{n}", f"rt-{n}" if rt else None, scope="read", expires_at=expires_at)


def test_put_get_list(store: TokenStore) -> None:
    assert store.get(ALICE) is None
    assert store.put(ALICE, tokens(1), now=10.0) == 1
    assert store.put(ALICE, tokens(2), now=11.0) == 2
    rec = store.get(ALICE)
    assert rec is not None and rec.tokens == tokens(2)
    assert (rec.version, rec.status, rec.updated_at, rec.lease_owner) == (2, "active", 11.0, None)
    store.put(BOB, tokens(3, rt=False), now=12.0)
    infos = store.list()
    assert [(i.subject, i.has_refresh_token, i.scope) for i in infos] == [
        ("alice", True, "read"),
        ("bob", False, "read"),
    ]
    assert "at-" not in repr(infos) and "rt-" not in repr(infos)
    store.delete(ALICE)
    assert store.get(ALICE) is None


def test_reprs_hide_secrets() -> None:
    text = repr(TokenSet("at-secret", "rt-secret")) + repr(
        PendingAuth("st-secret", "p", "c", "s", "http://127.0.0.1/cb", "ver-secret", None, 0, 1)
    )
    assert "secret" not in text


def test_lease_is_exclusive_and_versioned(store: TokenStore) -> None:
    v = store.put(ALICE, tokens(1), now=0.0)
    assert not store.try_lease(ALICE, version=v + 1, owner="a", now=1.0, lease_seconds=30)
    assert store.try_lease(ALICE, version=v, owner="a", now=1.0, lease_seconds=30)
    assert not store.try_lease(ALICE, version=v, owner="b", now=2.0, lease_seconds=30)
    rec = store.get(ALICE)
    assert rec is not None and (rec.lease_owner, rec.lease_until) == ("a", 31.0)
    # an expired lease can be taken over
    assert store.try_lease(ALICE, version=v, owner="b", now=31.5, lease_seconds=30)
    with pytest.raises(LeaseLostError):
        store.commit_refresh(ALICE, owner="a", tokens=tokens(2), now=32.0)
    store.release_lease(ALICE, owner="a", error="x")  # not the holder: no effect
    rec = store.get(ALICE)
    assert rec is not None and rec.lease_owner == "b"
    store.release_lease(ALICE, owner="b", error="temporarily_unavailable")
    rec = store.get(ALICE)
    assert rec is not None and rec.lease_owner is None
    assert rec.last_error == "temporarily_unavailable" and rec.tokens == tokens(1)
    assert rec.version == v


def test_lease_race_between_threads_has_one_winner(store: TokenStore) -> None:
    v = store.put(ALICE, tokens(1), now=0.0)
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def contender(i: int) -> None:
        barrier.wait(timeout=10)
        if store.try_lease(ALICE, version=v, owner=f"o{i}", now=1.0, lease_seconds=30):
            wins.append(f"o{i}")

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1


def test_commit_refresh_rotates_and_keeps_old_rt_if_none(store: TokenStore) -> None:
    v = store.put(ALICE, tokens(1), now=0.0)
    assert store.try_lease(ALICE, version=v, owner="a", now=1.0, lease_seconds=30)
    assert store.commit_refresh(ALICE, owner="a", tokens=tokens(2), now=2.0) == v + 1
    rec = store.get(ALICE)
    assert rec is not None and rec.tokens == tokens(2) and rec.lease_owner is None
    assert store.try_lease(ALICE, version=v + 1, owner="b", now=3.0, lease_seconds=30)
    no_rt = TokenSet("at-3", None, expires_at=2000.0)  # no RT, no scope in the response
    assert store.commit_refresh(ALICE, owner="b", tokens=no_rt, now=4.0) == v + 2
    rec = store.get(ALICE)
    assert rec is not None and rec.tokens is not None
    assert (rec.tokens.access_token, rec.tokens.refresh_token) == ("at-3", "rt-2")
    assert rec.tokens.scope == "read" and rec.tokens.expires_at == 2000.0
    # without a lease, no commit
    with pytest.raises(LeaseLostError):
        store.commit_refresh(ALICE, owner="b", tokens=tokens(9), now=5.0)


def test_mark_needs_consent_wipes_tokens(store: TokenStore) -> None:
    v = store.put(ALICE, tokens(1), now=0.0)
    store.try_lease(ALICE, version=v, owner="a", now=1.0, lease_seconds=30)
    store.mark_needs_consent(ALICE, reason="invalid_grant", now=2.0)
    rec = store.get(ALICE)
    assert rec is not None
    assert (rec.tokens, rec.status, rec.last_error, rec.lease_owner) == (
        None,
        "needs_consent",
        "invalid_grant",
        None,
    )
    assert not store.try_lease(ALICE, version=rec.version, owner="a", now=3.0, lease_seconds=30)
    info = store.list()[0]
    assert info.status == "needs_consent" and not info.has_refresh_token
    assert info.reason == "invalid_grant"  # what `tokens` shows beside the status
    # consent again: active
    store.put(ALICE, tokens(5), now=4.0)
    rec = store.get(ALICE)
    assert rec is not None and rec.status == "active" and rec.last_error is None
    assert store.list()[0].reason is None


def pending(state: str = "state-1", *, expires_at: float = 600.0) -> PendingAuth:
    return PendingAuth(
        state=state,
        provider="github",
        client_id="cli",
        subject="alice",
        redirect_uri="http://127.0.0.1:5555/callback",
        code_verifier="v" * 64,
        issuer="https://github.com",
        created_at=0.0,
        expires_at=expires_at,
        web_session="sess",
    )


def test_pending_is_single_use(store: TokenStore) -> None:
    store.save_pending(pending())
    assert store.take_pending("wrong", now=1.0) is None
    got = store.take_pending("state-1", now=1.0)
    assert got is not None
    assert (got.code_verifier, got.issuer, got.web_session, got.state) == (
        "v" * 64,
        "https://github.com",
        "sess",
        "state-1",
    )
    assert store.take_pending("state-1", now=1.0) is None


def test_pending_from_another_web_session_is_left_in_place(store: TokenStore) -> None:
    """RFC 9700 §2.1.1: a callback from the wrong web session neither takes the transaction
    nor uses it up; the session that started it takes it, once."""
    store.save_pending(pending())  # started from web session "sess"
    for other in ("other", "", "sess "):
        with pytest.raises(ConsentFailed, match="another session") as info:
            store.take_pending("state-1", now=1.0, web_session=other)
        assert (info.value.provider, info.value.user) == ("github", "alice")
    got = store.take_pending("state-1", now=1.0, web_session="sess")
    assert got is not None and got.code_verifier == "v" * 64
    assert store.take_pending("state-1", now=1.0, web_session="sess") is None
    assert store.take_pending("state-1", now=1.0) is None


def test_pending_without_a_web_session_is_not_taken_by_one(store: TokenStore) -> None:
    store.save_pending(replace(pending("state-2"), web_session=None))
    with pytest.raises(ConsentFailed, match="another session"):
        store.take_pending("state-2", now=1.0, web_session="sess")
    assert store.take_pending("state-2", now=1.0) is not None


def test_pending_expiry(store: TokenStore) -> None:
    store.save_pending(pending(expires_at=600.0))
    assert store.take_pending("state-1", now=600.0) is None
    assert store.take_pending("state-1", now=1.0) is None  # expired use still consumed it


# ----------------------------------------------------------------------------- SQLite only


def test_sqlite_file_and_dir_modes(tmp_path: Path, cipher: TokenCipher) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "tokens.db"
        s = SQLiteTokenStore(path, cipher)
        s.put(ALICE, tokens(1), now=0.0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for p in path.parent.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert {p.name for p in path.parent.iterdir()} >= {"tokens.db", "tokens.db-wal"}
    # the raw file holds no token material
    s.close()
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"at-1" not in raw and b"rt-1" not in raw


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_sqlite_refuses_group_or_world_readable_file(
    tmp_path: Path, cipher: TokenCipher, mode: int
) -> None:
    path = tmp_path / "tokens.db"
    SQLiteTokenStore(path, cipher).close()
    path.chmod(mode)
    with pytest.raises(TokenStoreError, match=str(path)):
        SQLiteTokenStore(path, cipher)


def test_sqlite_refuses_foreign_owner_and_shared_dir(tmp_path: Path, cipher: TokenCipher) -> None:
    path = tmp_path / "tokens.db"
    SQLiteTokenStore(path, cipher).close()
    os.chown(path, os.getuid() + 4242, -1)
    with pytest.raises(TokenStoreError, match="owned by uid"):
        SQLiteTokenStore(path, cipher)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(TokenStoreError, match="refusing directory"):
        SQLiteTokenStore(shared / "tokens.db", cipher)


def _raw(path: Path) -> apsw.Connection:
    return apsw.Connection(str(path))


def test_copied_ciphertext_makes_row_needs_consent(tmp_path: Path, cipher: TokenCipher) -> None:
    """Someone with write access but no key copies Alice's tokens into Bob's row."""
    path = tmp_path / "tokens.db"
    s = SQLiteTokenStore(path, cipher)
    s.put(ALICE, tokens(1), now=0.0)
    s.put(BOB, tokens(2), now=0.0)
    raw = _raw(path)
    raw.execute(
        "UPDATE oauth_token SET access_token = (SELECT access_token FROM oauth_token WHERE"
        " subject = 'alice'), refresh_token = (SELECT refresh_token FROM oauth_token WHERE"
        " subject = 'alice') WHERE subject = 'bob'"
    )
    raw.close()
    rec = s.get(BOB)
    assert rec is not None
    assert (rec.tokens, rec.status) == (None, "needs_consent")
    assert rec.last_error is not None and rec.last_error.startswith("corrupt")
    again = s.get(BOB)  # marked in the store, not just in this answer
    assert again is not None and again.status == "needs_consent" and again.tokens is None
    alice = s.get(ALICE)
    assert alice is not None and alice.tokens == tokens(1)
    s.close()


@pytest.mark.parametrize("column", ["access_token", "refresh_token"])
def test_flipped_byte_makes_row_needs_consent(
    tmp_path: Path, cipher: TokenCipher, column: str
) -> None:
    path = tmp_path / "tokens.db"
    s = SQLiteTokenStore(path, cipher)
    s.put(ALICE, tokens(1), now=0.0)
    raw = _raw(path)
    (blob,) = next(raw.execute(f"SELECT {column} FROM oauth_token"))
    damaged = bytearray(blob)
    damaged[-1] ^= 0x80
    raw.execute(f"UPDATE oauth_token SET {column} = ?", (bytes(damaged),))
    raw.close()
    rec = s.get(ALICE)
    assert rec is not None and rec.status == "needs_consent" and rec.tokens is None
    s.close()


def test_wrong_key_is_a_clear_error_and_wipes_nothing(tmp_path: Path, cipher: TokenCipher) -> None:
    path = tmp_path / "tokens.db"
    SQLiteTokenStore(path, cipher).put(ALICE, tokens(1), now=0.0)
    other = SQLiteTokenStore(path, TokenCipher.from_key(os.urandom(32)))
    with pytest.raises(UnknownKeyError, match="key_file"):
        other.get(ALICE)
    other.close()
    rec = SQLiteTokenStore(path, cipher).get(ALICE)  # the right key still reads the grant
    assert rec is not None and rec.status == "active" and rec.tokens is not None


def test_pending_stores_only_hash_and_ciphertext(tmp_path: Path, cipher: TokenCipher) -> None:
    path = tmp_path / "tokens.db"
    s = SQLiteTokenStore(path, cipher)
    s.save_pending(pending("state-XYZ"))
    raw = _raw(path)
    row = next(raw.execute("SELECT state_hash, code_verifier FROM oauth_pending"))
    raw.close()
    assert b"state-XYZ" not in row[0] and b"v" * 64 not in row[1]
    assert s.take_pending("state-XYZ", now=1.0) is not None
    s.close()


def test_schema_version_and_reopen(tmp_path: Path, cipher: TokenCipher) -> None:
    path = tmp_path / "tokens.db"
    SQLiteTokenStore(path, cipher).put(ALICE, tokens(1), now=0.0)
    s = SQLiteTokenStore(path, cipher)
    rec = s.get(ALICE)
    assert rec is not None and rec.tokens == tokens(1)
    s.close()
    raw = _raw(path)
    raw.execute("UPDATE meta SET v = '99' WHERE k = 'schema_version'")
    raw.close()
    with pytest.raises(TokenStoreError, match="schema version"):
        SQLiteTokenStore(path, cipher)


def test_closed_store_raises(tmp_path: Path, cipher: TokenCipher) -> None:
    s = SQLiteTokenStore(tmp_path / "tokens.db", cipher)
    s.close()
    with pytest.raises(TokenStoreError, match="closed"):
        s.get(ALICE)


def test_each_thread_gets_its_own_connection(tmp_path: Path, cipher: TokenCipher) -> None:
    s = SQLiteTokenStore(tmp_path / "tokens.db", cipher)
    s.put(ALICE, tokens(1), now=0.0)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                rec = s.get(ALICE)
                assert rec is not None and rec.tokens is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    s.close()
