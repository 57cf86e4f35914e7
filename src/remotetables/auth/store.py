"""Token storage: the data types, the ``TokenStore`` protocol, and two implementations.

:class:`SQLiteTokenStore` (in :mod:`remotetables.auth.sqlitestore`, re-exported here) keeps
encrypted tokens in a private SQLite file (never the user's database), one APSW connection per
thread, WAL, short transactions and a lease column used by :mod:`remotetables.auth.manager` for
single-flight refresh; the PostgreSQL store shares :class:`EncryptedRows` with it.
:class:`MemoryTokenStore` has the same semantics in memory. None does any network I/O.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from remotetables.auth.crypto import TokenCipher
from remotetables.errors import (
    ConsentFailed,
    CorruptTokenError,
    LeaseLostError,
    TokenStoreError,
    UnknownKeyError,
)

__all__ = [
    "SCHEMA_VERSION",
    "SYSTEM_SUBJECT",
    "MemoryTokenStore",
    "PendingAuth",
    "SQLiteTokenStore",
    "Status",
    "TokenInfo",
    "TokenKey",
    "TokenRecord",
    "TokenSet",
    "TokenStore",
]

SCHEMA_VERSION = 1
SYSTEM_SUBJECT = "__system__"
Status = Literal["active", "needs_consent", "revoked"]


@dataclass(frozen=True)
class TokenKey:
    """Identifies one grant: provider (issuer key), client id and local subject."""

    provider: str
    client_id: str
    subject: str  # local user name, or SYSTEM_SUBJECT


@dataclass
class TokenSet:
    """Tokens from one token response. ``expires_at`` is local epoch seconds; None = unknown."""

    access_token: str
    refresh_token: str | None
    token_type: str = "Bearer"
    scope: str | None = None
    expires_at: float | None = None
    refresh_expires_at: float | None = None

    def __repr__(self) -> str:
        rt = "None" if self.refresh_token is None else "'***'"
        return (
            f"TokenSet(access_token='***', refresh_token={rt}, token_type={self.token_type!r}, "
            f"scope={self.scope!r}, expires_at={self.expires_at!r}, "
            f"refresh_expires_at={self.refresh_expires_at!r})"
        )


@dataclass
class TokenRecord:
    """A stored row: tokens (None when absent or undecryptable) plus protocol state."""

    key: TokenKey
    tokens: TokenSet | None
    version: int
    status: Status
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    updated_at: float


@dataclass
class TokenInfo:
    """What ``list()`` shows about a grant: no token material."""

    provider: str
    client_id: str
    subject: str
    status: Status
    expires_at: float | None
    scope: str | None
    has_refresh_token: bool
    updated_at: float
    reason: str | None = None  # why a grant is not active (invalid_grant, revocation pending ...)


@dataclass
class PendingAuth:
    """An in-flight authorization-code transaction (state, PKCE verifier, binding)."""

    state: str
    provider: str
    client_id: str
    subject: str
    redirect_uri: str
    code_verifier: str
    issuer: str | None
    created_at: float
    expires_at: float
    web_session: str | None = None

    def __repr__(self) -> str:
        return (
            f"PendingAuth(state='***', provider={self.provider!r}, client_id={self.client_id!r}, "
            f"subject={self.subject!r}, redirect_uri={self.redirect_uri!r}, code_verifier='***', "
            f"issuer={self.issuer!r}, created_at={self.created_at!r}, "
            f"expires_at={self.expires_at!r}, web_session={'***' if self.web_session else None})"
        )


class TokenStore(Protocol):
    """Storage for tokens and pending consent transactions. See token-store-design.md."""

    def get(self, key: TokenKey) -> TokenRecord | None: ...
    def put(self, key: TokenKey, tokens: TokenSet, *, now: float) -> int: ...
    def try_lease(
        self, key: TokenKey, *, version: int, owner: str, now: float, lease_seconds: float
    ) -> bool: ...
    def commit_refresh(self, key: TokenKey, *, owner: str, tokens: TokenSet, now: float) -> int: ...
    def release_lease(self, key: TokenKey, *, owner: str, error: str | None = None) -> None: ...
    def mark_needs_consent(self, key: TokenKey, *, reason: str, now: float) -> None: ...
    def mark_revoked(self, key: TokenKey, *, reason: str, now: float) -> None: ...
    def delete(self, key: TokenKey) -> None: ...
    def list(self) -> list[TokenInfo]: ...
    def save_pending(self, pending: PendingAuth) -> None: ...
    def take_pending(
        self, state: str, *, now: float, web_session: str | None = None
    ) -> PendingAuth | None: ...
    def close(self) -> None: ...


def state_hash(state: str) -> bytes:
    """SHA-256 of a consent ``state``: the only form in which a state is stored."""
    return hashlib.sha256(state.encode("utf-8")).digest()


def check_web_session(
    stored: str | None, web_session: str | None, *, provider: str, subject: str
) -> None:
    """Raise :class:`ConsentFailed` if ``web_session`` is given and is not the pending
    transaction's own (RFC 9700 §2.1.1).

    The stores call it inside ``take_pending`` before deleting anything: a callback presented
    from the wrong web session leaves the transaction in place for the session that started it,
    which can then still use it, once.
    """
    if web_session is None:
        return
    if stored is not None and hmac.compare_digest(stored.encode(), web_session.encode()):
        return
    raise ConsentFailed(
        f"{provider}: the authorization was started from another session "
        "(finish it in the browser session that started it)",
        provider=provider,
        user=subject,
        error_code="invalid_state",
    )


# ----------------------------------------------------------------------------- memory


@dataclass
class _MemRow:
    tokens: TokenSet | None
    version: int
    status: Status
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    updated_at: float


class MemoryTokenStore:
    """In-memory, thread-safe :class:`TokenStore` with the SQLite store's semantics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[TokenKey, _MemRow] = {}
        self._pending: dict[bytes, PendingAuth] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenStore(rows={len(self._rows)})"

    def get(self, key: TokenKey) -> TokenRecord | None:
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                return None
            return TokenRecord(
                key=key,
                tokens=copy.copy(row.tokens),
                version=row.version,
                status=row.status,
                lease_owner=row.lease_owner,
                lease_until=row.lease_until,
                last_error=row.last_error,
                updated_at=row.updated_at,
            )

    def put(self, key: TokenKey, tokens: TokenSet, *, now: float) -> int:
        with self._lock:
            old = self._rows.get(key)
            version = (old.version if old else 0) + 1
            self._rows[key] = _MemRow(copy.copy(tokens), version, "active", None, None, None, now)
            return version

    def try_lease(
        self, key: TokenKey, *, version: int, owner: str, now: float, lease_seconds: float
    ) -> bool:
        with self._lock:
            row = self._rows.get(key)
            if row is None or row.version != version or row.status != "active":
                return False
            if row.lease_until is not None and row.lease_until >= now:
                return False
            row.lease_owner, row.lease_until = owner, now + lease_seconds
            return True

    def commit_refresh(self, key: TokenKey, *, owner: str, tokens: TokenSet, now: float) -> int:
        with self._lock:
            row = self._rows.get(key)
            if row is None or row.lease_owner != owner or row.status != "active":
                raise LeaseLostError(
                    f"refresh lease for {_describe(key)} is not held by this worker"
                )
            row.tokens = _merge(row.tokens, tokens)
            row.version += 1
            row.lease_owner = row.lease_until = row.last_error = None
            row.updated_at = now
            return row.version

    def release_lease(self, key: TokenKey, *, owner: str, error: str | None = None) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row.lease_owner == owner:
                row.lease_owner = row.lease_until = None
                row.last_error = error

    def mark_needs_consent(self, key: TokenKey, *, reason: str, now: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                row.tokens = row.lease_owner = row.lease_until = None
                row.status, row.last_error, row.updated_at = "needs_consent", reason, now
                row.version += 1

    def mark_revoked(self, key: TokenKey, *, reason: str, now: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                row.lease_owner = row.lease_until = None
                row.status, row.last_error, row.updated_at = "revoked", reason, now
                row.version += 1

    def delete(self, key: TokenKey) -> None:
        with self._lock:
            self._rows.pop(key, None)

    def list(self) -> list[TokenInfo]:
        with self._lock:
            return [
                TokenInfo(
                    provider=k.provider,
                    client_id=k.client_id,
                    subject=k.subject,
                    status=r.status,
                    expires_at=r.tokens.expires_at if r.tokens else None,
                    scope=r.tokens.scope if r.tokens else None,
                    has_refresh_token=bool(r.tokens and r.tokens.refresh_token is not None),
                    updated_at=r.updated_at,
                    reason=r.last_error,
                )
                for k, r in sorted(
                    self._rows.items(),
                    key=lambda kv: (kv[0].provider, kv[0].client_id, kv[0].subject),
                )
            ]

    def save_pending(self, pending: PendingAuth) -> None:
        with self._lock:
            now = pending.created_at
            for h in [h for h, p in self._pending.items() if p.expires_at < now]:
                del self._pending[h]
            h = state_hash(pending.state)
            if h in self._pending:
                raise TokenStoreError("a pending consent with this state already exists")
            self._pending[h] = copy.copy(pending)

    def take_pending(
        self, state: str, *, now: float, web_session: str | None = None
    ) -> PendingAuth | None:
        h = state_hash(state)
        with self._lock:
            pending = self._pending.get(h)
            if pending is not None and pending.expires_at > now:
                check_web_session(
                    pending.web_session,
                    web_session,
                    provider=pending.provider,
                    subject=pending.subject,
                )
            pending = self._pending.pop(h, None)
        if pending is None or pending.expires_at <= now:
            return None
        return pending

    def close(self) -> None:
        """Nothing to release."""


def _merge(old: TokenSet | None, new: TokenSet) -> TokenSet:
    """The tokens to store after a refresh: keep the old RT (and its expiry, scope) if absent."""
    merged = copy.copy(new)
    if old is not None:
        if new.refresh_token is None:
            merged = replace(
                merged,
                refresh_token=old.refresh_token,
                refresh_expires_at=old.refresh_expires_at,
            )
        if new.scope is None:
            merged = replace(merged, scope=old.scope)
    return merged


def _describe(key: TokenKey) -> str:
    return f"provider {key.provider!r}, subject {key.subject!r}"


# ----------------------------------------------------------------------------- SQL stores

_COLUMNS = (
    "access_token, refresh_token, token_type, granted_scope, expires_at, refresh_expires_at, "
    "version, status, lease_owner, lease_until, last_error, updated_at"
)


def _pk(key: TokenKey) -> tuple[str, str, str]:
    return (key.provider, key.client_id, key.subject)


class EncryptedRows:
    """What the SQL stores share: encryption bound to the row, decoding, corrupt-row handling,
    the schema version check, the lease check and values of a refresh commit, and the encrypted
    pending consents. Only the SQL statements and how they run are the backends' own.

    A backend provides ``_cipher``, ``_select(key)`` (the ``_COLUMNS`` of a row, or None),
    ``_row_key_id(key)``, ``_mark_corrupt(key, version=, reason=)`` and ``_where`` (a name for
    error messages).
    """

    _cipher: TokenCipher

    @property
    def _where(self) -> str:  # pragma: no cover - provided by backends
        raise NotImplementedError

    def _select(self, key: TokenKey) -> Any: ...  # pragma: no cover - provided by backends
    def _row_key_id(self, key: TokenKey) -> str | None: ...  # pragma: no cover
    def _mark_corrupt(
        self, key: TokenKey, *, version: int, reason: str
    ) -> None: ...  # pragma: no cover

    def _aad(self, key: TokenKey, column: str) -> tuple[str, ...]:
        return (*_pk(key), column)

    def _enc(self, key: TokenKey, column: str, value: str | None) -> bytes | None:
        return None if value is None else self._cipher.encrypt(value, aad=self._aad(key, column))

    def _put_values(self, key: TokenKey, tokens: TokenSet, now: float) -> tuple[Any, ...]:
        """Parameters of the upsert, in the column order both backends use."""
        return (
            *_pk(key),
            self._enc(key, "access_token", tokens.access_token),
            self._enc(key, "refresh_token", tokens.refresh_token),
            tokens.token_type,
            tokens.scope,
            tokens.expires_at,
            tokens.refresh_expires_at,
            self._cipher.current_key_id,
            now,
        )

    def _check_schema(self, row: Any) -> None:
        """Refuse a store whose stored schema version (``row``, or None) is not this one's."""
        if row is None or str(row[0]) != str(SCHEMA_VERSION):
            raise TokenStoreError(
                f"token store {self._where} has schema version {row and row[0]!r}; "
                f"this version of remotetables reads version {SCHEMA_VERSION}"
            )

    def _refresh_values(
        self, key: TokenKey, row: Any, *, owner: str, tokens: TokenSet, now: float
    ) -> tuple[Any, ...]:
        """Parameters of the refresh commit's UPDATE, after checking that ``row`` (lease_owner,
        status, refresh_token, refresh_expires_at, granted_scope) shows ``owner``'s lease."""
        if row is None or row[0] != owner or row[1] != "active":
            raise LeaseLostError(
                f"token store {self._where}: refresh lease for {_describe(key)} "
                "is not held by this worker"
            )
        rt_blob, rexp, scope = row[2], tokens.refresh_expires_at, tokens.scope or row[4]
        if tokens.refresh_token is not None:
            rt_blob = self._enc(key, "refresh_token", tokens.refresh_token)
        elif rt_blob is not None:  # keep the old RT, re-encrypted under the current key
            aad = self._aad(key, "refresh_token")
            rt_blob = self._cipher.encrypt(self._cipher.decrypt(bytes(rt_blob), aad=aad), aad=aad)
            rexp = row[3]
        return (
            self._enc(key, "access_token", tokens.access_token),
            rt_blob,
            tokens.token_type,
            scope,
            tokens.expires_at,
            rexp,
            self._cipher.current_key_id,
            now,
            *_pk(key),
        )

    def get(self, key: TokenKey) -> TokenRecord | None:
        for _ in range(5):
            row = self._select(key)
            if row is None:
                return None
            try:
                return self._record(key, row)
            except UnknownKeyError as exc:
                if self._row_key_id(key) == exc.key_id:
                    raise  # another key wrote this row: the wrong key is configured; wipe nothing
                self._mark_corrupt(key, version=int(row[6]), reason=str(exc))
            except CorruptTokenError as exc:
                self._mark_corrupt(key, version=int(row[6]), reason=str(exc))
        raise TokenStoreError(f"token store {self._where}: row for {_describe(key)} keeps changing")

    def _record(self, key: TokenKey, row: Any) -> TokenRecord:
        at, rt, ttype, scope, exp, rexp, version, status, owner, until, err, upd = row
        tokens = None
        if at is not None:
            tokens = TokenSet(
                access_token=self._cipher.decrypt(bytes(at), aad=self._aad(key, "access_token")),
                refresh_token=None
                if rt is None
                else self._cipher.decrypt(bytes(rt), aad=self._aad(key, "refresh_token")),
                token_type=ttype or "Bearer",
                scope=scope,
                expires_at=exp,
                refresh_expires_at=rexp,
            )
        return TokenRecord(key, tokens, int(version), status, owner, until, err, upd)

    def _pending_aad(
        self, provider: str, client_id: str, subject: str, h: bytes
    ) -> tuple[str, ...]:
        return (provider, client_id, subject, "code_verifier", h.hex())

    def _pending_values(self, pending: PendingAuth) -> tuple[Any, ...]:
        """Parameters of the pending-consent INSERT (verifier encrypted), in both backends' order."""
        p, h = pending, state_hash(pending.state)
        verifier = self._cipher.encrypt(
            p.code_verifier, aad=self._pending_aad(p.provider, p.client_id, p.subject, h)
        )
        return (h, p.provider, p.client_id, p.subject, p.redirect_uri, verifier, p.issuer,
                p.web_session, p.created_at, p.expires_at)  # fmt: skip

    def _pending_from_row(self, state: str, row: Any, *, now: float) -> PendingAuth | None:
        """The pending consent of ``state`` from its deleted row; None if none, expired or
        undecryptable."""
        if row is None:
            return None
        provider, client_id, subject, redirect_uri, blob, issuer, session, created, expires = row
        if expires <= now:
            return None
        try:
            verifier = self._cipher.decrypt(
                bytes(blob), aad=self._pending_aad(provider, client_id, subject, state_hash(state))
            )
        except CorruptTokenError:
            return None
        return PendingAuth(
            state, provider, client_id, subject, redirect_uri, verifier, issuer, created, expires,
            session,
        )  # fmt: skip


# The SQLite store lives in sqlitestore.py; it is re-exported here, where callers look for it.
from remotetables.auth.sqlitestore import SQLiteTokenStore  # noqa: E402
