"""In-memory models of the demo authorization server (clients, codes, tokens, grants)."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, DeviceCredentialDict

__all__ = [
    "AuthCode",
    "ClientModel",
    "DemoClient",
    "DemoStats",
    "DeviceCredential",
    "Family",
    "Store",
    "TokenRecord",
    "TokenRef",
]

_DEFAULT_GRANTS = (
    "authorization_code",
    "refresh_token",
    "client_credentials",
    DEVICE_CODE_GRANT_TYPE,
)
_LOOPBACK_HOSTS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class DemoClient:
    """A registered client. ``client_secret=None`` makes it public (auth method ``none``)."""

    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uris: list[str]
    scopes: str = "incidents.read incidents.write"
    grant_types: Sequence[str] = _DEFAULT_GRANTS
    client_name: str | None = None


def _loopback_match(registered: str, requested: str) -> bool:
    """RFC 8252 7.3: a loopback IP redirect URI matches with any port."""
    try:
        reg, req = urlsplit(registered), urlsplit(requested)
        reg.port, req.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return False
    return (
        req.scheme == reg.scheme == "http"
        and req.hostname in _LOOPBACK_HOSTS
        and req.hostname == reg.hostname
        and req.username is None
        and req.path == reg.path
        and req.query == reg.query
        and not req.fragment
    )


class ClientModel(ClientMixin):  # type: ignore[misc]
    """authlib's view of a :class:`DemoClient`."""

    def __init__(self, client: DemoClient) -> None:
        self.client = client
        self.scopes: tuple[str, ...] = tuple(scope_to_list(client.scopes) or ())

    def __repr__(self) -> str:
        return f"ClientModel({self.client.client_id!r})"

    @property
    def client_name(self) -> str:
        return self.client.client_name or self.client.client_id

    @property
    def is_confidential(self) -> bool:
        return self.client.client_secret is not None

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.client.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(self.scopes)
        return " ".join(s for s in scope_to_list(scope) if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(
            redirect_uri == uri or _loopback_match(uri, redirect_uri)
            for uri in self.client.redirect_uris
        )

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.client.client_secret
        return secret is not None and hmac.compare_digest(secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_confidential:
            return method in ("client_secret_basic", "client_secret_post")
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.client.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and not self.is_confidential:
            return False
        return grant_type in self.client.grant_types


@dataclass(eq=False)
class Family:
    """All tokens that descend from one authorization grant."""

    user: str | None
    client_id: str
    revoked: bool = False


@dataclass(eq=False)
class AuthCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str = field(repr=False)
    client_id: str
    redirect_uri: str | None
    scope: str
    user: str
    code_challenge: str | None = field(repr=False)
    code_challenge_method: str | None
    expires_at: float
    used: bool = False
    family: Family | None = None

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(eq=False)
class TokenRecord:
    """One token response: an access token and maybe a refresh token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    client_id: str
    user: str | None
    scope: str
    issued_at: float
    expires_at: float
    refresh_expires_at: float | None
    family: Family
    access_revoked: bool = False
    refresh_state: Literal["active", "rotated", "revoked"] = "active"


TokenKind = Literal["access_token", "refresh_token"]


class TokenRef(TokenMixin):  # type: ignore[misc]
    """authlib's view of one of the two tokens of a :class:`TokenRecord`."""

    def __init__(self, store: Store, rec: TokenRecord, kind: TokenKind) -> None:
        self.store, self.rec, self.kind = store, rec, kind

    def __repr__(self) -> str:
        return f"TokenRef({self.kind}, client={self.rec.client_id!r}, user={self.rec.user!r})"

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.rec.client_id)

    def get_scope(self) -> str:
        return self.rec.scope

    def get_expires_in(self) -> int:
        return int(self.rec.expires_at - self.rec.issued_at)

    def expires_at(self) -> float | None:
        return self.rec.expires_at if self.kind == "access_token" else self.rec.refresh_expires_at

    def is_expired(self) -> bool:
        at = self.expires_at()
        return at is not None and self.store.clock() >= at

    def is_revoked(self) -> bool:
        if self.rec.family.revoked:
            return True
        if self.kind == "access_token":
            return self.rec.access_revoked
        return self.rec.refresh_state != "active"

    def get_user(self) -> str | None:
        return self.rec.user

    def get_client(self) -> ClientModel:
        return self.store.clients[self.rec.client_id]


class DeviceCredential(DeviceCredentialDict):  # type: ignore[misc]
    """A pending device authorization; expiry follows the injected clock."""

    def __init__(self, *, clock: Callable[[], float], **data: Any) -> None:
        super().__init__(**data)
        self._clock = clock

    def is_expired(self) -> bool:
        return bool(self["expires_at"] <= self._clock())


class DemoStats:
    """Thread-safe counters of the demo server."""

    _FIELDS = (
        "token_requests",
        "code_exchanges",
        "refreshes",
        "refresh_reuse_detected",
        "revocations",
        "introspections",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.token_requests = 0
        self.code_exchanges = 0
        self.refreshes = 0
        self.refresh_reuse_detected = 0
        self.revocations = 0
        self.introspections = 0

    def incr(self, name: str) -> None:
        if name not in self._FIELDS:
            raise AttributeError(name)
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: getattr(self, name) for name in self._FIELDS}

    def __repr__(self) -> str:
        return f"DemoStats({self.snapshot()})"


class Store:
    """Everything the server knows, guarded by ``lock`` (an RLock)."""

    def __init__(
        self,
        *,
        users: dict[str, str],
        clients: dict[str, ClientModel],
        clock: Callable[[], float],
        refresh_token_ttl: int | None,
        rotate_refresh_tokens: bool,
        reuse_detection: bool,
        code_ttl: int,
    ) -> None:
        self.users = users
        self.clients = clients
        self.clock = clock
        self.refresh_token_ttl = refresh_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.reuse_detection = reuse_detection
        self.code_ttl = code_ttl
        self.issuer = ""
        self.lock = threading.RLock()
        self.stats = DemoStats()
        self.codes: dict[str, AuthCode] = {}
        self.by_access: dict[str, TokenRecord] = {}
        self.by_refresh: dict[str, TokenRecord] = {}
        self.families: list[Family] = []
        self.devices: dict[str, DeviceCredential] = {}
        self.user_codes: dict[str, DeviceCredential] = {}
        self.device_grants: dict[str, tuple[str, bool]] = {}

    def __repr__(self) -> str:
        return f"Store(issuer={self.issuer!r}, tokens={len(self.by_access)})"

    def save_token(self, token: dict[str, Any], req: Any) -> None:
        """authlib's ``save_token``: record a token response in its grant family."""
        with self.lock:
            now = self.clock()
            client_id = req.client.get_client_id()
            old: TokenRef | None = req.refresh_token
            if old is not None:
                family = old.rec.family
            else:
                family = Family(user=req.user, client_id=client_id)
                self.families.append(family)
                if req.authorization_code is not None:
                    req.authorization_code.family = family
            refresh = token.get("refresh_token")
            ttl = self.refresh_token_ttl
            rec = TokenRecord(
                access_token=token["access_token"],
                refresh_token=refresh,
                client_id=client_id,
                user=req.user,
                scope=token.get("scope") or "",
                issued_at=now,
                expires_at=now + int(token["expires_in"]),
                refresh_expires_at=None if ttl is None else now + ttl,
                family=family,
            )
            if refresh is None and old is not None:
                # No rotation: the old refresh token stays valid and moves to this record.
                rec.refresh_token = old.rec.refresh_token
                rec.refresh_expires_at = old.rec.refresh_expires_at
            self.by_access[rec.access_token] = rec
            if rec.refresh_token is not None:
                self.by_refresh[rec.refresh_token] = rec

    def find(self, token: str, hint: str | None) -> TokenRef | None:
        """Look a token up; the hint orders the search (RFC 7009 2.1) but does not limit it."""
        kinds: tuple[TokenKind, TokenKind] = (
            ("refresh_token", "access_token")
            if hint == "refresh_token"
            else ("access_token", "refresh_token")
        )
        for kind in kinds:
            rec = (self.by_access if kind == "access_token" else self.by_refresh).get(token)
            if rec is not None:
                return TokenRef(self, rec, kind)
        return None

    def revoke_user(self, user: str) -> int:
        """Revoke every grant and pending code of ``user``."""
        count = 0
        for family in self.families:
            if family.user == user and not family.revoked:
                family.revoked = True
                count += 1
        for code in self.codes.values():
            if code.user == user:
                code.used = True
        return count
