"""OAuth 2.0 client: discovery, authorization code + PKCE, refresh, revocation, device grant.

Protocol pieces come from authlib (S256 challenge, well-known URL); the HTTP requests are ours,
so that no grant is ever sent implicitly (authlib turns an error callback into a
client_credentials request) and so that every failure maps onto the remotetables error tree.

Error messages carry the provider name and the authorization server's error code and
description, never a token, code, verifier or client secret.
"""

from __future__ import annotations

import base64
import email.utils
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx2
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oauth2.rfc8414 import get_well_known_url

from remotetables.auth.store import PendingAuth, TokenSet
from remotetables.config import is_loopback_host
from remotetables.errors import (
    AuthError,
    ConfigError,
    ConsentDenied,
    ConsentFailed,
    ProviderError,
    ProviderUnavailable,
)

__all__ = [
    "DEVICE_CODE_GRANT",
    "DeviceAuthorization",
    "OAuthClient",
    "OAuthSettings",
    "ServerMetadata",
    "is_loopback_host",
    "require_secure_url",
    "s256_challenge",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
# Parameters the client controls; configuration may not override them.
_RESERVED_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
    }
)
_CLIENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
)
_MAX_DESCRIPTION = 200
_SECRET_FIELDS = frozenset({"code", "code_verifier", "refresh_token", "device_code", "token"})


@dataclass(frozen=True)
class OAuthSettings:
    """One provider's client registration (built by config.py from ``[providers.X]``)."""

    name: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    scopes: tuple[str, ...] = ()
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict, hash=False)
    token_endpoint_auth_method: str = "none"
    send_scope_on_refresh: bool = False
    timeout: float = 10.0
    # sent with every token request (e.g. an RFC 8707 `resource`, or the `audience` some servers
    # need for client credentials); never replaces a parameter of the grant itself
    extra_token_params: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ServerMetadata:
    """The endpoints in use: configured ones, completed by RFC 8414 discovery."""

    issuer: str | None
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    authorization_response_iss_parameter_supported: bool = False


@dataclass(frozen=True)
class DeviceAuthorization:
    """An RFC 8628 device authorization; show ``verification_uri`` and ``user_code``."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: float
    expires_at: float


def s256_challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier`` (RFC 7636 §4.2)."""
    return str(create_s256_code_challenge(verifier))


def require_secure_url(url: str, what: str, *, provider: str, config: bool = True) -> str:
    """Return ``url`` if it is https, or http to a loopback host; raise otherwise.

    ``config=True`` raises :class:`ConfigError` (a configured value), else :class:`ProviderError`
    (a value the server advertised).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    ok = parts is not None and bool(host) and not parts.fragment
    if ok and parts is not None:
        ok = parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))
    if ok:
        return url
    message = f"{provider}: {what} must be an https URL (http only on loopback): {url!r}"
    if config:
        raise ConfigError(message, key=f"providers.{provider}")
    raise ProviderError(message, provider=provider)


class _ErrorResponse(Exception):
    """An OAuth error answer (RFC 6749 §5.2) from an endpoint; internal."""

    def __init__(self, status: int, error: str, description: str | None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


def _clean(text: object, secrets_: tuple[str, ...] = ()) -> str | None:
    """A server-supplied text made safe to show: printable, short, with no secret echoed."""
    if not isinstance(text, str) or not text:
        return None
    out = "".join(ch if ch.isprintable() else " " for ch in text)[:_MAX_DESCRIPTION]
    for secret in secrets_:
        if secret:
            out = out.replace(secret, "***")
    return out


def _number(value: object) -> float | None:
    """A non-negative number from JSON (int, float or digit string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    if isinstance(value, str) and value.strip().isdigit():
        return float(value.strip())
    return None


class OAuthClient:
    """The client side of one provider. Thread-safe; holds no user tokens.

    >>> # client = OAuthClient(settings, httpx2.Client())
    >>> # url, pending = client.begin(subject="alice", redirect_uri="http://127.0.0.1:8765/callback")
    """

    def __init__(
        self,
        settings: OAuthSettings,
        http: httpx2.Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: ServerMetadata | None = None
        self._validate_settings()

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the client was built with."""
        return self._clock

    def __repr__(self) -> str:
        return (
            f"OAuthClient(provider={self.settings.name!r}, client_id={self.settings.client_id!r})"
        )

    # ------------------------------------------------------------------ settings, metadata

    def _validate_settings(self) -> None:
        s = self.settings
        key = f"providers.{s.name}"
        if s.token_endpoint_auth_method not in AUTH_METHODS:
            raise ConfigError(
                f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}", key=key
            )
        if s.token_endpoint_auth_method != "none" and not s.client_secret:
            raise ConfigError(f"{s.token_endpoint_auth_method} needs a client secret", key=key)
        clash = sorted(_RESERVED_PARAMS.intersection(s.extra_authorize_params))
        if clash:
            raise ConfigError(f"extra authorize parameters may not set {clash}", key=key)
        if s.issuer is None and not s.token_endpoint:
            raise ConfigError(
                "set issuer, or token_endpoint (and authorization_endpoint for user consent)",
                key=key,
            )
        for what in (
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "device_authorization_endpoint",
        ):
            value = getattr(s, what)
            if value is not None:
                require_secure_url(value, what, provider=s.name)

    def metadata(self) -> ServerMetadata:
        """The endpoints to use; cached.

        Configured endpoints win. Discovery runs only when ``issuer`` is set and the
        authorization or token endpoint is not configured: RFC 8414
        ``/.well-known/oauth-authorization-server`` (path inserted after the host), then
        ``/.well-known/openid-configuration``. The document's ``issuer`` must be identical to
        the configured one; every endpoint must be https (or loopback); if the server lists
        ``code_challenge_methods_supported`` it must include ``S256``.
        """
        with self._lock:
            if self._metadata is None:
                self._metadata = self._load_metadata()
            return self._metadata

    def _load_metadata(self) -> ServerMetadata:
        s = self.settings
        if s.token_endpoint and (s.authorization_endpoint or s.issuer is None):
            # configured endpoints, no discovery; without an authorization endpoint only the
            # client-credentials grant can work (begin() says so)
            return ServerMetadata(
                issuer=s.issuer,
                authorization_endpoint=s.authorization_endpoint or "",
                token_endpoint=s.token_endpoint,
                revocation_endpoint=s.revocation_endpoint,
                device_authorization_endpoint=s.device_authorization_endpoint,
            )
        assert s.issuer is not None  # _validate_settings
        doc = self._discover(s.issuer)
        if doc.get("issuer") != s.issuer:
            raise ProviderError(
                f"{s.name}: discovered issuer {_clean(doc.get('issuer'))!r} is not the "
                f"configured issuer {s.issuer!r}",
                provider=s.name,
            )

        def endpoint(key: str, configured: str | None) -> str | None:
            if configured is not None:
                return configured
            value = doc.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise ProviderError(f"{s.name}: metadata {key} is not a string", provider=s.name)
            return require_secure_url(value, key, provider=s.name, config=False)

        authorization = endpoint("authorization_endpoint", s.authorization_endpoint)
        token = endpoint("token_endpoint", s.token_endpoint)
        if authorization is None or token is None:
            raise ProviderError(
                f"{s.name}: metadata lacks authorization_endpoint or token_endpoint",
                provider=s.name,
            )
        methods = doc.get("code_challenge_methods_supported")
        if methods is not None:
            if not isinstance(methods, list) or "S256" not in methods:
                raise ProviderError(
                    f"{s.name}: the server does not support PKCE S256 "
                    "(code_challenge_methods_supported); refusing to continue",
                    provider=s.name,
                )
            methods = tuple(str(m) for m in methods)
        return ServerMetadata(
            issuer=s.issuer,
            authorization_endpoint=authorization,
            token_endpoint=token,
            revocation_endpoint=endpoint("revocation_endpoint", s.revocation_endpoint),
            device_authorization_endpoint=endpoint(
                "device_authorization_endpoint", s.device_authorization_endpoint
            ),
            code_challenge_methods_supported=methods,
            authorization_response_iss_parameter_supported=(
                doc.get("authorization_response_iss_parameter_supported") is True
            ),
        )

    def _discover(self, issuer: str) -> dict[str, Any]:
        name = self.settings.name
        candidates = [
            get_well_known_url(issuer, external=True, suffix="oauth-authorization-server"),
            issuer.rstrip("/") + "/.well-known/openid-configuration",
        ]
        for url in candidates:
            try:
                response = self._http.get(
                    url,
                    headers={"Accept": "application/json"},
                    timeout=self.settings.timeout,
                    follow_redirects=False,
                )
            except httpx2.HTTPError as exc:
                raise ProviderUnavailable(
                    f"{name}: metadata discovery failed ({type(exc).__name__})", provider=name
                ) from exc
            if response.status_code >= 500 or response.status_code == 429:
                raise ProviderUnavailable(
                    f"{name}: metadata discovery got HTTP {response.status_code}", provider=name
                )
            if response.status_code != 200:
                continue
            try:
                doc = json.loads(response.content)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise ProviderUnavailable(
                    f"{name}: metadata at {url} is not a JSON object", provider=name
                )
            return doc
        raise ProviderError(f"{name}: no authorization server metadata for {issuer}", provider=name)

    # ------------------------------------------------------------------ authorization code

    def begin(
        self,
        *,
        subject: str,
        redirect_uri: str,
        ttl: float = 600,
        web_session: str | None = None,
    ) -> tuple[str, PendingAuth]:
        """Start an authorization-code transaction: return the URL and the pending record.

        The pending record holds the verifier: keep it server-side (token store), never in
        the URL, a cookie or an error.
        """
        s = self.settings
        require_secure_url(redirect_uri, "redirect_uri", provider=s.name)
        md = self.metadata()
        if not md.authorization_endpoint:
            raise ConfigError(
                "user consent needs an authorization endpoint: set issuer (discovery) or "
                "authorization_endpoint",
                key=f"providers.{s.name}.authorization_endpoint",
            )
        verifier = secrets.token_urlsafe(48)  # 64 chars from 48 CSPRNG octets
        state = secrets.token_urlsafe(32)  # 256 bits
        params: list[tuple[str, str]] = [
            ("response_type", "code"),
            ("client_id", s.client_id),
            ("redirect_uri", redirect_uri),
        ]
        if s.scopes:
            params.append(("scope", " ".join(s.scopes)))
        params += [
            ("state", state),
            ("code_challenge", s256_challenge(verifier)),
            ("code_challenge_method", "S256"),
        ]
        params += list(s.extra_authorize_params.items())
        parts = urlsplit(md.authorization_endpoint)
        query = "&".join(q for q in (parts.query, urlencode(params, quote_via=quote)) if q)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        now = self._clock()
        pending = PendingAuth(
            state=state,
            provider=s.name,
            client_id=s.client_id,
            subject=subject,
            redirect_uri=redirect_uri,
            code_verifier=verifier,
            issuer=md.issuer,
            created_at=now,
            expires_at=now + ttl,
            web_session=web_session,
        )
        return url, pending

    def complete(self, pending: PendingAuth, callback_url: str) -> TokenSet:
        """Check the redirect the browser landed on, then exchange the code.

        Raises :class:`ConsentFailed` (state, issuer, expiry, missing code, other errors) or
        :class:`ConsentDenied` (``access_denied``) before any token request is made.
        """
        s = self.settings
        name = s.name

        def fail(message: str, code: str | None = None) -> ConsentFailed:
            return ConsentFailed(
                f"{name}: {message}", provider=name, user=pending.subject, error_code=code
            )

        if pending.provider != name or pending.client_id != s.client_id:
            raise fail("the pending authorization belongs to another provider or client")
        if self._clock() > pending.expires_at:
            raise fail("the authorization transaction has expired; start again")
        params = parse_qs(urlsplit(callback_url.strip()).query, keep_blank_values=True)
        if any(len(values) > 1 for values in params.values()):
            raise fail("the callback repeats a parameter")
        got = {k: v[0] for k, v in params.items()}
        state = got.get("state")
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise fail("the callback state does not match this transaction", "invalid_state")
        md = self.metadata()
        iss = got.get("iss")
        if (
            iss is not None
            and pending.issuer is not None
            and not hmac.compare_digest(iss.encode(), pending.issuer.encode())
        ):
            raise fail(
                f"the callback comes from issuer {_clean(iss)!r}, expected {pending.issuer!r}"
            )
        error = got.get("error")
        if error is not None:
            description = _clean(got.get("error_description"))
            detail = f"{_clean(error)}" + (f": {description}" if description else "")
            if error == "access_denied":
                raise ConsentDenied(
                    f"{name}: authorization was denied ({detail})",
                    provider=name,
                    user=pending.subject,
                    error_code="access_denied",
                )
            raise fail(f"the authorization server returned an error ({detail})", _clean(error))
        if md.authorization_response_iss_parameter_supported and iss is None:
            raise fail("the callback lacks the iss parameter the server promises (RFC 9207)")
        if pending.issuer != md.issuer:
            raise fail("the transaction was started with another issuer")
        code = got.get("code")
        if not code:
            raise fail("the callback carries no authorization code")
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        try:
            return self._grant(data, default_scope=" ".join(s.scopes) or None)
        except _ErrorResponse as exc:
            if exc.error in _CLIENT_ERRORS:
                raise self._provider_error(exc, data) from None
            raise ConsentFailed(
                f"{name}: the code exchange was refused ({self._detail(exc, data)})",
                provider=name,
                user=pending.subject,
                error_code=exc.error,
            ) from None

    # ------------------------------------------------------------------ other grants

    def refresh(self, refresh_token: str) -> TokenSet:
        """Refresh. ``refresh_token`` of the result is None when the server kept the old one.

        The caller (token store) must then keep the old refresh token (RFC 6749 §6).
        ``invalid_grant`` -> ``AuthError(error_code="invalid_grant")``: the grant is gone.
        """
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if self.settings.send_scope_on_refresh and self.settings.scopes:
            data["scope"] = " ".join(self.settings.scopes)
        try:
            return self._grant(data, default_scope=None)
        except _ErrorResponse as exc:
            if exc.error == "invalid_grant":
                raise AuthError(
                    f"{self.settings.name}: the refresh token was refused "
                    f"({self._detail(exc, data)}); consent is needed again",
                    provider=self.settings.name,
                    error_code="invalid_grant",
                ) from None
            raise self._provider_error(exc, data) from None

    def client_credentials(self) -> TokenSet:
        """A token for the client itself (system integration); needs a client secret."""
        if self.settings.token_endpoint_auth_method == "none":
            raise ConfigError(
                "the client_credentials grant needs a confidential client",
                key=f"providers.{self.settings.name}",
            )
        data = {"grant_type": "client_credentials"}
        if self.settings.scopes:
            data["scope"] = " ".join(self.settings.scopes)
        try:
            return self._grant(data, default_scope=data.get("scope"))
        except _ErrorResponse as exc:
            raise self._provider_error(exc, data) from None

    def revoke(self, token: str, *, hint: str = "refresh_token") -> bool:
        """RFC 7009 revocation. True when done (200); False when the caller should retry later
        or fall back (no endpoint, 503/5xx/429, network error, ``unsupported_token_type``)."""
        endpoint = self.metadata().revocation_endpoint
        if endpoint is None:
            return False
        data = {"token": token, "token_type_hint": hint}
        try:
            response = self._post(endpoint, data)
        except ProviderUnavailable:
            return False
        if response.status_code == 200:
            return True
        error = self._error_of(response)
        if error is not None and error.error in ("invalid_client", "unauthorized_client"):
            raise self._provider_error(error, data)
        return False

    # ------------------------------------------------------------------ device grant

    def device_start(self) -> DeviceAuthorization:
        """RFC 8628 §3.1: ask for a device code and a user code."""
        s = self.settings
        endpoint = self.metadata().device_authorization_endpoint
        if endpoint is None:
            raise ConfigError(
                "the provider has no device_authorization_endpoint", key=f"providers.{s.name}"
            )
        data: dict[str, str] = {}
        if s.scopes:
            data["scope"] = " ".join(s.scopes)
        now = self._clock()
        response = self._post(endpoint, data)
        if response.status_code != 200:
            error = self._error_of(response)
            if error is None:
                raise self._unavailable(response)
            raise self._provider_error(error, data)
        doc = self._json_object(response)
        device_code = doc.get("device_code")
        user_code = doc.get("user_code")
        uri = doc.get("verification_uri", doc.get("verification_url"))
        expires_in = _number(doc.get("expires_in"))
        if not (
            isinstance(device_code, str)
            and device_code
            and isinstance(user_code, str)
            and isinstance(uri, str)
            and expires_in is not None
        ):
            raise ProviderUnavailable(
                f"{s.name}: malformed device authorization response", provider=s.name
            )
        complete = doc.get("verification_uri_complete")
        if not isinstance(complete, str):
            complete = None
        require_secure_url(uri, "verification_uri", provider=s.name, config=False)
        if complete is not None:
            require_secure_url(complete, "verification_uri_complete", provider=s.name, config=False)
        return DeviceAuthorization(
            device_code=device_code,
            user_code=_clean(user_code) or "",
            verification_uri=uri,
            verification_uri_complete=complete,
            interval=_number(doc.get("interval")) or 5.0,
            expires_at=now + expires_in,
        )

    def device_poll(
        self,
        dev: DeviceAuthorization,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> TokenSet:
        """Poll the token endpoint until the user approves (RFC 8628 §3.4, §3.5).

        The deadline is ``dev.expires_at`` on the client's clock; time spent in ``sleep`` also
        counts, so a fake sleep with a frozen clock still ends.
        """
        name = self.settings.name
        interval = dev.interval
        start = self._clock()
        slept = 0.0
        data = {"grant_type": DEVICE_CODE_GRANT, "device_code": dev.device_code}
        while True:
            if max(self._clock(), start + slept) + interval > dev.expires_at:
                raise ConsentFailed(
                    f"{name}: the device code expired before approval",
                    provider=name,
                    error_code="expired_token",
                )
            sleep(interval)
            slept += interval
            try:
                return self._grant(data, default_scope=" ".join(self.settings.scopes) or None)
            except _ErrorResponse as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += 5.0
                    continue
                if exc.error == "access_denied":
                    raise ConsentDenied(
                        f"{name}: the user denied the device authorization",
                        provider=name,
                        error_code="access_denied",
                    ) from None
                if exc.error == "expired_token":
                    raise ConsentFailed(
                        f"{name}: the device code expired before approval",
                        provider=name,
                        error_code="expired_token",
                    ) from None
                if exc.error in _CLIENT_ERRORS:
                    raise self._provider_error(exc, data) from None
                raise ConsentFailed(
                    f"{name}: device authorization failed ({self._detail(exc, data)})",
                    provider=name,
                    error_code=exc.error,
                ) from None

    # ------------------------------------------------------------------ HTTP plumbing

    def _post(self, url: str, data: dict[str, str]) -> httpx2.Response:
        """POST a form with client authentication; transport failures -> ProviderUnavailable."""
        s = self.settings
        form = dict(data)
        headers = {"Accept": "application/json"}
        if s.token_endpoint_auth_method == "client_secret_basic":
            assert s.client_secret is not None
            raw = f"{quote(s.client_id, safe='')}:{quote(s.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        else:
            form["client_id"] = s.client_id
            if s.token_endpoint_auth_method == "client_secret_post":
                assert s.client_secret is not None
                form["client_secret"] = s.client_secret
        try:
            response = self._http.post(
                url,
                data=form,
                headers=headers,
                timeout=s.timeout,
                follow_redirects=False,
            )
            response.read()
        except httpx2.HTTPError as exc:
            # Transport errors name the URL and the cause, never the request body.
            raise ProviderUnavailable(
                f"{s.name}: the authorization server is unreachable ({type(exc).__name__})",
                provider=s.name,
            ) from exc
        return response

    def _grant(self, data: dict[str, str], *, default_scope: str | None) -> TokenSet:
        """One token request; returns the validated token set or raises _ErrorResponse."""
        now = self._clock()
        data = {**self.settings.extra_token_params, **data}
        response = self._post(self.metadata().token_endpoint, data)
        if response.status_code != 200:
            error = self._error_of(response)
            if error is None:
                raise self._unavailable(response)
            raise error
        return self._token_set(self._json_object(response), now, default_scope)

    def _token_set(self, doc: dict[str, Any], now: float, default_scope: str | None) -> TokenSet:
        name = self.settings.name
        access = doc.get("access_token")
        if not isinstance(access, str) or not access:
            raise ProviderUnavailable(
                f"{name}: the token response has no access_token", provider=name
            )
        token_type = doc.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ProviderError(
                f"{name}: unsupported token_type {_clean(token_type)!r} (only Bearer)",
                provider=name,
            )
        refresh = doc.get("refresh_token")
        scope = doc.get("scope")
        expires_in = _number(doc.get("expires_in"))
        refresh_expires_in = _number(doc.get("refresh_expires_in"))
        return TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            token_type="Bearer",
            scope=scope if isinstance(scope, str) else default_scope,
            expires_at=None if expires_in is None else now + expires_in,
            refresh_expires_at=None if refresh_expires_in is None else now + refresh_expires_in,
        )

    def _json_object(self, response: httpx2.Response) -> dict[str, Any]:
        try:
            doc = json.loads(response.content)
        except ValueError:
            doc = None  # never chain: JSONDecodeError.doc holds the body (maybe a token)
        if not isinstance(doc, dict):
            raise ProviderUnavailable(
                f"{self.settings.name}: the authorization server answered HTTP "
                f"{response.status_code} with a body that is not a JSON object",
                provider=self.settings.name,
            )
        return doc

    def _error_of(self, response: httpx2.Response) -> _ErrorResponse | None:
        """The OAuth error in a 4xx JSON answer, or None (5xx, 429, not JSON ...)."""
        if not 400 <= response.status_code < 500 or response.status_code == 429:
            return None
        try:
            doc = json.loads(response.content)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
            return None
        return _ErrorResponse(
            response.status_code, _clean(doc["error"]) or "error", doc.get("error_description")
        )

    def _unavailable(self, response: httpx2.Response) -> ProviderUnavailable:
        name = self.settings.name
        exc = ProviderUnavailable(
            f"{name}: the authorization server answered HTTP {response.status_code}",
            provider=name,
        )
        # ProviderUnavailable has no retry_after parameter yet: set it as an attribute.
        setattr(exc, "retry_after", self._retry_after(response))  # noqa: B010
        return exc

    def _retry_after(self, response: httpx2.Response) -> float | None:
        value = response.headers.get("retry-after")
        if not value:
            return None
        seconds = _number(value)
        if seconds is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - self._clock())

    def _detail(self, exc: _ErrorResponse, data: Mapping[str, str]) -> str:
        values = [v for k, v in data.items() if k in _SECRET_FIELDS]
        values.append(self.settings.client_secret or "")
        desc = _clean(exc.description, tuple(v for v in values if len(v) >= 4))
        return exc.error + (f": {desc}" if desc else "")

    def _provider_error(self, exc: _ErrorResponse, data: Mapping[str, str]) -> ProviderError:
        name = self.settings.name
        return ProviderError(
            f"{name}: the authorization server refused the client ({self._detail(exc, data)})",
            provider=name,
            error_code=exc.error,
        )
