"""A PostgreSQL :class:`~remotetables.auth.store.TokenStore` for several hosts (psycopg 3).

Same schema, encryption and protocol as :class:`~remotetables.auth.store.SQLiteTokenStore`:
tokens are AES-256-GCM ciphertexts bound to (provider, client_id, subject, column, key id); the
refresh lease is one conditional ``UPDATE ... WHERE version = %s AND lease expired``, which has
exactly one winner under READ COMMITTED; transactions are short and never span network I/O to
the authorization server. Each process has its own small connection pool (a fork gets a new one).

Chosen in the config with ``settings.token_store = "postgresql://user@host/db"``; the key comes
from the same sources as for SQLite (:func:`remotetables.auth.store.factory.load_cipher`). Install with
``pip install 'remotetables[postgres]'``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

from remotetables.auth.store.base import (
    SCHEMA_VERSION,
    ConsentLease,
    PendingAuth,
    TokenInfo,
    TokenKey,
    TokenRecord,
    TokenSet,
    check_web_session,
    last_signin_key,
    state_hash,
)
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.pool import Conn, _bounded, _Pool
from remotetables.auth.store.rows import (
    _COLUMNS,
    _COMMIT_COLUMNS,
    _INFO_COLUMNS,
    FINGERPRINT,
    EncryptedRows,
    _pk,
)
from remotetables.errors import TokenStoreError

__all__ = ["PostgresTokenStore", "redact_url"]

T = TypeVar("T")

_LOCK_ID = 0x52544B53  # advisory lock key for schema creation ("RTKS")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS oauth_token (
  provider TEXT NOT NULL, client_id TEXT NOT NULL, subject TEXT NOT NULL,
  access_token BYTEA, refresh_token BYTEA, token_type TEXT, granted_scope TEXT,
  expires_at DOUBLE PRECISION, refresh_expires_at DOUBLE PRECISION, key_id TEXT,
  version BIGINT NOT NULL DEFAULT 0, lease_owner TEXT, lease_until DOUBLE PRECISION,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','needs_consent','revoked')),
  last_error TEXT, updated_at DOUBLE PRECISION NOT NULL, account BYTEA,
  refreshing_since DOUBLE PRECISION,
  PRIMARY KEY (provider, client_id, subject)
);
CREATE TABLE IF NOT EXISTS oauth_pending (
  state_hash BYTEA PRIMARY KEY, provider TEXT NOT NULL, client_id TEXT NOT NULL,
  subject TEXT NOT NULL, redirect_uri TEXT NOT NULL, code_verifier BYTEA NOT NULL,
  issuer TEXT, web_session TEXT, created_at DOUBLE PRECISION NOT NULL,
  expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_meta (k TEXT PRIMARY KEY, v TEXT);
INSERT INTO oauth_meta (k, v) VALUES ('schema_version', '{SCHEMA_VERSION}')
  ON CONFLICT (k) DO NOTHING;
"""

_PK = "provider = %s AND client_id = %s AND subject = %s"

# the pending-consent lease (single-flight consent across hosts); made on first use
_CONSENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_consent (
  provider TEXT NOT NULL, client_id TEXT NOT NULL, subject TEXT NOT NULL,
  owner TEXT, lease_until DOUBLE PRECISION, ended_at DOUBLE PRECISION, error TEXT,
  PRIMARY KEY (provider, client_id, subject)
);
"""
# the server's clock when the statement runs (after any lock wait), not the transaction's start
_NOW = "extract(epoch FROM clock_timestamp())::double precision"
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def redact_url(url: str) -> str:
    """``url`` without its password (for messages and reprs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PostgresTokenStore(EncryptedRows):
    """:class:`~remotetables.auth.store.TokenStore` in PostgreSQL; safe across threads, processes
    and hosts. ``url`` is a libpq URL or conninfo string (passwords may also come from
    ``PGPASSWORD`` or ``~/.pgpass``)."""

    def __init__(
        self,
        url: str,
        cipher: TokenCipher,
        *,
        pool_size: int = 8,
        pool_timeout: float | None = None,
        connect_timeout: int | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``timeout`` bounds every store call: the server's ``lock_timeout`` and
        ``statement_timeout``, the wait for a pooled connection, connecting, and the call's
        retries all together (a call ends within about ``timeout`` plus one statement's
        ``timeout``). ``clock`` stamps ``updated_at``; lease times come from the server's
        own clock."""
        self._url = url
        self._shown = redact_url(url)
        self._cipher = cipher
        self._clock = clock
        self._timeout = timeout
        ms = max(1, int(timeout * 1000))
        self._pool = _Pool(
            url,
            max_size=pool_size,
            timeout=timeout if pool_timeout is None else pool_timeout,
            connect_timeout=max(2, int(timeout)) if connect_timeout is None else connect_timeout,
            options=_bounded(url, ms),
        )
        try:
            self._create_schema()
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresTokenStore({self._shown!r})"

    # -- plumbing

    def _run(self, fn: Callable[[Conn], T], *, txn: bool = False) -> T:
        """Run ``fn`` on a pooled connection (in a transaction if ``txn``); map errors.

        Bounded: the server cancels a statement (or a lock wait) after ``timeout``, and
        retries stop at the call's deadline."""
        deadline = time.monotonic() + self._timeout
        for attempt in range(5):
            try:
                with self._pool.connection(deadline) as conn:
                    if not txn:
                        return fn(conn)
                    with conn.transaction():
                        return fn(conn)
            except _RETRYABLE:
                if attempt == 4 or time.monotonic() >= deadline:
                    raise TokenStoreError(
                        f"token store {self._shown}: too many serialization failures"
                    ) from None
                time.sleep(0.01 * (attempt + 1))
            except pg_errors.LockNotAvailable as exc:
                raise TokenStoreError(
                    f"token store {self._shown}: a grant's row stayed locked by another "
                    f"session longer than the store timeout ({self._timeout:g} s)"
                ) from exc
            except pg_errors.QueryCanceled as exc:
                raise TokenStoreError(
                    f"token store {self._shown}: a statement ran longer than the store "
                    f"timeout ({self._timeout:g} s)"
                ) from exc
            except psycopg.Error as exc:
                raise TokenStoreError(f"token store {self._shown}: {exc}") from exc
            except TokenStoreError as exc:  # the pool's own (closed, no free connection)
                if str(exc).startswith("token store "):
                    raise
                raise TokenStoreError(f"token store {self._shown}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_schema(self) -> None:
        def create(c: Conn) -> Any:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            c.execute(_SCHEMA)
            has_column = c.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = 'oauth_token'::regclass"
                " AND attname = 'refreshing_since' AND NOT attisdropped"
            ).fetchone()
            if has_column is None:  # a table made before the column (needs the table's owner)
                c.execute("ALTER TABLE oauth_token ADD COLUMN refreshing_since DOUBLE PRECISION")
            row = c.execute("SELECT v FROM oauth_meta WHERE k = 'schema_version'").fetchone()
            if row is not None and str(row[0]) == "1":  # 1 -> 2: the grant's account
                c.execute("ALTER TABLE oauth_token ADD COLUMN IF NOT EXISTS account BYTEA")
                c.execute(
                    "UPDATE oauth_meta SET v = %s WHERE k = 'schema_version'",
                    (str(SCHEMA_VERSION),),
                )
                row = (str(SCHEMA_VERSION),)
            self._check_schema(row)
            recorded = c.execute("SELECT v FROM oauth_meta WHERE k = %s", (FINGERPRINT,)).fetchone()
            ids = c.execute("SELECT DISTINCT key_id FROM oauth_token WHERE key_id IS NOT NULL")
            mine = self._judge_key(
                None if recorded is None else str(recorded[0]), {r[0] for r in ids.fetchall()}
            )
            if mine is not None:
                c.execute("INSERT INTO oauth_meta (k, v) VALUES (%s, %s)", (FINGERPRINT, mine))

        self._run(create, txn=True)

    @property
    def _where(self) -> str:
        return self._shown

    def _select(self, key: TokenKey) -> Any:
        return self._run(
            lambda c: c.execute(
                f"SELECT {_COLUMNS}, lease_until >= {_NOW} FROM oauth_token WHERE {_PK}", _pk(key)
            ).fetchone()
        )

    def _first_active(self) -> TokenKey | None:
        row = self._run(
            lambda c: c.execute(
                "SELECT provider, client_id, subject FROM oauth_token"
                " WHERE status = 'active' AND access_token IS NOT NULL LIMIT 1"
            ).fetchone()
        )
        return None if row is None else TokenKey(*row)

    # -- TokenStore

    def _row_key_id(self, key: TokenKey) -> str | None:
        row = self._run(
            lambda c: c.execute(f"SELECT key_id FROM oauth_token WHERE {_PK}", _pk(key)).fetchone()
        )
        return None if row is None else row[0]

    def _mark_corrupt(self, key: TokenKey, *, version: int, reason: str) -> None:
        self._run(
            lambda c: c.execute(
                "UPDATE oauth_token SET access_token = NULL, refresh_token = NULL, key_id = NULL,"
                " account = NULL, status = 'needs_consent', last_error = %s, lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, version = version + 1,"
                f" updated_at = %s WHERE {_PK} AND version = %s",
                (f"corrupt: {reason}", self._clock(), *_pk(key), version),
            )
        )

    def put(self, key: TokenKey, tokens: TokenSet, *, now: float) -> int:
        values = self._put_values(key, tokens, now)
        row = self._run(
            lambda c: c.execute(
                "INSERT INTO oauth_token (provider, client_id, subject, access_token,"
                " refresh_token, token_type, granted_scope, expires_at, refresh_expires_at,"
                " key_id, version, status, updated_at, account)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, 'active', %s, %s)"
                " ON CONFLICT (provider, client_id, subject) DO UPDATE SET"
                " access_token = excluded.access_token, refresh_token = excluded.refresh_token,"
                " token_type = excluded.token_type, granted_scope = excluded.granted_scope,"
                " expires_at = excluded.expires_at,"
                " refresh_expires_at = excluded.refresh_expires_at, key_id = excluded.key_id,"
                " version = oauth_token.version + 1, status = 'active', lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, last_error = NULL,"
                " updated_at = excluded.updated_at, account = excluded.account RETURNING version",
                values,
            ).fetchone()
        )
        assert row is not None
        return int(row[0])

    def try_lease(
        self,
        key: TokenKey,
        *,
        version: int,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
    ) -> bool:
        # One statement: concurrent updaters of the row queue on its lock and re-check the
        # WHERE clause against the winner's row version, so exactly one of them matches. The
        # lease is timed by the server's clock as the row is updated (after any lock wait).
        at = _NOW if now is None else "%s"
        params: tuple[Any, ...] = () if now is None else (now,)
        changed = self._run(
            lambda c: (
                c.execute(
                    f"UPDATE oauth_token SET lease_owner = %s, lease_until = {at} + %s"
                    f" WHERE {_PK} AND version = %s AND status = 'active'"
                    f" AND (lease_until IS NULL OR lease_until < {at})",
                    (owner, *params, lease_seconds, *_pk(key), version, *params),
                ).rowcount
            )
        )
        return changed == 1

    def begin_refresh(self, key: TokenKey, *, owner: str, min_left: float) -> bool:
        changed = self._run(
            lambda c: (
                c.execute(
                    f"UPDATE oauth_token SET refreshing_since = {_NOW}"
                    f" WHERE {_PK} AND lease_owner = %s AND status = 'active'"
                    f" AND lease_until >= {_NOW} + %s",
                    (*_pk(key), owner, min_left),
                ).rowcount
            )
        )
        return changed == 1

    def commit_refresh(
        self,
        key: TokenKey,
        *,
        owner: str,
        tokens: TokenSet,
        now: float,
        from_version: int | None = None,
    ) -> int:
        def commit(c: Conn) -> int:
            row = c.execute(
                f"SELECT {_COMMIT_COLUMNS} FROM oauth_token WHERE {_PK} FOR UPDATE",
                _pk(key),
            ).fetchone()
            values = self._refresh_values(
                key, row, owner=owner, tokens=tokens, now=now, from_version=from_version
            )
            new = c.execute(
                "UPDATE oauth_token SET access_token = %s, refresh_token = %s, token_type = %s,"
                " granted_scope = %s, expires_at = %s, refresh_expires_at = %s, key_id = %s,"
                " version = version + 1, lease_owner = NULL, lease_until = NULL,"
                " refreshing_since = NULL,"
                f" last_error = NULL, updated_at = %s WHERE {_PK} RETURNING version",
                values,
            ).fetchone()
            assert new is not None
            return int(new[0])

        return self._run(commit, txn=True)

    def release_lease(self, key: TokenKey, *, owner: str, error: str | None = None) -> None:
        self._run(
            lambda c: c.execute(
                "UPDATE oauth_token SET lease_owner = NULL, lease_until = NULL, last_error = %s,"
                f" refreshing_since = NULL WHERE {_PK} AND lease_owner = %s",
                (error, *_pk(key), owner),
            )
        )

    def mark_needs_consent(self, key: TokenKey, *, reason: str, now: float) -> None:
        self._run(
            lambda c: c.execute(
                "UPDATE oauth_token SET access_token = NULL, refresh_token = NULL, key_id = NULL,"
                " status = 'needs_consent', last_error = %s, lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, version = version + 1,"
                f" updated_at = %s WHERE {_PK}",
                (reason, now, *_pk(key)),
            )
        )

    def mark_revoked(self, key: TokenKey, *, reason: str, now: float) -> None:
        """Unusable from now on; the ciphertexts stay only until the provider confirms revocation."""
        self._run(
            lambda c: c.execute(
                "UPDATE oauth_token SET status = 'revoked', last_error = %s, lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, version = version + 1,"
                f" updated_at = %s WHERE {_PK}",
                (reason, now, *_pk(key)),
            )
        )

    def delete(self, key: TokenKey) -> None:
        self._run(lambda c: c.execute(f"DELETE FROM oauth_token WHERE {_PK}", _pk(key)))

    def list(self) -> list[TokenInfo]:
        rows = self._run(
            lambda c: c.execute(
                f"SELECT {_INFO_COLUMNS} FROM oauth_token"
                ' ORDER BY provider COLLATE "C", client_id COLLATE "C", subject COLLATE "C"'
            ).fetchall()
        )
        return [self._info(row) for row in rows]

    def last_signin(self, provider: str, client_id: str) -> str | None:
        k = last_signin_key(provider, client_id)
        row = self._run(
            lambda c: c.execute("SELECT v FROM oauth_meta WHERE k = %s", (k,)).fetchone()
        )
        return None if row is None else str(row[0])

    def set_last_signin(self, provider: str, client_id: str, subject: str | None) -> None:
        k = last_signin_key(provider, client_id)
        if subject is None:
            self._run(lambda c: c.execute("DELETE FROM oauth_meta WHERE k = %s", (k,)))
        else:
            self._run(
                lambda c: c.execute(
                    "INSERT INTO oauth_meta (k, v) VALUES (%s, %s)"
                    " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                    (k, subject),
                )
            )

    def records(self) -> builtins.list[TokenRecord]:
        """Every stored grant, decrypted in memory (for migration); undecryptable rows are
        marked ``needs_consent`` and returned without tokens."""
        out = []
        for info in self.list():
            rec = self.get(TokenKey(info.provider, info.client_id, info.subject))
            if rec is not None:
                out.append(rec)
        return out

    def save_pending(self, pending: PendingAuth) -> None:
        values = self._pending_values(pending)

        def save(c: Conn) -> None:
            c.execute("DELETE FROM oauth_pending WHERE expires_at < %s", (pending.created_at,))
            try:
                c.execute(
                    "INSERT INTO oauth_pending (state_hash, provider, client_id, subject,"
                    " redirect_uri, code_verifier, issuer, web_session, created_at, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    values,
                )
            except pg_errors.UniqueViolation:
                raise TokenStoreError("a pending consent with this state already exists") from None

        self._run(save, txn=True)

    def take_pending(
        self, state: str, *, now: float, web_session: str | None = None
    ) -> PendingAuth | None:
        h = state_hash(state)

        def take(c: Conn) -> Any:
            if web_session is not None:  # judged under the row lock, before the DELETE
                bound = c.execute(
                    "SELECT web_session, provider, subject FROM oauth_pending"
                    " WHERE state_hash = %s AND expires_at > %s FOR UPDATE",
                    (h, now),
                ).fetchone()
                if bound is not None:
                    check_web_session(bound[0], web_session, provider=bound[1], subject=bound[2])
            return c.execute(
                "DELETE FROM oauth_pending WHERE state_hash = %s RETURNING provider, client_id,"
                " subject, redirect_uri, code_verifier, issuer, web_session, created_at,"
                " expires_at",
                (h,),
            ).fetchone()

        row = self._run(take, txn=web_session is not None)
        return self._pending_from_row(state, row, now=now)

    # -- pending-consent lease (ConsentLeases)

    def _consent_table(self) -> None:
        if getattr(self, "_has_consent_table", False):
            return

        def create(c: Conn) -> None:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            c.execute(_CONSENT_SCHEMA)

        self._run(create, txn=True)
        self._has_consent_table = True

    def try_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, lease_seconds: float
    ) -> bool:
        self._consent_table()
        # one statement: a concurrent taker waits on the row and re-checks the WHERE clause
        changed = self._run(
            lambda c: (
                c.execute(
                    "INSERT INTO oauth_consent (provider, client_id, subject, owner, lease_until)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (provider, client_id, subject)"
                    " DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until,"
                    " error = NULL"
                    " WHERE oauth_consent.owner IS NULL OR oauth_consent.lease_until < %s",
                    (*_pk(key), owner, now + lease_seconds, now),
                ).rowcount
            ),
            txn=True,
        )
        return changed == 1

    def end_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, error: str | None = None
    ) -> None:
        self._consent_table()
        self._run(
            lambda c: c.execute(
                "UPDATE oauth_consent SET owner = NULL, lease_until = NULL, ended_at = %s,"
                f" error = %s WHERE {_PK} AND owner = %s",
                (now, error, *_pk(key), owner),
            ),
            txn=True,
        )

    def consent_lease(self, key: TokenKey) -> ConsentLease | None:
        self._consent_table()
        row = self._run(
            lambda c: c.execute(
                f"SELECT owner, lease_until, ended_at, error FROM oauth_consent WHERE {_PK}",
                _pk(key),
            ).fetchone()
        )
        return None if row is None else ConsentLease(*row)

    def close(self) -> None:
        """Close this process's pooled connections; later calls raise TokenStoreError."""
        self._pool.close()
