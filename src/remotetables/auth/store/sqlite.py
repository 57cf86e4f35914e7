"""The SQLite token store: a private 0600 file, its own APSW connections, lease + compare-and-set.

See :mod:`remotetables.auth.store` for the protocol and the design.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw

from remotetables.auth.store.base import (
    SCHEMA_VERSION,
    ConsentLease,
    PendingAuth,
    TokenInfo,
    TokenKey,
    TokenSet,
    check_web_session,
    last_signin_key,
    state_hash,
)
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import check_private, ensure_private_dir
from remotetables.auth.store.rows import (
    _COLUMNS,
    _COMMIT_COLUMNS,
    _INFO_COLUMNS,
    FINGERPRINT,
    EncryptedRows,
    _pk,
)
from remotetables.errors import TokenStoreError

__all__ = ["SQLiteTokenStore"]


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS oauth_token (
  provider TEXT NOT NULL, client_id TEXT NOT NULL, subject TEXT NOT NULL,
  access_token BLOB, refresh_token BLOB, token_type TEXT, granted_scope TEXT,
  expires_at REAL, refresh_expires_at REAL, key_id TEXT,
  version INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until REAL,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','needs_consent','revoked')),
  last_error TEXT, updated_at REAL NOT NULL, account BLOB, refreshing_since REAL,
  PRIMARY KEY (provider, client_id, subject)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oauth_pending (
  state_hash BLOB PRIMARY KEY, provider TEXT NOT NULL, client_id TEXT NOT NULL,
  subject TEXT NOT NULL, redirect_uri TEXT NOT NULL, code_verifier BLOB NOT NULL,
  issuer TEXT, web_session TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
INSERT OR IGNORE INTO meta (k, v) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

_PK = "provider = ? AND client_id = ? AND subject = ?"

# the pending-consent lease (single-flight consent across processes); made on first use
_CONSENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_consent (
  provider TEXT NOT NULL, client_id TEXT NOT NULL, subject TEXT NOT NULL,
  owner TEXT, lease_until REAL, ended_at REAL, error TEXT,
  PRIMARY KEY (provider, client_id, subject)
) WITHOUT ROWID;
"""


class SQLiteTokenStore(EncryptedRows):
    """:class:`TokenStore` in a private SQLite file; safe across threads and processes.

    The directory is created 0700 and the file 0600 before SQLite opens it; an existing
    file owned by someone else or readable by group/other is refused. A call waits at most
    ``busy_timeout_ms`` for another connection's write lock, then fails naming the file.
    ``clock`` is the store's own clock: lease times are read from it inside the transaction,
    after the lock is taken.
    """

    def __init__(
        self,
        path: Path,
        cipher: TokenCipher,
        *,
        busy_timeout_ms: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._cipher = cipher
        self._busy_timeout_ms = busy_timeout_ms
        self._clock = clock
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        _prepare_file(self.path)
        with self._errors():
            conn = self._conn()
            list(conn.execute("PRAGMA journal_mode=WAL"))
            with self._txn(immediate=True) as c:
                c.execute(_SCHEMA)
                columns = {r[1] for r in c.execute("PRAGMA table_info(oauth_token)")}
                if "refreshing_since" not in columns:  # a store made before the column
                    c.execute("ALTER TABLE oauth_token ADD COLUMN refreshing_since REAL")
                row = _first(c.execute("SELECT v FROM meta WHERE k = 'schema_version'"))
                if row is not None and str(row[0]) == "1":  # 1 -> 2: the grant's account
                    columns = {r[1] for r in c.execute("PRAGMA table_info(oauth_token)")}
                    if "account" not in columns:
                        c.execute("ALTER TABLE oauth_token ADD COLUMN account BLOB")
                    c.execute(
                        "UPDATE meta SET v = ? WHERE k = 'schema_version'", (str(SCHEMA_VERSION),)
                    )
                    row = (str(SCHEMA_VERSION),)
                self._check_schema(row)
                recorded = _first(c.execute("SELECT v FROM meta WHERE k = ?", (FINGERPRINT,)))
                ids = c.execute("SELECT DISTINCT key_id FROM oauth_token WHERE key_id NOT NULL")
                mine = self._judge_key(recorded and recorded[0], {r[0] for r in ids})
                if mine is not None:
                    c.execute("INSERT INTO meta (k, v) VALUES (?, ?)", (FINGERPRINT, mine))

    def __repr__(self) -> str:
        return f"SQLiteTokenStore({str(self.path)!r})"

    # -- connections and transactions

    def _conn(self) -> apsw.Connection:
        if self._closed:
            raise TokenStoreError(f"token store {self.path} is closed")
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        _check_files(self.path)
        conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READWRITE)
        conn.set_busy_timeout(self._busy_timeout_ms)
        for pragma in ("synchronous=FULL", "secure_delete=ON", "trusted_schema=OFF"):
            list(conn.execute(f"PRAGMA {pragma}"))
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except apsw.BusyError as exc:
            raise TokenStoreError(
                f"token store {self.path}: another connection kept it locked longer than the "
                f"store timeout ({self._busy_timeout_ms / 1000:g} s)"
            ) from exc
        except apsw.Error as exc:
            raise TokenStoreError(f"token store {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _txn(self, *, immediate: bool = False) -> Iterator[apsw.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(apsw.Error):
                if not conn.get_autocommit():
                    conn.execute("ROLLBACK")
            raise

    @property
    def _where(self) -> str:
        return str(self.path)

    def _select(self, key: TokenKey) -> Any:
        with self._errors():
            return _first(
                self._conn().execute(
                    f"SELECT {_COLUMNS}, lease_until >= ? FROM oauth_token WHERE {_PK}",
                    (self._clock(), *_pk(key)),
                )
            )

    def _first_active(self) -> TokenKey | None:
        with self._errors():
            row = _first(
                self._conn().execute(
                    "SELECT provider, client_id, subject FROM oauth_token"
                    " WHERE status = 'active' AND access_token NOT NULL LIMIT 1"
                )
            )
        return None if row is None else TokenKey(*row)

    # -- TokenStore

    def _row_key_id(self, key: TokenKey) -> str | None:
        with self._errors():
            row = _first(
                self._conn().execute(f"SELECT key_id FROM oauth_token WHERE {_PK}", _pk(key))
            )
        return None if row is None else row[0]

    def _mark_corrupt(self, key: TokenKey, *, version: int, reason: str) -> None:
        with self._errors(), self._txn(immediate=True) as c:
            c.execute(
                "UPDATE oauth_token SET access_token = NULL, refresh_token = NULL, key_id = NULL,"
                " account = NULL, status = 'needs_consent', last_error = ?, lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, version = version + 1,"
                f" updated_at = ? WHERE {_PK} AND version = ?",
                (f"corrupt: {reason}", self._clock(), *_pk(key), version),
            )

    def put(self, key: TokenKey, tokens: TokenSet, *, now: float) -> int:
        values = self._put_values(key, tokens, now)
        with self._errors(), self._txn(immediate=True) as c:
            row = _first(
                c.execute(
                    "INSERT INTO oauth_token (provider, client_id, subject, access_token,"
                    " refresh_token, token_type, granted_scope, expires_at, refresh_expires_at,"
                    " key_id, version, status, updated_at, account)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'active', ?, ?)"
                    " ON CONFLICT (provider, client_id, subject) DO UPDATE SET"
                    " access_token = excluded.access_token, refresh_token = excluded.refresh_token,"
                    " token_type = excluded.token_type, granted_scope = excluded.granted_scope,"
                    " expires_at = excluded.expires_at,"
                    " refresh_expires_at = excluded.refresh_expires_at, key_id = excluded.key_id,"
                    " version = oauth_token.version + 1, status = 'active', lease_owner = NULL,"
                    " lease_until = NULL, refreshing_since = NULL, last_error = NULL,"
                    " updated_at = excluded.updated_at, account = excluded.account RETURNING version",
                    values,
                )
            )
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
        with self._errors(), self._txn(immediate=True) as c:
            at = self._clock() if now is None else now  # read after the write lock is ours
            c.execute(
                "UPDATE oauth_token SET lease_owner = ?, lease_until = ?"
                f" WHERE {_PK} AND version = ? AND status = 'active'"
                " AND (lease_until IS NULL OR lease_until < ?)",
                (owner, at + lease_seconds, *_pk(key), version, at),
            )
            return bool(c.changes() == 1)

    def begin_refresh(self, key: TokenKey, *, owner: str, min_left: float) -> bool:
        with self._errors(), self._txn(immediate=True) as c:
            at = self._clock()
            c.execute(
                "UPDATE oauth_token SET refreshing_since = ?"
                f" WHERE {_PK} AND lease_owner = ? AND status = 'active' AND lease_until >= ?",
                (at, *_pk(key), owner, at + min_left),
            )
            return bool(c.changes() == 1)

    def commit_refresh(
        self,
        key: TokenKey,
        *,
        owner: str,
        tokens: TokenSet,
        now: float,
        from_version: int | None = None,
    ) -> int:
        with self._errors(), self._txn(immediate=True) as c:
            row = _first(
                c.execute(f"SELECT {_COMMIT_COLUMNS} FROM oauth_token WHERE {_PK}", _pk(key))
            )
            values = self._refresh_values(
                key, row, owner=owner, tokens=tokens, now=now, from_version=from_version
            )
            new = _first(
                c.execute(
                    "UPDATE oauth_token SET access_token = ?, refresh_token = ?, token_type = ?,"
                    " granted_scope = ?, expires_at = ?, refresh_expires_at = ?, key_id = ?,"
                    " version = version + 1, lease_owner = NULL, lease_until = NULL,"
                    " refreshing_since = NULL,"
                    f" last_error = NULL, updated_at = ? WHERE {_PK} RETURNING version",
                    values,
                )
            )
        return int(new[0])

    def release_lease(self, key: TokenKey, *, owner: str, error: str | None = None) -> None:
        with self._errors(), self._txn(immediate=True) as c:
            c.execute(
                "UPDATE oauth_token SET lease_owner = NULL, lease_until = NULL, last_error = ?,"
                f" refreshing_since = NULL WHERE {_PK} AND lease_owner = ?",
                (error, *_pk(key), owner),
            )

    def mark_needs_consent(self, key: TokenKey, *, reason: str, now: float) -> None:
        with self._errors(), self._txn(immediate=True) as c:
            c.execute(
                "UPDATE oauth_token SET access_token = NULL, refresh_token = NULL, key_id = NULL,"
                " status = 'needs_consent', last_error = ?, lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, version = version + 1,"
                f" updated_at = ? WHERE {_PK}",
                (reason, now, *_pk(key)),
            )

    def mark_revoked(self, key: TokenKey, *, reason: str, now: float) -> None:
        """Unusable from now on; the ciphertexts stay only until the provider confirms revocation."""
        with self._errors(), self._txn(immediate=True) as c:
            c.execute(
                "UPDATE oauth_token SET status = 'revoked', last_error = ?, lease_owner = NULL,"
                " lease_until = NULL, refreshing_since = NULL, version = version + 1,"
                f" updated_at = ? WHERE {_PK}",
                (reason, now, *_pk(key)),
            )

    def delete(self, key: TokenKey) -> None:
        with self._errors(), self._txn(immediate=True) as c:
            c.execute(f"DELETE FROM oauth_token WHERE {_PK}", _pk(key))

    def list(self) -> list[TokenInfo]:
        with self._errors():
            rows = list(
                self._conn().execute(
                    f"SELECT {_INFO_COLUMNS} FROM oauth_token ORDER BY provider, client_id, subject"
                )
            )
        return [self._info(row) for row in rows]

    def last_signin(self, provider: str, client_id: str) -> str | None:
        with self._errors():
            row = _first(
                self._conn().execute(
                    "SELECT v FROM meta WHERE k = ?", (last_signin_key(provider, client_id),)
                )
            )
        return None if row is None else str(row[0])

    def set_last_signin(self, provider: str, client_id: str, subject: str | None) -> None:
        k = last_signin_key(provider, client_id)
        with self._errors(), self._txn(immediate=True) as c:
            if subject is None:
                c.execute("DELETE FROM meta WHERE k = ?", (k,))
            else:
                c.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, subject))

    def save_pending(self, pending: PendingAuth) -> None:
        values = self._pending_values(pending)
        with self._errors(), self._txn(immediate=True) as c:
            c.execute("DELETE FROM oauth_pending WHERE expires_at < ?", (pending.created_at,))
            c.execute(
                "INSERT INTO oauth_pending (state_hash, provider, client_id, subject,"
                " redirect_uri, code_verifier, issuer, web_session, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def take_pending(
        self, state: str, *, now: float, web_session: str | None = None
    ) -> PendingAuth | None:
        h = state_hash(state)
        with self._errors(), self._txn(immediate=True) as c:
            if web_session is not None:  # judged in this transaction, before the DELETE
                bound = _first(
                    c.execute(
                        "SELECT web_session, provider, subject FROM oauth_pending"
                        " WHERE state_hash = ? AND expires_at > ?",
                        (h, now),
                    )
                )
                if bound is not None:
                    check_web_session(bound[0], web_session, provider=bound[1], subject=bound[2])
            row = _first(
                c.execute(
                    "DELETE FROM oauth_pending WHERE state_hash = ? RETURNING provider, client_id,"
                    " subject, redirect_uri, code_verifier, issuer, web_session, created_at,"
                    " expires_at",
                    (h,),
                )
            )
        return self._pending_from_row(state, row, now=now)

    # -- pending-consent lease (ConsentLeases)

    @contextlib.contextmanager
    def _consent_txn(self) -> Iterator[apsw.Connection]:
        with self._errors(), self._txn(immediate=True) as c:
            if not getattr(self, "_consent_table", False):
                c.execute(_CONSENT_SCHEMA)
                self._consent_table = True
            yield c

    def try_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, lease_seconds: float
    ) -> bool:
        with self._consent_txn() as c:
            c.execute(
                "INSERT INTO oauth_consent (provider, client_id, subject, owner, lease_until)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, client_id, subject) DO UPDATE"
                " SET owner = excluded.owner, lease_until = excluded.lease_until, error = NULL"
                " WHERE oauth_consent.owner IS NULL OR oauth_consent.lease_until < ?",
                (*_pk(key), owner, now + lease_seconds, now),
            )
            return bool(c.changes() == 1)

    def end_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, error: str | None = None
    ) -> None:
        with self._consent_txn() as c:
            c.execute(
                "UPDATE oauth_consent SET owner = NULL, lease_until = NULL, ended_at = ?,"
                f" error = ? WHERE {_PK} AND owner = ?",
                (now, error, *_pk(key), owner),
            )

    def consent_lease(self, key: TokenKey) -> ConsentLease | None:
        with self._consent_txn() as c:
            row = _first(
                c.execute(
                    f"SELECT owner, lease_until, ended_at, error FROM oauth_consent WHERE {_PK}",
                    _pk(key),
                )
            )
        return None if row is None else ConsentLease(*row)

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(apsw.Error):
                conn.close()


def _first(cursor: Any) -> Any:
    """The first row of ``cursor`` (None if empty), running the statement to completion."""
    rows = list(cursor)
    return rows[0] if rows else None


def _prepare_file(path: Path) -> None:
    """Create the 0700 directory and the 0600 file before SQLite touches them; check both."""
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        existed = True
    except OSError as exc:
        raise TokenStoreError(f"cannot create token store {path}: {exc.strerror}") from exc
    else:
        existed = False
        os.close(fd)
    _check_files(path)
    if existed and os.lstat(path).st_size == 0 and not _has_content(Path(f"{path}-wal")):
        # SQLite would take an empty file for a new database: grants would vanish silently
        raise TokenStoreError(
            f"token store {path} is an empty file (0 bytes), not a token store: it may have "
            "been truncated, and its grants are gone. Delete it to start a new store (every "
            "user then logs in again), or restore it from a backup"
        )


def _has_content(path: Path) -> bool:
    try:
        return os.lstat(path).st_size > 0
    except FileNotFoundError:
        return False


def _check_files(path: Path) -> None:
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            if candidate == path:
                raise TokenStoreError(f"token store {path} vanished") from None
            continue
        if not stat.S_ISREG(st.st_mode):
            raise TokenStoreError(f"refusing token store {candidate}: not a regular file")
        check_private(candidate, st, what="token store")
