"""One TokenStore suite, run against MemoryTokenStore, SQLiteTokenStore and PostgresTokenStore.

The protocol cases of tests/auth/test_store.py are imported and run here with this module's
``store`` fixture; the cases below add what matters across processes and hosts: two store
instances on one backend (two hosts), lease races between them, key binding, migration.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remotetables.auth.store import (
    ConsentLease,
    ConsentLeases,
    MemoryTokenStore,
    SQLiteTokenStore,
    TokenKey,
    TokenStore,
)
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.migrate import MigrationResult, export_records, migrate_tokens
from remotetables.errors import LeaseLostError, TokenStoreError, UnknownKeyError
from tests.auth.store.test_sqlite import (  # the shared protocol cases, run with our fixture
    ALICE,
    BOB,
    pending,
    test_commit_refresh_rotates_and_keeps_old_rt_if_none,
    test_lease_is_exclusive_and_versioned,
    test_lease_race_between_threads_has_one_winner,
    test_mark_needs_consent_wipes_tokens,
    test_pending_expiry,
    test_pending_from_another_web_session_is_left_in_place,
    test_pending_is_single_use,
    test_pending_without_a_web_session_is_not_taken_by_one,
    test_put_get_list,
    tokens,
)
from tests.pg import PostgresServer, pg_server_fixture  # noqa: F401  (fixtures)

__all__ = [
    "test_commit_refresh_rotates_and_keeps_old_rt_if_none",
    "test_lease_is_exclusive_and_versioned",
    "test_lease_race_between_threads_has_one_winner",
    "test_mark_needs_consent_wipes_tokens",
    "test_pending_expiry",
    "test_pending_from_another_web_session_is_left_in_place",
    "test_pending_is_single_use",
    "test_pending_without_a_web_session_is_not_taken_by_one",
    "test_put_get_list",
]

KINDS = ["memory", "sqlite", "postgres"]
Opener = Callable[[TokenCipher], TokenStore]


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher.from_key(os.urandom(32))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another store instance on the same backend (for memory: the same instance)."""
    opened: list[TokenStore] = []
    if kind == "memory":
        shared = MemoryTokenStore()

        def open_memory(cipher: TokenCipher) -> TokenStore:
            return shared

        yield open_memory
        shared.close()
        return
    if kind == "sqlite":
        path = tmp_path / "state" / "tokens.db"

        def open_sqlite(cipher: TokenCipher) -> TokenStore:
            s = SQLiteTokenStore(path, cipher)
            opened.append(s)
            return s

        yield open_sqlite
    else:
        from remotetables.auth.store.postgres import PostgresTokenStore

        server: PostgresServer = request.getfixturevalue("pg_server")
        url = server.create_database()

        def open_pg(cipher: TokenCipher) -> TokenStore:
            s = PostgresTokenStore(url, cipher, pool_size=4)
            opened.append(s)
            return s

        yield open_pg
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Opener, cipher: TokenCipher) -> TokenStore:
    return opener(cipher)


# ----------------------------------------------------------------------------- two instances


def test_second_instance_sees_writes_and_leases(
    kind: str, opener: Opener, cipher: TokenCipher
) -> None:
    """Two hosts: a write or lease by one instance is visible to the other at once."""
    a, b = opener(cipher), opener(cipher)
    v = a.put(ALICE, tokens(1), now=0.0)
    rec = b.get(ALICE)
    assert rec is not None and rec.tokens == tokens(1) and rec.version == v
    assert b.try_lease(ALICE, version=v, owner="host-b", now=1.0, lease_seconds=30)
    assert not a.try_lease(ALICE, version=v, owner="host-a", now=2.0, lease_seconds=30)
    with pytest.raises(LeaseLostError):
        a.commit_refresh(ALICE, owner="host-a", tokens=tokens(9), now=3.0)
    assert b.commit_refresh(ALICE, owner="host-b", tokens=tokens(2), now=3.0) == v + 1
    rec = a.get(ALICE)
    assert rec is not None and rec.tokens == tokens(2) and rec.lease_owner is None


def test_lease_race_between_instances_has_one_winner(opener: Opener, cipher: TokenCipher) -> None:
    stores = [opener(cipher) for _ in range(4)]
    v = stores[0].put(ALICE, tokens(1), now=0.0)
    rounds = 5
    winners: list[list[str]] = [[] for _ in range(rounds)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def contender(i: int) -> None:
        s = stores[i % len(stores)]
        try:
            for r in range(rounds):
                barrier.wait(timeout=30)
                if s.try_lease(ALICE, version=v + r, owner=f"o{i}", now=1.0, lease_seconds=30):
                    winners[r].append(f"o{i}")
                    s.commit_refresh(ALICE, owner=f"o{i}", tokens=tokens(r + 2), now=2.0)
                barrier.wait(timeout=30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert [len(w) for w in winners] == [1] * rounds
    rec = stores[1].get(ALICE)
    assert rec is not None and rec.version == v + rounds and rec.tokens == tokens(rounds + 1)


def test_pending_taken_once_across_instances(opener: Opener, cipher: TokenCipher) -> None:
    a, b = opener(cipher), opener(cipher)
    a.save_pending(pending("st-1"))
    with pytest.raises(TokenStoreError):  # a duplicate state is refused (message differs)
        b.save_pending(pending("st-1"))
    got = b.take_pending("st-1", now=1.0)
    assert got is not None and got.code_verifier == "v" * 64
    assert a.take_pending("st-1", now=1.0) is None


def test_other_key_cannot_read_rows(kind: str, opener: Opener, cipher: TokenCipher) -> None:
    if kind == "memory":
        pytest.skip("the memory store keeps no ciphertext")
    opener(cipher).put(ALICE, tokens(1), now=0.0)
    other = opener(TokenCipher.from_key(os.urandom(32)))
    with pytest.raises(UnknownKeyError, match="key_file"):
        other.get(ALICE)
    rec = opener(cipher).get(ALICE)  # nothing was wiped: the right key still reads it
    assert rec is not None and rec.status == "active" and rec.tokens is not None


def test_needs_consent_row_blocks_lease_everywhere(opener: Opener, cipher: TokenCipher) -> None:
    a, b = opener(cipher), opener(cipher)
    v = a.put(BOB, tokens(1), now=0.0)
    b.mark_needs_consent(BOB, reason="invalid_grant", now=1.0)
    assert not a.try_lease(BOB, version=v, owner="x", now=2.0, lease_seconds=30)
    assert not a.try_lease(BOB, version=v + 1, owner="x", now=2.0, lease_seconds=30)
    info = {i.subject: i for i in a.list()}["bob"]
    assert info.status == "needs_consent" and not info.has_refresh_token


def test_revoked_row_keeps_tokens_only_for_revocation(opener: Opener, cipher: TokenCipher) -> None:
    a, b = opener(cipher), opener(cipher)
    v = a.put(BOB, tokens(1), now=0.0)
    b.mark_revoked(BOB, reason="revocation pending", now=1.0)
    rec = a.get(BOB)
    assert rec is not None and rec.status == "revoked" and rec.version == v + 1
    assert rec.tokens is not None and rec.tokens.refresh_token is not None  # for the retry
    assert not a.try_lease(BOB, version=v + 1, owner="x", now=2.0, lease_seconds=30)
    assert {i.subject: i.status for i in a.list()}["bob"] == "revoked"
    a.put(BOB, tokens(2), now=3.0)  # a new consent replaces it
    rec = b.get(BOB)
    assert rec is not None and rec.status == "active"


# ----------------------------------------------------------------------------- migration


def test_migrate_into_this_store(kind: str, store: TokenStore, tmp_path: Path) -> None:
    """SQLite -> this store: active grants moved, others skipped, existing ones kept."""
    src_cipher = TokenCipher.from_key(os.urandom(32))
    src = SQLiteTokenStore(tmp_path / "src" / "tokens.db", src_cipher)
    carol = TokenKey("github", "cli", "carol")
    src.put(ALICE, tokens(1), now=5.0)
    src.put(BOB, tokens(2, rt=False), now=6.0)
    src.put(carol, tokens(3), now=7.0)
    src.mark_needs_consent(carol, reason="invalid_grant", now=8.0)
    store.put(BOB, tokens(22), now=4.0)  # already there (older than the source's): kept
    result = MigrationResult()
    assert migrate_tokens(src, store, result=result) == 1
    assert (result.moved, result.skipped_existing, result.skipped_inactive) == (
        [ALICE],
        [BOB],
        [carol],
    )
    alice = store.get(ALICE)
    assert alice is not None and alice.tokens == tokens(1) and alice.status == "active"
    bob = store.get(BOB)
    assert bob is not None and bob.tokens == tokens(22)
    assert store.get(carol) is None
    assert migrate_tokens(src, store, overwrite=True) == 2
    bob = store.get(BOB)
    assert bob is not None and bob.tokens == tokens(2, rt=False)
    assert [r.key for r in export_records(store)] == [ALICE, BOB]
    store.put(BOB, tokens(23), now=99.0)  # updated here since (e.g. rotated): never replaced
    again = MigrationResult()
    assert migrate_tokens(src, store, overwrite=True, result=again) == 1
    assert (again.moved, again.kept_newer) == ([ALICE], [BOB])
    bob = store.get(BOB)
    assert bob is not None and bob.tokens == tokens(23)
    src.close()


# ----------------------------------------------------------------------------- consent lease


def test_consent_lease_is_exclusive_until_ended_or_run_out(
    opener: Opener, cipher: TokenCipher
) -> None:
    a, b = opener(cipher), opener(cipher)
    assert isinstance(a, ConsentLeases) and isinstance(b, ConsentLeases)
    assert a.consent_lease(ALICE) is None
    assert a.try_consent_lease(ALICE, owner="host-a", now=1.0, lease_seconds=30)
    assert not b.try_consent_lease(ALICE, owner="host-b", now=2.0, lease_seconds=30)
    assert b.try_consent_lease(BOB, owner="host-b", now=2.0, lease_seconds=30)  # per grant
    assert b.consent_lease(ALICE) == ConsentLease("host-a", 31.0, None, None)
    b.end_consent_lease(ALICE, owner="host-b", now=3.0, error="not mine")  # not the holder
    assert b.consent_lease(ALICE) == ConsentLease("host-a", 31.0, None, None)
    a.end_consent_lease(ALICE, owner="host-a", now=4.0, error="access_denied")
    assert b.consent_lease(ALICE) == ConsentLease(None, None, 4.0, "access_denied")
    assert b.try_consent_lease(ALICE, owner="host-b", now=5.0, lease_seconds=30)
    assert a.consent_lease(ALICE) == ConsentLease("host-b", 35.0, 4.0, None)
    # a holder that never comes back: its lease runs out
    assert not a.try_consent_lease(ALICE, owner="host-a", now=35.0, lease_seconds=30)
    assert a.try_consent_lease(ALICE, owner="host-a", now=35.5, lease_seconds=30)


def test_consent_lease_race_has_one_winner(opener: Opener, cipher: TokenCipher) -> None:
    stores = [opener(cipher) for _ in range(4)]
    winners: list[str] = []
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def contender(i: int) -> None:
        s = stores[i % len(stores)]
        assert isinstance(s, ConsentLeases)
        try:
            barrier.wait(timeout=30)
            if s.try_consent_lease(ALICE, owner=f"o{i}", now=1.0, lease_seconds=30):
                winners.append(f"o{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(winners) == 1


# ----------------------------------------------------------------------------- issue 23 #3


@pytest.mark.parametrize("kind", ["sqlite", "postgres"], indirect=True)
def test_a_store_refuses_writes_under_another_key(
    kind: str, opener: Opener, cipher: TokenCipher
) -> None:
    """The store records its key's fingerprint (a keyed hash) when created; a host with another
    key reads nothing and writes nothing, and says which key the store wants."""
    from remotetables.auth.store.crypto import key_fingerprint
    from remotetables.auth.store.rows import EncryptedRows
    from remotetables.errors import KeyMismatchError

    right = opener(cipher)
    v = right.put(ALICE, tokens(1), now=1.0)
    wrong = opener(TokenCipher.from_key(os.urandom(32)))
    for write in (
        lambda: wrong.put(BOB, tokens(2), now=2.0),
        lambda: wrong.save_pending(pending("s-1")),
    ):
        with pytest.raises(KeyMismatchError, match="created with another encryption key"):
            write()
    with pytest.raises(UnknownKeyError):
        wrong.get(ALICE)
    assert wrong.try_lease(ALICE, version=v, owner="w", lease_seconds=30)
    with pytest.raises(KeyMismatchError):
        wrong.commit_refresh(ALICE, owner="w", tokens=tokens(9), now=3.0)
    assert isinstance(wrong, EncryptedRows) and isinstance(right, EncryptedRows)
    assert "another encryption key" in (wrong.check_key() or "")
    assert right.check_key() is None
    assert [i.subject for i in right.list()] == ["alice"]
    rec = right.get(ALICE)
    assert rec is not None and rec.tokens == tokens(1)
    # the fingerprint is a keyed hash: the key is not derivable from it
    fp = key_fingerprint(bytes(32))
    assert len(fp) == 32 and bytes(32).hex() not in fp


def test_a_store_made_before_fingerprints_adopts_the_key_of_its_rows(
    tmp_path: Path, cipher: TokenCipher
) -> None:
    import apsw

    path = tmp_path / "state" / "tokens.db"
    first = SQLiteTokenStore(path, cipher)
    first.put(ALICE, tokens(1), now=1.0)
    first.close()
    conn = apsw.Connection(str(path))  # as an older version left it: no fingerprint
    conn.execute("DELETE FROM meta WHERE k = 'key_fingerprint'")
    conn.close()
    other = SQLiteTokenStore(path, TokenCipher.from_key(os.urandom(32)))
    assert "another encryption key" in (other.check_key() or "")
    other.close()
    again = SQLiteTokenStore(path, cipher)  # the key of its rows: recorded from now on
    assert again.check_key() is None
    again.put(BOB, tokens(2), now=2.0)
    again.close()
