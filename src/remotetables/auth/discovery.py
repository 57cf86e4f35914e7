"""Which endpoints a provider's OAuth client uses: its settings, their checks, RFC 8414 discovery.

:class:`OAuthSettings` is a provider's client registration (auth/service.py builds it from the
provider's config); :func:`load_metadata` turns it into the :class:`ServerMetadata` in use
(configured endpoints, completed by discovery), which the OAuth client caches.

Error messages carry the provider name, never a client secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson
from authlib.oauth2.rfc8414 import get_well_known_url

from remotetables.config import is_loopback_host
from remotetables.config.providers import RESERVED_AUTHORIZE_PARAMS, RESERVED_TOKEN_PARAMS
from remotetables.errors import (
    ConfigError,
    ProviderError,
    ProviderUnavailable,
    redact_url,
    register_secret,
)
from remotetables.http.limits import (
    MAX_RESPONSE_BYTES,
    ResponseTooLarge,
    deadline,
    deadline_passed,
    read_limited,
)

log = logging.getLogger("remotetables.auth")

__all__ = [
    "AUTH_METHODS",
    "Answer",
    "OAuthSettings",
    "ServerMetadata",
    "load_metadata",
    "require_secure_url",
    "validate_settings",
]

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
_MAX_DESCRIPTION = 200


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
    timeout: float = 10.0  # each connect / read
    deadline: float = 20.0  # the whole call: connect, headers and body (oauth_timeout)
    max_response_bytes: int = MAX_RESPONSE_BYTES  # decoded
    # sent with every token request (e.g. an RFC 8707 `resource`, or the `audience` some servers
    # need for client credentials); never replaces a parameter of the grant itself
    extra_token_params: Mapping[str, str] = field(default_factory=dict, hash=False)
    # which account signs in (see auth/account.py): templates with {user}
    prompt: str = "auto"  # auto | always | never
    login_hint: str | None = None
    account: str | None = None
    account_claim: str | None = None

    def __post_init__(self) -> None:
        register_secret(self.client_secret)


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
    introspection_endpoint: str | None = None
    jwks_uri: str | None = None  # OpenID Connect: the keys that sign ID tokens
    userinfo_endpoint: str | None = None
    prompt_values_supported: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Answer:
    """An authorization server's answer, read whole (bounded in time and size)."""

    status_code: int
    headers: httpx2.Headers
    content: bytes | bytearray

    def json(self) -> Any:
        """The decoded JSON body, or None when it is not JSON (or nested past 1024 levels).

        The decode error is never chained or kept: it would hold the body (maybe a token).
        """
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return None


def call_server(
    http: httpx2.Client,
    s: OAuthSettings,
    method: str,
    url: str,
    what: str,
    **kwargs: Any,
) -> Answer:
    """One request to the authorization server, under ``s.deadline`` (connect, headers and
    body) and ``s.max_response_bytes``; redirects are never followed. Every failure is a
    :class:`ProviderUnavailable` naming the provider and ``what``; it never carries the
    request body (a code, a refresh token, the client secret)."""
    name = s.name
    try:
        with deadline(s.deadline):
            try:
                with http.stream(
                    method, url, timeout=s.timeout, follow_redirects=False, **kwargs
                ) as response:
                    content = read_limited(response, s.max_response_bytes)
                    if deadline_passed():  # an injected transport does not see the deadline
                        raise httpx2.ReadTimeout("deadline")
            except httpx2.TimeoutException:
                if not deadline_passed():
                    raise
                raise ProviderUnavailable(
                    f"{name}: the authorization server did not finish answering ({what}) within "
                    f"oauth_timeout = {s.deadline:g} s",
                    provider=name,
                ) from None
    except ResponseTooLarge:
        raise ProviderUnavailable(
            f"{name}: the authorization server's answer ({what}) is larger than "
            f"max_response_bytes = {s.max_response_bytes} bytes decoded; not reading it",
            provider=name,
        ) from None
    except httpx2.TransportError as exc:  # its message names no request body
        raise ProviderUnavailable(
            f"{name}: the authorization server is unreachable ({what}: {type(exc).__name__})",
            provider=name,
        ) from exc
    except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as exc:
        raise ProviderUnavailable(
            f"{name}: the authorization server's answer cannot be used ({what}: "
            f"{type(exc).__name__})",
            provider=name,
        ) from exc
    if log.isEnabledFor(logging.DEBUG):  # never the form: it holds codes, tokens, secrets
        log.debug(
            "provider %s: %s %s (%s) -> %d (%d bytes)",
            name,
            method,
            redact_url(url),
            what,
            response.status_code,
            len(content),
        )
    return Answer(response.status_code, response.headers, content)


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


def _clean(text: object, secrets_: tuple[str, ...] = ()) -> str | None:
    """A server-supplied text made safe to show: printable, short, with no secret echoed."""
    if not isinstance(text, str) or not text:
        return None
    out = "".join(ch if ch.isprintable() else " " for ch in text)[:_MAX_DESCRIPTION]
    for secret in secrets_:
        if secret:
            out = out.replace(secret, "***")
    return out


def validate_settings(s: OAuthSettings) -> None:
    """Refuse settings no request could work with (:class:`ConfigError` naming the provider)."""
    key = f"providers.{s.name}"
    if s.token_endpoint_auth_method not in AUTH_METHODS:
        raise ConfigError(
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}", key=key
        )
    if s.token_endpoint_auth_method != "none" and not s.client_secret:
        raise ConfigError(f"{s.token_endpoint_auth_method} needs a client secret", key=key)
    # config loading refuses these already (naming the file); settings built in code are
    # checked here
    clash = sorted(RESERVED_AUTHORIZE_PARAMS.intersection(s.extra_authorize_params))
    if clash:
        raise ConfigError(f"extra authorize parameters may not set {clash}", key=key)
    clash = sorted(RESERVED_TOKEN_PARAMS.intersection(s.extra_token_params))
    if clash:
        raise ConfigError(f"extra token parameters may not set {clash}", key=key)
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


def load_metadata(s: OAuthSettings, http: httpx2.Client) -> ServerMetadata:
    """The endpoints of ``s``: configured ones, completed by discovery (OAuthClient.metadata)."""
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
    assert s.issuer is not None  # validate_settings
    doc = _discover(s, http, s.issuer)
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

    def optional(key: str) -> str | None:
        """An endpoint only the account lookup uses: unusable ones are left out, not fatal."""
        try:
            return endpoint(key, None)
        except ProviderError:
            return None

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
    prompts = doc.get("prompt_values_supported")
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
        introspection_endpoint=optional("introspection_endpoint"),
        jwks_uri=optional("jwks_uri"),
        userinfo_endpoint=optional("userinfo_endpoint"),
        prompt_values_supported=(
            tuple(str(v) for v in prompts) if isinstance(prompts, list) else None
        ),
    )


def _discover(settings: OAuthSettings, http: httpx2.Client, issuer: str) -> dict[str, Any]:
    name = settings.name
    candidates = [
        get_well_known_url(issuer, external=True, suffix="oauth-authorization-server"),
        issuer.rstrip("/") + "/.well-known/openid-configuration",
    ]
    for url in candidates:
        try:
            response = call_server(
                http,
                settings,
                "GET",
                url,
                f"metadata discovery at {redact_url(url)}",
                headers={"Accept": "application/json"},
            )
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(
                f"{exc}: check that the authorization server is running and that "
                f"providers.{name}.issuer is right",
                provider=name,
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(
                f"{name}: metadata discovery at {redact_url(url)} got HTTP "
                f"{response.status_code}: the authorization server is failing or busy; "
                "try again later",
                provider=name,
            )
        if response.status_code != 200:
            continue
        doc = response.json()
        if not isinstance(doc, dict):
            raise ProviderUnavailable(
                f"{name}: metadata at {redact_url(url)} is not a JSON object", provider=name
            )
        return doc
    raise ProviderError(f"{name}: no authorization server metadata for {issuer}", provider=name)
