"""OAuth 2.0 client: discovery, authorization code + PKCE, refresh, revocation, device grant.

Protocol pieces come from authlib (S256 challenge, well-known URL); the HTTP requests are ours,
so that no grant is ever sent implicitly (authlib turns an error callback into a
client_credentials request) and so that every failure maps onto the remotetables error tree.

The client's settings and endpoint discovery are in :mod:`remotetables.auth.discovery`, the
token-endpoint HTTP plumbing the grants share in :mod:`remotetables.auth.tokenendpoint`.

Error messages carry the provider name and the authorization server's error code and
description, never a token, code, verifier or client secret.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx2
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from remotetables.auth.account import AccountResolver, check_account, nonce_for
from remotetables.auth.discovery import (
    OAuthSettings,
    ServerMetadata,
    _clean,
    require_secure_url,
)
from remotetables.auth.loopback import NOT_A_REDIRECT_URL, is_redirect_url
from remotetables.auth.store import PendingAuth, TokenSet
from remotetables.auth.tokenendpoint import TokenEndpointClient, _ErrorResponse, _number
from remotetables.config import is_loopback_host
from remotetables.errors import (
    AuthError,
    ConfigError,
    ConsentDenied,
    ConsentFailed,
    ProviderUnavailable,
    register_secret,
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
_CLIENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
)


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


class OAuthClient(TokenEndpointClient):
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
        super().__init__(settings, http, clock=clock)
        self._accounts = AccountResolver(self)

    def __repr__(self) -> str:
        return (
            f"OAuthClient(provider={self.settings.name!r}, client_id={self.settings.client_id!r})"
        )

    # ------------------------------------------------------------------ authorization code

    def begin(
        self,
        *,
        subject: str,
        redirect_uri: str,
        ttl: float = 600,
        web_session: str | None = None,
        sign_in: bool = False,
    ) -> tuple[str, PendingAuth]:
        """Start an authorization-code transaction: return the URL and the pending record.

        The pending record holds the verifier: keep it server-side (token store), never in
        the URL, a cookie or an error. ``sign_in`` asks the server to sign the user in again
        (OIDC ``prompt=login``, or ``select_account`` where the server advertises it), as
        does the provider's ``prompt = "always"``; the provider's ``login_hint`` template
        names the account to sign in with.
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
        if "openid" in s.scopes:
            params.append(("nonce", nonce_for(verifier)))
        extra = dict(s.extra_authorize_params)
        prompts = extra.pop("prompt", "").split()
        if sign_in or s.prompt == "always":
            supported = md.prompt_values_supported or ()
            ask = "select_account" if "select_account" in supported else "login"
            if ask not in prompts:
                prompts.insert(0, ask)
        if prompts:
            params.append(("prompt", " ".join(prompts)))
        if s.login_hint is not None:
            params.append(("login_hint", s.login_hint.format(user=subject)))
        params += list(extra.items())
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
        if not is_redirect_url(callback_url):
            raise fail(
                NOT_A_REDIRECT_URL.format(redirect_uri=pending.redirect_uri), "invalid_request"
            )
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
        register_secret(code)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        try:
            doc, now = self._grant_doc(data)
        except _ErrorResponse as exc:
            if exc.error in _CLIENT_ERRORS:
                raise self._provider_error(exc, data) from None
            raise ConsentFailed(
                f"{name}: the code exchange was refused ({self._detail(exc, data)})",
                provider=name,
                user=pending.subject,
                error_code=exc.error,
            ) from None
        tokens = self._token_set(doc, now, " ".join(s.scopes) or None)
        nonce = nonce_for(pending.code_verifier) if "openid" in s.scopes else None
        return self._with_account(tokens, doc, user=pending.subject, nonce=nonce)

    def _with_account(
        self, tokens: TokenSet, doc: dict[str, Any], *, user: str, nonce: str | None
    ) -> TokenSet:
        """``tokens`` with the account that signed in; refused (and revoked, best effort)
        when the ID token is invalid or the account is not the configured one."""
        s = self.settings
        try:
            account = self._accounts.resolve(
                doc, tokens.access_token, user=user, nonce=nonce, scope=tokens.scope
            )
            expected = None if s.account is None else s.account.format(user=user)
            check_account(
                account,
                expected=expected,
                provider=s.name,
                user=user,
                claim=s.account_claim,
                prompt=s.prompt,
            )
        except AuthError:  # invalid ID token, wrong account, keys unreachable ...
            self._discard(tokens)
            raise
        tokens.account = account
        return tokens

    def _discard(self, tokens: TokenSet) -> None:
        """Revoke tokens that will not be stored (best effort: they would only expire)."""
        with contextlib.suppress(AuthError):
            if not (tokens.refresh_token and self.revoke(tokens.refresh_token)):
                self.revoke(tokens.access_token, hint="access_token")

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
        or fall back (no endpoint, 503/5xx/429/408, network error, ``unsupported_token_type``).
        Any other 4xx (``invalid_client``, a bare 401, ``invalid_request`` ...) raises
        :class:`ProviderError`: retrying will not help."""
        endpoint = self.metadata().revocation_endpoint
        if endpoint is None:
            return False
        data = {"token": token, "token_type_hint": hint}
        try:
            response = self._post(endpoint, data, f"revocation of the {hint.replace('_', ' ')}")
        except ProviderUnavailable:
            return False
        if response.status_code == 200:
            return True
        error = self._error_of(response)
        if error is None and response.status_code == 401:
            # the client's authentication failed (RFC 7009 §2.2.1, RFC 6749 §5.2), body or not
            error = _ErrorResponse(401, "invalid_client", None)
        if error is not None and error.error in ("invalid_client", "unauthorized_client"):
            raise self._provider_error(error, data)
        status = response.status_code
        if error is not None and error.error == "unsupported_token_type":
            return False  # the caller falls back (e.g. to the access token)
        if 400 <= status < 500 and status not in (408, 429):
            # any other refusal (invalid_request, a bare 400/403/404): asking again will not help
            raise self._provider_error(
                error or _ErrorResponse(status, f"http_{status}", None), data
            )
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
        response = self._post(endpoint, data, "device authorization request")
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
        register_secret(device_code)
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
        subject: str | None = None,
    ) -> TokenSet:
        """Poll the token endpoint until the user approves (RFC 8628 §3.4, §3.5).

        The deadline is ``dev.expires_at`` on the client's clock; time spent in ``sleep`` also
        counts, so a fake sleep with a frozen clock still ends. With ``subject`` the account
        that approved is recorded and checked as for a browser consent.
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
                doc, now = self._grant_doc(data)
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
            tokens = self._token_set(doc, now, " ".join(self.settings.scopes) or None)
            if subject is None:
                return tokens
            # no nonce in the device grant (RFC 8628): the ID token's other checks still apply
            return self._with_account(tokens, doc, user=subject, nonce=None)
