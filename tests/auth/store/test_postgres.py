"""PostgresTokenStore specifics: ciphertext at rest, tampering, schema, pool, config, migration.

The protocol itself is covered for every store by tests/auth/store/test_contract.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import click.testing
import psycopg
import pytest
from click.testing import CliRunner

import remotetables
from remotetables.auth.store import SQLiteTokenStore, TokenKey
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.auth.store.migrate import migrate_tokens
from remotetables.auth.store.postgres import PostgresTokenStore, redact_url
from remotetables.cli import main
from remotetables.cli.tokens import migrate_to_url
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from remotetables.errors import TokenStoreError
from tests.auth.store.test_sqlite import ALICE, BOB, pending, tokens
from tests.pg import PostgresServer, free_port, pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher.from_key(os.urandom(32))


@pytest.fixture
def store(pg_url: str, cipher: TokenCipher) -> Iterator[PostgresTokenStore]:
    s = PostgresTokenStore(pg_url, cipher)
    yield s
    s.close()


def raw(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def test_only_ciphertext_at_rest(store: PostgresTokenStore, pg_url: str) -> None:
    store.put(ALICE, tokens(1), now=0.0)
    store.save_pending(pending("state-XYZ"))
    dump = repr(raw(pg_url, "SELECT * FROM oauth_token")) + repr(
        raw(pg_url, "SELECT * FROM oauth_pending")
    )
    for secret in ("at-1", "rt-1", "state-XYZ", "v" * 64):
        assert secret not in dump
        assert secret.encode().hex() not in dump
    assert store.take_pending("state-XYZ", now=1.0) is not None


def test_copied_ciphertext_makes_row_needs_consent(store: PostgresTokenStore, pg_url: str) -> None:
    """Someone with write access to the database but no key copies Alice's tokens to Bob."""
    store.put(ALICE, tokens(1), now=0.0)
    store.put(BOB, tokens(2), now=0.0)
    raw(
        pg_url,
        "UPDATE oauth_token SET access_token = a.access_token, refresh_token = a.refresh_token"
        " FROM oauth_token a WHERE a.subject = 'alice' AND oauth_token.subject = 'bob'",
    )
    rec = store.get(BOB)
    assert rec is not None and (rec.tokens, rec.status) == (None, "needs_consent")
    assert rec.last_error is not None and rec.last_error.startswith("corrupt")
    (row,) = raw(pg_url, "SELECT status, access_token FROM oauth_token WHERE subject = 'bob'")
    assert row == ("needs_consent", None)  # marked in the database, not only in the answer
    alice = store.get(ALICE)
    assert alice is not None and alice.tokens == tokens(1)


@pytest.mark.parametrize("column", ["access_token", "refresh_token"])
def test_flipped_byte_makes_row_needs_consent(
    store: PostgresTokenStore, pg_url: str, column: str
) -> None:
    store.put(ALICE, tokens(1), now=0.0)
    raw(
        pg_url,
        f"UPDATE oauth_token SET {column} = overlay({column} placing"
        f" decode(lpad(to_hex(get_byte({column}, length({column}) - 1) # 128), 2, '0'), 'hex')"
        f" from length({column}))",
    )
    rec = store.get(ALICE)
    assert rec is not None and rec.status == "needs_consent" and rec.tokens is None


def test_schema_created_once_by_racing_processes_and_version_checked(
    pg_url: str, cipher: TokenCipher
) -> None:
    errors: list[BaseException] = []
    stores: list[PostgresTokenStore] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            s = PostgresTokenStore(pg_url, cipher, pool_size=1)
            with lock:
                stores.append(s)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(stores) == 8
    for s in stores:
        s.close()
    raw(pg_url, "UPDATE oauth_meta SET v = '99' WHERE k = 'schema_version'")
    with pytest.raises(TokenStoreError, match="schema version"):
        PostgresTokenStore(pg_url, cipher)


def test_pool_is_bounded_and_shared_by_threads(pg_url: str, cipher: TokenCipher) -> None:
    s = PostgresTokenStore(pg_url, cipher, pool_size=2)
    s.put(ALICE, tokens(1), now=0.0)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(30):
                rec = s.get(ALICE)
                assert rec is not None and rec.tokens == tokens(1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    dbname = pg_url.rsplit("/", 1)[1]
    (count,) = raw(
        pg_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        " AND application_name = 'remotetables'",
        (dbname,),
    )
    assert count[0] <= 2
    s.close()
    with pytest.raises(TokenStoreError, match="closed"):
        s.get(ALICE)


def test_forked_child_gets_its_own_connections(store: PostgresTokenStore) -> None:
    store.put(ALICE, tokens(1), now=0.0)
    assert store.get(ALICE) is not None  # the parent has a pooled connection now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            rec = store.get(ALICE)
            store.put(BOB, tokens(2), now=1.0)
            code = 0 if rec is not None and rec.tokens == tokens(1) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    bob = store.get(BOB)  # the parent's own connection still works
    assert bob is not None and bob.tokens == tokens(2)


def test_errors_and_repr_hide_the_password(pg_server: PostgresServer, cipher: TokenCipher) -> None:
    bad = pg_server.url().replace(pg_server.password, "wrong-Secret-pw")
    with pytest.raises(TokenStoreError) as info:
        PostgresTokenStore(bad, cipher, connect_timeout=5)
    assert "wrong-Secret-pw" not in str(info.value) and "***" in str(info.value)
    closed_port = f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x"
    with pytest.raises(TokenStoreError) as info:
        PostgresTokenStore(closed_port, cipher, connect_timeout=5)
    assert "hunter2" not in str(info.value)
    assert redact_url("postgresql://u:p%40ss@[::1]:5/db?sslmode=require") == (
        "postgresql://u:***@[::1]:5/db"
    )
    s = PostgresTokenStore(pg_server.url(), cipher)
    assert pg_server.password not in repr(s)
    s.close()


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Path, TokenCipher]:
    key_file = tmp_path / "token.key"
    key_id, key = load_key(key_file=key_file, use_keyring=False, default_key_file=key_file)
    return key_file, TokenCipher({key_id: key}, key_id)


def _config(write_config: Callable[..., Path], store: str, key_file: Path) -> Path:
    return write_config(
        """
        [settings]
        token_store = "{store}"
        key_file = "{key}"
        [providers.demo]
        issuer = "http://127.0.0.1:9"
        client_id = "remotetables-demo"
        [tables.t]
        provider = "demo"
        url = "http://127.0.0.1:9/t"
        [tables.t.columns]
        a = "TEXT"
        """,
        store=store,
        key=key_file,
    )


def test_config_url_selects_postgres_with_the_configured_key(
    pg_url: str, keyed: tuple[Path, TokenCipher], write_config: Callable[..., Path]
) -> None:
    key_file, cipher = keyed
    cfg = _config(write_config, pg_url, key_file)
    conn = remotetables.connect(":memory:", config=cfg, environ={"REMOTETABLES_NO_KEYRING": "1"})
    try:
        store = conn.runtime.oauth_service().store
        assert isinstance(store, PostgresTokenStore)
        store.put(ALICE, tokens(1), now=0.0)
    finally:
        conn.close()
    other = PostgresTokenStore(pg_url, cipher)  # same key file: readable
    rec = other.get(ALICE)
    assert rec is not None and rec.tokens == tokens(1)
    other.close()


def test_migrate_from_sqlite_to_postgres(
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    key_file, cipher = keyed
    db = tmp_path / "state" / "tokens.db"
    src = SQLiteTokenStore(db, cipher)
    carol = TokenKey("github", "cli", "carol")
    src.put(ALICE, tokens(1), now=1.0)
    src.put(BOB, tokens(2), now=2.0)
    src.put(carol, tokens(3), now=3.0)
    src.mark_needs_consent(carol, reason="invalid_grant", now=4.0)
    src.close()
    cfg = _config(write_config, str(db), key_file)
    conn = remotetables.connect(":memory:", config=cfg, environ={"REMOTETABLES_NO_KEYRING": "1"})
    try:
        n, result = migrate_to_url(conn.runtime, pg_url)
        again, _ = migrate_to_url(conn.runtime, pg_url, source=db)
    finally:
        conn.close()
    assert (n, again) == (2, 0)
    assert result.moved == [ALICE, BOB] and result.skipped_inactive == [carol]
    dump = repr(raw(pg_url, "SELECT * FROM oauth_token"))
    assert "at-1" not in dump and "rt-2" not in dump and b"at-1".hex() not in dump
    dst = PostgresTokenStore(pg_url, cipher)
    got = {r.key.subject: r.tokens for r in dst.records()}
    assert got == {"alice": tokens(1), "bob": tokens(2)}
    dst.close()
    with pytest.raises(TokenStoreError, match="does not exist"):
        migrate_to_url(conn.runtime, pg_url, source=tmp_path / "nope.db")


def _migrate_cli(cfg: Path, *args: str) -> click.testing.Result:
    env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": ""}
    return CliRunner().invoke(main, ["tokens", "-c", str(cfg), "migrate", *args], env=env)


def test_migrate_overwrite_never_replaces_a_grant_rotated_in_the_destination(
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    key_file, cipher = keyed
    db = tmp_path / "tokens.db"
    src = SQLiteTokenStore(db, cipher)
    src.put(ALICE, tokens(1), now=1.0)
    src.put(BOB, tokens(2), now=2.0)
    src.close()
    cfg = _config(write_config, str(db), key_file)
    first = _migrate_cli(cfg, "--to", pg_url)
    assert first.exit_code == 0, first.output
    assert "moved 2 grant(s)" in first.output
    # PostgreSQL in use: alice's refresh token rotates there (lease + compare-and-set commit)
    dst = PostgresTokenStore(pg_url, cipher)
    rec = dst.get(ALICE)
    assert rec is not None
    assert dst.try_lease(ALICE, version=rec.version, owner="w", now=50.0, lease_seconds=30)
    dst.commit_refresh(ALICE, owner="w", tokens=tokens(9), now=50.0)
    again = _migrate_cli(cfg, "--to", pg_url, "--overwrite")
    assert again.exit_code == 0, again.output
    assert "moved 1 grant(s)" in again.output  # bob: same age, replaced as asked
    assert "kept 1 because the copy there is newer" in again.output
    assert "alice@github" in again.output
    alice = dst.get(ALICE)
    assert alice is not None and alice.tokens == tokens(9)  # the rotated grant survives
    dst.close()


def test_migrate_onto_itself_is_refused(
    pg_server: PostgresServer,
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    key_file, cipher = keyed
    seed = PostgresTokenStore(pg_url, cipher)
    seed.put(ALICE, tokens(1), now=1.0)
    seed.close()
    cfg = _config(write_config, pg_url, key_file)
    # the same database under another spelling of its URL
    result = _migrate_cli(cfg, "--to", pg_url + "?application_name=other", "--overwrite")
    assert result.exit_code == 1
    assert "the same token store" in result.output and "moved" not in result.output
    assert pg_server.password not in result.output
    # another database on the same server is another store
    other = pg_server.create_database()
    result = _migrate_cli(cfg, "--to", other)
    assert result.exit_code == 0, result.output
    assert "moved 1 grant(s)" in result.output
    # one SQLite file under two names
    db = tmp_path / "a" / "tokens.db"
    a = SQLiteTokenStore(db, cipher)
    a.put(ALICE, tokens(1), now=1.0)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    b = SQLiteTokenStore(tmp_path / "link" / "tokens.db", cipher)
    with pytest.raises(TokenStoreError, match="same token store"):
        migrate_tokens(a, b, overwrite=True)
    a.close()
    b.close()


@pytest.mark.parametrize("placement", ["after", "before", "env"])
def test_migrate_takes_config_before_or_after_the_subcommand(
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    tmp_path: Path,
    placement: str,
) -> None:
    key_file, cipher = keyed
    db = tmp_path / "tokens.db"
    src = SQLiteTokenStore(db, cipher)
    src.put(ALICE, tokens(1), now=1.0)
    src.close()
    cfg = str(_config(write_config, str(db), key_file))
    missing = str(tmp_path / "missing.toml")  # REMOTETABLES_CONFIG never wins over -c
    env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": missing}
    args = {
        "after": ["tokens", "migrate", "-c", cfg, "--to", pg_url],
        "before": ["tokens", "--config", cfg, "migrate", "--to", pg_url],
        "env": ["tokens", "migrate", "--to", pg_url],
    }[placement]
    if placement == "env":
        env["REMOTETABLES_CONFIG"] = cfg
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "moved 1 grant(s)" in result.output


@pytest.mark.parametrize("fault", ["wrong password", "server down"])
def test_check_reports_an_unusable_postgres_store(
    pg_server: PostgresServer,
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    fault: str,
) -> None:
    key_file, _ = keyed
    if fault == "wrong password":
        url = pg_url.replace(pg_server.password, "wrong-Secret-pw")
        shown, secret = url.replace("wrong-Secret-pw", "***"), "wrong-Secret-pw"
    else:
        port = free_port()  # nothing listens there
        url = f"postgresql://u:hunter2@127.0.0.1:{port}/x"
        shown, secret = f"postgresql://u:***@127.0.0.1:{port}/x", "hunter2"
    with DemoAuthServer() as srv:
        cfg = write_config(
            """
            [settings]
            token_store = "{store}"
            key_file = "{key}"
            [providers.demo]
            issuer = "{issuer}"
            client_id = "remotetables-demo"
            """,
            store=url,
            key=key_file,
            issuer=srv.issuer,
        )
        env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": ""}
        result = CliRunner().invoke(main, ["check", "-c", str(cfg)], env=env)
    assert result.exit_code == 1, result.output
    assert "provider demo: ok" in result.output
    assert f"token store {shown}: PROBLEM: " in result.output
    assert "the token store with a problem" in result.output
    assert "all good" not in result.output
    assert secret not in result.output and "Traceback" not in result.output


def test_check_opens_a_good_postgres_store(
    pg_url: str, keyed: tuple[Path, TokenCipher], write_config: Callable[..., Path]
) -> None:
    key_file, cipher = keyed
    seed = PostgresTokenStore(pg_url, cipher)
    seed.put(ALICE, tokens(1), now=1.0)
    seed.close()
    with (
        DemoAuthServer() as srv,
        IncidentsAPI(n_rows=1, token_validator=srv.validate_token) as api,
    ):
        cfg = _config(write_config, pg_url, key_file)
        text = cfg.read_text().replace("http://127.0.0.1:9/t", f"{api.base_url}/styles/link/t")
        cfg.write_text(text.replace("http://127.0.0.1:9", srv.issuer, 1))
        env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": ""}
        result = CliRunner().invoke(main, ["check", "-c", str(cfg)], env=env)
    assert result.exit_code == 0, result.output  # check also asks the table's API (it answers)
    assert f"token store {redact_url(pg_url)}: ok: readable, 1 grant(s)" in result.output
    assert "all good" in result.output


# ----------------------------------------------------------------------------- issue 23 #3, #5


def _other_key(tmp_path: Path) -> tuple[Path, TokenCipher]:
    key_file = tmp_path / "other" / "token.key"
    key_file.parent.mkdir(mode=0o700)
    key_id, key = load_key(key_file=key_file, use_keyring=False, default_key_file=key_file)
    return key_file, TokenCipher({key_id: key}, key_id)


def test_migrate_with_another_key_is_refused_and_check_says_so(
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """A host with the wrong key file migrates its grants into the shared store: nothing is
    written under that key, and `check` on that host reports the key, not "ok: readable"."""
    _, cipher = keyed
    shared = PostgresTokenStore(pg_url, cipher)  # created by the hosts with the right key
    shared.put(BOB, tokens(2), now=2.0)
    shared.close()
    wrong_file, wrong = _other_key(tmp_path)
    db = tmp_path / "tokens.db"
    src = SQLiteTokenStore(db, wrong)
    src.put(ALICE, tokens(1), now=1.0)
    src.close()
    result = _migrate_cli(_config(write_config, str(db), wrong_file), "--to", pg_url)
    assert result.exit_code == 1, result.output
    assert "created with another encryption key" in result.output
    assert "moved" not in result.output and "Traceback" not in result.output
    assert raw(pg_url, "SELECT subject FROM oauth_token") == [("bob",)]
    env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": ""}
    with DemoAuthServer() as srv:
        cfg = _config(write_config, pg_url, wrong_file)
        cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9", srv.issuer, 1))
        check = CliRunner().invoke(main, ["check", "-c", str(cfg)], env=env)
    assert check.exit_code == 1, check.output
    assert "PROBLEM" in check.output and "another encryption key" in check.output
    # the hosts with the right key still read and refresh bob's grant
    right = PostgresTokenStore(pg_url, cipher)
    rec = right.get(BOB)
    assert rec is not None and rec.tokens == tokens(2)
    right.close()


def test_migrate_back_from_postgres_to_a_sqlite_file(
    pg_url: str,
    keyed: tuple[Path, TokenCipher],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    key_file, cipher = keyed
    src = PostgresTokenStore(pg_url, cipher)
    src.put(ALICE, tokens(1), now=1.0)
    src.put(BOB, tokens(2), now=2.0)
    src.close()
    back = tmp_path / "back" / "tokens.db"
    result = _migrate_cli(_config(write_config, pg_url, key_file), "--to", str(back))
    assert result.exit_code == 0, result.output
    assert f"moved 2 grant(s) to {back}" in result.output
    assert "that file" in result.output
    assert oct(back.stat().st_mode & 0o777) == "0o600"
    dst = SQLiteTokenStore(back, cipher)
    assert {k: (r.tokens if (r := dst.get(k)) else None) for k in (ALICE, BOB)} == {
        ALICE: tokens(1),
        BOB: tokens(2),
    }
    dst.close()
    # and with --from naming the PostgreSQL store while the config points elsewhere
    other = tmp_path / "other.db"
    cfg = _config(write_config, str(tmp_path / "unused.db"), key_file)
    again = _migrate_cli(cfg, "--from", pg_url, "--to", str(other))
    assert again.exit_code == 0, again.output
    assert "moved 2 grant(s)" in again.output


def test_store_timeouts_keep_the_urls_own_options(pg_url: str, cipher: TokenCipher) -> None:
    """Every connection gets the store's lock and statement timeouts, and the URL's own
    ``options`` (the README's search_path) still apply."""
    raw(pg_url, "CREATE SCHEMA rt")
    url = pg_url + "?options=-csearch_path%3Drt"
    store = PostgresTokenStore(url, cipher, timeout=3.0)
    store.put(ALICE, tokens(1), now=1.0)
    got = store._run(
        lambda c: c.execute(
            "SELECT current_setting('search_path'), current_setting('lock_timeout'),"
            " current_setting('statement_timeout')"
        ).fetchone()
    )
    store.close()
    assert got == ("rt", "2400ms", "3s")
    assert raw(pg_url, "SELECT subject FROM rt.oauth_token") == [("alice",)]


def test_a_table_made_before_the_in_flight_mark_gets_its_column(
    pg_url: str, cipher: TokenCipher
) -> None:
    store = PostgresTokenStore(pg_url, cipher)
    store.put(ALICE, tokens(1), now=1.0)
    store.close()
    raw(pg_url, "ALTER TABLE oauth_token DROP COLUMN refreshing_since")
    again = PostgresTokenStore(pg_url, cipher)
    rec = again.get(ALICE)
    assert rec is not None and rec.tokens == tokens(1) and not rec.refreshing
    again.close()
