"""The account a grant belongs to, in every token store: kept with the grant (encrypted and bound
to its row, like the tokens), across refreshes, in ``list()``; and the last user who signed in
through a provider's consent. Schema 1 stores are upgraded in place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from remotetables.auth.store import (
    SCHEMA_VERSION,
    Account,
    MemoryTokenStore,
    SQLiteTokenStore,
    TokenKey,
    TokenSet,
    TokenStore,
)
from remotetables.auth.store.crypto import TokenCipher
from tests.pg import PostgresServer, pg_server_fixture  # noqa: F401  (fixtures)

ALICE = TokenKey("https://idp.example", "cli", "alice")
BOB = TokenKey("https://idp.example", "cli", "bob")
ACCOUNT = Account("alice@example.com", "id_token", "sub-1234", "https://idp.example")


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher.from_key(os.urandom(32))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, cipher: TokenCipher
) -> Iterator[TokenStore]:
    s: TokenStore
    if request.param == "memory":
        s = MemoryTokenStore()
    elif request.param == "sqlite":
        s = SQLiteTokenStore(tmp_path / "state" / "tokens.db", cipher)
    else:
        from remotetables.auth.store.postgres import PostgresTokenStore

        server: PostgresServer = request.getfixturevalue("pg_server")
        s = PostgresTokenStore(server.create_database(), cipher, pool_size=2)
    try:
        yield s
    finally:
        s.close()


def grant(n: int, account: Account | None = ACCOUNT) -> TokenSet:
    return TokenSet(f"at-{n}", f"rt-{n}", scope="read", expires_at=1000.0, account=account)


def test_the_account_is_kept_with_the_grant_and_across_refreshes(store: TokenStore) -> None:
    store.put(ALICE, grant(1), now=1.0)
    store.put(BOB, grant(2, account=None), now=1.0)
    rec = store.get(ALICE)
    assert rec is not None and rec.tokens is not None and rec.tokens.account == ACCOUNT
    assert [(i.subject, i.account) for i in store.list()] == [
        ("alice", "alice@example.com"),
        ("bob", None),
    ]
    # a refresh does not say who signed in: the account stays
    assert store.try_lease(ALICE, version=rec.version, owner="w", now=2.0, lease_seconds=30)
    store.commit_refresh(ALICE, owner="w", tokens=TokenSet("at-3", "rt-3"), now=3.0)
    again = store.get(ALICE)
    assert again is not None and again.tokens is not None and again.tokens.account == ACCOUNT
    # a new consent replaces it (with another account, or none known)
    store.put(ALICE, grant(4, account=None), now=4.0)
    latest = store.get(ALICE)
    assert latest is not None and latest.tokens is not None and latest.tokens.account is None


def test_last_signin_per_provider_and_client(store: TokenStore) -> None:
    assert store.last_signin("https://idp.example", "cli") is None
    store.set_last_signin("https://idp.example", "cli", "alice")
    store.set_last_signin("https://idp.example", "other", "bob")
    assert store.last_signin("https://idp.example", "cli") == "alice"
    assert store.last_signin("https://idp.example", "other") == "bob"
    store.set_last_signin("https://idp.example", "cli", "carol")
    assert store.last_signin("https://idp.example", "cli") == "carol"
    store.set_last_signin("https://idp.example", "cli", None)
    assert store.last_signin("https://idp.example", "cli") is None
    assert store.last_signin("https://idp.example", "other") == "bob"


def test_sqlite_keeps_the_account_encrypted_and_bound_to_its_row(
    tmp_path: Path, cipher: TokenCipher
) -> None:
    path = tmp_path / "state" / "tokens.db"
    s = SQLiteTokenStore(path, cipher)
    s.put(ALICE, grant(1), now=1.0)
    s.put(BOB, grant(2, account=Account("bob@example.com", "id_token")), now=1.0)
    s.close()
    assert b"alice@example.com" not in path.read_bytes()
    raw = apsw.Connection(str(path))
    # bob's account copied onto alice's row does not decrypt there (AAD binds it to bob)
    raw.execute(
        "UPDATE oauth_token SET account = (SELECT account FROM oauth_token WHERE subject = 'bob')"
        " WHERE subject = 'alice'"
    )
    raw.close()
    s = SQLiteTokenStore(path, cipher)
    assert {i.subject: i.account for i in s.list()} == {"alice": "?", "bob": "bob@example.com"}
    rec = s.get(ALICE)  # a tampered row needs consent again, as with a tampered token
    assert rec is not None and rec.status == "needs_consent" and rec.tokens is None
    s.close()


def test_sqlite_schema_1_is_upgraded_in_place(tmp_path: Path, cipher: TokenCipher) -> None:
    path = tmp_path / "state" / "tokens.db"
    SQLiteTokenStore(path, cipher).close()
    raw = apsw.Connection(str(path))  # make it a store as version 1 wrote it
    raw.execute("ALTER TABLE oauth_token DROP COLUMN account")
    raw.execute("UPDATE meta SET v = '1' WHERE k = 'schema_version'")
    raw.execute(
        "INSERT INTO oauth_token (provider, client_id, subject, updated_at, status)"
        " VALUES ('https://idp.example', 'cli', 'carol', 0, 'needs_consent')"
    )
    raw.close()
    s = SQLiteTokenStore(path, cipher)
    assert [(i.subject, i.account) for i in s.list()] == [("carol", None)]
    s.put(ALICE, grant(1), now=1.0)
    rec = s.get(ALICE)
    assert rec is not None and rec.tokens is not None and rec.tokens.account == ACCOUNT
    s.close()
    raw = apsw.Connection(str(path))
    assert next(raw.execute("SELECT v FROM meta WHERE k = 'schema_version'"))[0] == str(
        SCHEMA_VERSION
    )
    raw.close()


def test_account_json_round_trip_and_garbage() -> None:
    assert Account.from_json(ACCOUNT.to_json()) == ACCOUNT
    assert Account.from_json("not json") is None
    assert Account.from_json('{"name": 3}') is None


def test_postgres_schema_1_is_upgraded_in_place(
    pg_server: PostgresServer, cipher: TokenCipher
) -> None:
    import psycopg

    from remotetables.auth.store.postgres import PostgresTokenStore

    url = pg_server.create_database()
    PostgresTokenStore(url, cipher, pool_size=1).close()
    with psycopg.connect(url, autocommit=True) as raw:  # as version 1 left it
        raw.execute("ALTER TABLE oauth_token DROP COLUMN account")
        raw.execute("UPDATE oauth_meta SET v = '1' WHERE k = 'schema_version'")
    s = PostgresTokenStore(url, cipher, pool_size=1)
    try:
        s.put(ALICE, grant(1), now=1.0)
        rec = s.get(ALICE)
        assert rec is not None and rec.tokens is not None and rec.tokens.account == ACCOUNT
    finally:
        s.close()
    with psycopg.connect(url, autocommit=True) as raw:
        row = raw.execute("SELECT v FROM oauth_meta WHERE k = 'schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),)


def test_migrating_a_store_keeps_each_grants_account(tmp_path: Path, cipher: TokenCipher) -> None:
    from remotetables.auth.store.migrate import migrate_tokens

    src = SQLiteTokenStore(tmp_path / "a" / "tokens.db", cipher)
    dst = SQLiteTokenStore(tmp_path / "b" / "tokens.db", TokenCipher.from_key(os.urandom(32)))
    try:
        src.put(ALICE, grant(1), now=1.0)
        assert migrate_tokens(src, dst) == 1
        assert [(i.subject, i.account) for i in dst.list()] == [("alice", "alice@example.com")]
    finally:
        src.close()
        dst.close()
