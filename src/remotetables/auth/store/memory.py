"""In-memory token store with the SQL stores' semantics (tests, short-lived programs)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from remotetables.auth.store.base import (
    ConsentLease,
    PendingAuth,
    Status,
    TokenInfo,
    TokenKey,
    TokenRecord,
    TokenSet,
    _describe,
    _merge,
    check_web_session,
    state_hash,
)
from remotetables.errors import LeaseLostError, TokenStoreError

__all__ = ["MemoryTokenStore"]


@dataclass
class _MemRow:
    tokens: TokenSet | None
    version: int
    status: Status
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    updated_at: float
    refreshing: bool = False


class MemoryTokenStore:
    """In-memory, thread-safe :class:`TokenStore` with the SQLite store's semantics.

    ``clock`` is the store's own clock: lease times come from it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[TokenKey, _MemRow] = {}
        self._pending: dict[bytes, PendingAuth] = {}
        self._consents: dict[TokenKey, ConsentLease] = {}  # pending-consent leases
        self._signins: dict[tuple[str, str], str] = {}

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
                refreshing=row.refreshing,
                lease_live=row.lease_until is not None and row.lease_until >= self._clock(),
            )

    def put(self, key: TokenKey, tokens: TokenSet, *, now: float) -> int:
        with self._lock:
            old = self._rows.get(key)
            version = (old.version if old else 0) + 1
            self._rows[key] = _MemRow(copy.copy(tokens), version, "active", None, None, None, now)
            return version

    def try_lease(
        self,
        key: TokenKey,
        *,
        version: int,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
    ) -> bool:
        with self._lock:
            at = self._clock() if now is None else now
            row = self._rows.get(key)
            if row is None or row.version != version or row.status != "active":
                return False
            if row.lease_until is not None and row.lease_until >= at:
                return False
            row.lease_owner, row.lease_until = owner, at + lease_seconds
            return True

    def begin_refresh(self, key: TokenKey, *, owner: str, min_left: float) -> bool:
        with self._lock:
            row = self._rows.get(key)
            if row is None or row.lease_owner != owner or row.status != "active":
                return False
            if row.lease_until is None or row.lease_until - self._clock() < min_left:
                return False
            row.refreshing = True
            return True

    def commit_refresh(
        self,
        key: TokenKey,
        *,
        owner: str,
        tokens: TokenSet,
        now: float,
        from_version: int | None = None,
    ) -> int:
        with self._lock:
            row = self._rows.get(key)
            held = row is not None and row.lease_owner == owner
            unchanged = row is not None and from_version is not None and row.version == from_version
            if row is None or row.status != "active" or not (held or unchanged):
                raise LeaseLostError(
                    f"refresh lease for {_describe(key)} is not held by this worker"
                )
            row.tokens = _merge(row.tokens, tokens)
            row.version += 1
            row.lease_owner = row.lease_until = row.last_error = None
            row.refreshing = False
            row.updated_at = now
            return row.version

    def release_lease(self, key: TokenKey, *, owner: str, error: str | None = None) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row.lease_owner == owner:
                row.lease_owner = row.lease_until = None
                row.last_error, row.refreshing = error, False

    def mark_needs_consent(self, key: TokenKey, *, reason: str, now: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                row.tokens = row.lease_owner = row.lease_until = None
                row.status, row.last_error, row.updated_at = "needs_consent", reason, now
                row.refreshing = False
                row.version += 1

    def mark_revoked(self, key: TokenKey, *, reason: str, now: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                row.lease_owner = row.lease_until = None
                row.status, row.last_error, row.updated_at = "revoked", reason, now
                row.refreshing = False
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
                    account=r.tokens.account.name if r.tokens and r.tokens.account else None,
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

    # -- pending-consent lease (ConsentLeases)

    def try_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, lease_seconds: float
    ) -> bool:
        with self._lock:
            lease = self._consents.get(key)
            if lease is not None and lease.owner is not None and (lease.until or 0) >= now:
                return False
            ended = lease.ended_at if lease is not None else None
            self._consents[key] = ConsentLease(owner, now + lease_seconds, ended, None)
            return True

    def end_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, error: str | None = None
    ) -> None:
        with self._lock:
            lease = self._consents.get(key)
            if lease is not None and lease.owner == owner:
                self._consents[key] = ConsentLease(None, None, now, error)

    def consent_lease(self, key: TokenKey) -> ConsentLease | None:
        with self._lock:
            return self._consents.get(key)

    def last_signin(self, provider: str, client_id: str) -> str | None:
        with self._lock:
            return self._signins.get((provider, client_id))

    def set_last_signin(self, provider: str, client_id: str, subject: str | None) -> None:
        with self._lock:
            if subject is None:
                self._signins.pop((provider, client_id), None)
            else:
                self._signins[(provider, client_id)] = subject

    def close(self) -> None:
        """Nothing to release."""
