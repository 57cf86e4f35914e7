"""The HTTP side of an OAuth client's token-endpoint requests, shared by every grant.

Client authentication (none, client_secret_basic, client_secret_post), form POSTs that never
follow redirects, token responses validated into a :class:`TokenSet`, and OAuth error answers
(RFC 6749 §5.2) mapped onto the remotetables error tree. :class:`TokenEndpointClient` is the
base of :class:`~remotetables.auth.oauth.OAuthClient`, which adds the grants themselves.

Error messages carry the provider name and the authorization server's error code and
description, never a token, code, verifier or client secret.
"""

from __future__ import annotations

import base64
import email.utils
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx2

from remotetables.auth.discovery import (
    Answer,
    OAuthSettings,
    ServerMetadata,
    _clean,
    call_server,
    load_metadata,
    validate_settings,
)
from remotetables.auth.store import TokenSet
from remotetables.errors import ProviderError, ProviderUnavailable

__all__ = ["TokenEndpointClient"]

_SECRET_FIELDS = frozenset({"code", "code_verifier", "refresh_token", "device_code", "token"})


# Non-standard token-endpoint error codes with an RFC 6749 meaning (GitHub's OAuth apps)
_ERROR_ALIASES = {
    "bad_verification_code": "invalid_grant",  # the code is wrong or expired
    "bad_refresh_token": "invalid_grant",  # the refresh token is wrong, expired or revoked
    "incorrect_client_credentials": "invalid_client",
}


class _ErrorResponse(Exception):
    """An OAuth error answer (RFC 6749 §5.2) from an endpoint; internal."""

    def __init__(self, status: int, error: str, description: str | None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


_VSCHAR = re.compile(r"[\x20-\x7e]*")
_MAX_TOKEN_LENGTH = 64 * 1024  # JWTs run to a few KiB; longer is a hostile or broken server
_MAX_SECONDS = 10.0**10  # about 300 years: a longer lifetime is no lifetime


def _number(value: object) -> float | None:
    """A non-negative finite number from JSON (int, float or ASCII digit string), else None.

    ``str.isdigit`` accepts ``"²"`` (which ``float`` refuses): only ASCII digits count here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 15):
            return None
        value = int(text)
    if isinstance(value, int | float) and 0 <= value <= _MAX_SECONDS:
        return float(value)
    return None


class TokenEndpointClient:
    """One provider's settings, HTTP client, clock and cached metadata, and the token-side
    requests every grant makes. Thread-safe; holds no user tokens."""

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
        validate_settings(settings)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the client was built with."""
        return self._clock

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
                self._metadata = load_metadata(self.settings, self._http)
            return self._metadata

    # ------------------------------------------------------------------ HTTP plumbing

    def _post(self, url: str, data: dict[str, str], what: str = "token endpoint call") -> Answer:
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
        return call_server(self._http, s, "POST", url, what, data=form, headers=headers)

    def _grant(self, data: dict[str, str], *, default_scope: str | None) -> TokenSet:
        """One token request; returns the validated token set or raises _ErrorResponse."""
        doc, now = self._grant_doc(data)
        return self._token_set(doc, now, default_scope)

    def _grant_doc(self, data: dict[str, str]) -> tuple[dict[str, Any], float]:
        """One token request; the token response (a JSON object) and when it was asked for."""
        now = self._clock()
        data = {**self.settings.extra_token_params, **data}
        grant = data.get("grant_type", "?")
        response = self._post(self.metadata().token_endpoint, data, f"token request, {grant}")
        error = self._error_of(response)
        if error is not None:
            raise error
        if response.status_code != 200:
            raise self._unavailable(response)
        return self._json_object(response), now

    def _token_set(self, doc: dict[str, Any], now: float, default_scope: str | None) -> TokenSet:
        name = self.settings.name
        access = doc.get("access_token")
        if not isinstance(access, str) or not access:
            raise ProviderUnavailable(
                f"{name}: the token response has no access_token", provider=name
            )
        # RFC 6749 requires token_type, but some servers leave it out: such a token is used
        # as a bearer token, as other clients do; another type (mac, DPoP) is refused
        token_type = doc.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ProviderError(
                f"{name}: unsupported token_type {_clean(token_type)!r} (only Bearer)",
                provider=name,
            )
        refresh = doc.get("refresh_token")
        for what, value in (("access_token", access), ("refresh_token", refresh)):
            # RFC 6749 A.12, A.17: 1*VSCHAR. A line break would go into a header as is
            # (and the HTTP library's complaint, quoting the value, into a traceback)
            if isinstance(value, str) and not _VSCHAR.fullmatch(value):
                raise ProviderUnavailable(
                    f"{name}: the token response's {what} has characters a token cannot have "
                    "(only printable ASCII); refusing it",
                    provider=name,
                )
        longest = max(len(access), len(refresh) if isinstance(refresh, str) else 0)
        if longest > _MAX_TOKEN_LENGTH:
            raise ProviderUnavailable(
                f"{name}: the token response holds a token of {longest} characters (more than "
                f"{_MAX_TOKEN_LENGTH}); refusing it",
                provider=name,
            )
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

    def _json_object(self, response: Answer) -> dict[str, Any]:
        doc = response.json()  # never chained: a decode error holds the body (maybe a token)
        if not isinstance(doc, dict):
            raise ProviderUnavailable(
                f"{self.settings.name}: the authorization server answered HTTP "
                f"{response.status_code} with a body that is not a JSON object",
                provider=self.settings.name,
            )
        return doc

    def _error_of(self, response: Answer) -> _ErrorResponse | None:
        """The OAuth error in a 4xx JSON answer, or None (5xx, 429, not JSON ...).

        Some servers (GitHub's) answer token errors with 200 and an ``error`` but no
        ``access_token``, and their own codes: those map to RFC 6749's.
        """
        status = response.status_code
        if status != 200 and (not 400 <= status < 500 or status == 429):
            return None
        doc = response.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
            return None
        if status == 200 and "access_token" in doc:
            return None
        code = _clean(doc["error"]) or "error"
        return _ErrorResponse(status, _ERROR_ALIASES.get(code, code), doc.get("error_description"))

    def _unavailable(self, response: Answer) -> ProviderUnavailable:
        name = self.settings.name
        exc = ProviderUnavailable(
            f"{name}: the authorization server answered HTTP {response.status_code}",
            provider=name,
        )
        # ProviderUnavailable has no retry_after parameter yet: set it as an attribute.
        setattr(exc, "retry_after", self._retry_after(response))  # noqa: B010
        return exc

    def _retry_after(self, response: Answer) -> float | None:
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
