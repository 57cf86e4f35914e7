"""Token storage's own level: the data types and the ``TokenStore`` protocol every store meets.

The implementations sit beside it: :mod:`.memory`, :mod:`.sqlite` and :mod:`.postgres` (the two SQL
stores share :class:`~remotetables.auth.store.rows.EncryptedRows`). None does any network I/O.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

from remotetables.errors import (
    ConsentFailed,
    register_secret,
)

__all__ = [
    "SCHEMA_VERSION",
    "SYSTEM_SUBJECT",
    "Account",
    "ConsentLease",
    "ConsentLeases",
    "PendingAuth",
    "Status",
    "TokenInfo",
    "TokenKey",
    "TokenRecord",
    "TokenSet",
    "TokenStore",
]

SCHEMA_VERSION = 2  # 2: oauth_token.account (1 is upgraded in place on open)
SYSTEM_SUBJECT = "__system__"
Status = Literal["active", "needs_consent", "revoked"]


@dataclass(frozen=True)
class TokenKey:
    """Identifies one grant: provider (issuer key), client id and local subject."""

    provider: str
    client_id: str
    subject: str  # local user name, or SYSTEM_SUBJECT


@dataclass(frozen=True)
class Account:
    """Which account at the provider a grant belongs to: who signed in. Never a token.

    ``name`` is what people recognise (an email, a username, else ``sub``); ``subject`` is the
    provider's stable ``sub`` when known; ``source`` says how it was learnt: ``id_token`` (a
    validated OpenID Connect ID token), ``userinfo`` or ``introspection``.
    """

    name: str
    source: str
    subject: str | None = None
    issuer: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"name": self.name, "source": self.source, "sub": self.subject, "iss": self.issuer},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Account | None:
        """The account stored as :meth:`to_json`; None if it is not one."""
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            return None
        sub, iss = doc.get("sub"), doc.get("iss")
        return cls(
            name=doc["name"],
            source=str(doc.get("source") or "?"),
            subject=sub if isinstance(sub, str) else None,
            issuer=iss if isinstance(iss, str) else None,
        )


@dataclass
class TokenSet:
    """Tokens from one token response. ``expires_at`` is local epoch seconds; None = unknown."""

    access_token: str
    refresh_token: str | None
    token_type: str = "Bearer"
    scope: str | None = None
    expires_at: float | None = None
    refresh_expires_at: float | None = None
    account: Account | None = None  # who signed in (consent); kept across refreshes

    def __post_init__(self) -> None:
        # whatever path shows a message later (an API echoing the token), it is redacted
        register_secret(self.access_token)
        register_secret(self.refresh_token)

    def __repr__(self) -> str:
        rt = "None" if self.refresh_token is None else "'***'"
        return (
            f"TokenSet(access_token='***', refresh_token={rt}, token_type={self.token_type!r}, "
            f"scope={self.scope!r}, expires_at={self.expires_at!r}, "
            f"refresh_expires_at={self.refresh_expires_at!r}, account={self.account!r})"
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
    # a refresh was started under the current (or last) lease and has not ended: the holder
    # may have rotated the refresh token at the server (see TokenStore.begin_refresh)
    refreshing: bool = False
    # the lease is held right now, by the store's own clock (not the reader's)
    lease_live: bool = False


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
    account: str | None = None  # the provider account the grant belongs to, when known


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

    def __post_init__(self) -> None:
        register_secret(self.code_verifier)

    def __repr__(self) -> str:
        return (
            f"PendingAuth(state='***', provider={self.provider!r}, client_id={self.client_id!r}, "
            f"subject={self.subject!r}, redirect_uri={self.redirect_uri!r}, code_verifier='***', "
            f"issuer={self.issuer!r}, created_at={self.created_at!r}, "
            f"expires_at={self.expires_at!r}, web_session={'***' if self.web_session else None})"
        )


class TokenStore(Protocol):
    """Storage for tokens and pending consent transactions. See token-store-design.md.

    Lease times come from the store's own clock, read when the store acts (after any lock
    wait): ``try_lease`` grants ``lease_seconds`` from then (``now`` only replaces that clock
    in tests), so a lease granted after a stall is never already over. ``begin_refresh`` is
    the holder's last check before it calls the token endpoint: True only if it still holds
    the lease with at least ``min_left`` seconds to go, and it then records that a refresh is
    in flight (``TokenRecord.refreshing``) until the commit or release. ``commit_refresh``
    needs the lease, or else ``from_version``: the refreshed tokens then go in only if the
    grant is still the version they were refreshed from (compare-and-set after a lost lease);
    otherwise ``LeaseLostError``.
    """

    def get(self, key: TokenKey) -> TokenRecord | None: ...
    def put(self, key: TokenKey, tokens: TokenSet, *, now: float) -> int: ...
    def try_lease(
        self,
        key: TokenKey,
        *,
        version: int,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
    ) -> bool: ...
    def begin_refresh(self, key: TokenKey, *, owner: str, min_left: float) -> bool: ...
    def commit_refresh(
        self,
        key: TokenKey,
        *,
        owner: str,
        tokens: TokenSet,
        now: float,
        from_version: int | None = None,
    ) -> int: ...
    def release_lease(self, key: TokenKey, *, owner: str, error: str | None = None) -> None: ...
    def mark_needs_consent(self, key: TokenKey, *, reason: str, now: float) -> None: ...
    def mark_revoked(self, key: TokenKey, *, reason: str, now: float) -> None: ...
    def delete(self, key: TokenKey) -> None: ...
    def list(self) -> list[TokenInfo]: ...
    def save_pending(self, pending: PendingAuth) -> None: ...
    def take_pending(
        self, state: str, *, now: float, web_session: str | None = None
    ) -> PendingAuth | None: ...
    def last_signin(self, provider: str, client_id: str) -> str | None: ...
    def set_last_signin(self, provider: str, client_id: str, subject: str | None) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class ConsentLease:
    """Who is asking a user to consent for one grant, across processes and hosts.

    ``owner`` is None when nobody is; ``ended_at`` and ``error`` tell how the last consent
    ended (``error`` None: it succeeded, or was handed to a web app; never token material).
    """

    owner: str | None
    until: float | None
    ended_at: float | None
    error: str | None


@runtime_checkable
class ConsentLeases(Protocol):
    """The pending-consent lease (single-flight consent across processes and hosts).

    Every store of this package has it; a store of one's own without it gets single-flight
    consent within each process only.
    """

    def try_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, lease_seconds: float
    ) -> bool:
        """Take the lease if nobody holds it (or the holder's has run out)."""
        ...

    def end_consent_lease(
        self, key: TokenKey, *, owner: str, now: float, error: str | None = None
    ) -> None:
        """Give the lease back (only ``owner`` can), saying how the consent ended."""
        ...

    def consent_lease(self, key: TokenKey) -> ConsentLease | None:
        """The lease's state; None if no consent was ever run for ``key`` here."""
        ...


def last_signin_key(provider: str, client_id: str) -> str:
    """The meta key under which the SQL stores keep the last user who signed in through a
    provider's consent (a local user name, no secret)."""
    return "last_signin\x1f" + provider + "\x1f" + client_id


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
        if new.account is None:
            merged = replace(merged, account=old.account)
    return merged


def _describe(key: TokenKey) -> str:
    return f"provider {key.provider!r}, subject {key.subject!r}"
