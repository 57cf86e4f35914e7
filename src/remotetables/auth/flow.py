"""The per-request auth: an ``httpx2.Auth`` flow that sets the bearer token.

On a 401 it asks for a new token once (the refresh runs only if the stored token is still the
one that failed) and sends the same request once more. It refuses outright to put a token on a
request to an origin that is not one of the provider's API origins.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import httpx2

from remotetables.config import origin_of
from remotetables.errors import RemoteError, redact_url
from remotetables.http.client import SECRET_HEADER, SECRET_PARAM

__all__ = ["BearerAuth"]


class BearerAuth(httpx2.Auth):
    """``Authorization: Bearer`` from ``get_token``; on 401, ``on_unauthorized(failed) -> new``."""

    requires_response_body = False

    def __init__(
        self,
        get_token: Callable[[], str],
        on_unauthorized: Callable[[str], str | None] | None,
        allowed_origins: frozenset[str],
        provider: str,
        *,
        header: str = "Authorization",
        prefix: str = "Bearer ",
        param: str | None = None,
        unauthorized_hint: str | None = None,
    ) -> None:
        """``param``: send the token as this query parameter instead of a header (APIs that
        take a key in the URL); like the header, it is removed on hops off the origins."""
        self._get_token = get_token
        self._on_unauthorized = on_unauthorized
        self._allowed = allowed_origins
        self._provider = provider
        self._header = header
        self._prefix = prefix
        self._param = param
        self._unauthorized_hint = unauthorized_hint

    @property
    def unauthorized_hint(self) -> str:
        """What a final 401 means for this token, for the error message (http.py)."""
        if self._unauthorized_hint is not None:
            return self._unauthorized_hint
        if self._on_unauthorized is None:
            return "the token was refused; it is never refreshed"
        return "the token was refused, even after a refresh"

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        url = str(request.url)
        if origin_of(url) not in self._allowed:
            raise RemoteError(
                f"provider {self._provider}: refusing to send its token to {origin_of(url)} "
                f"({redact_url(url)}): not one of the provider's API origins (add it to api_origins if it is one)",
                url=url,
                provider=self._provider,
            )
        token = self._get_token()
        self._put(request, token)
        # redirects keep the extensions: http.strip_off_origin_headers drops the header off-origin
        if self._param is None:
            secret = {SECRET_HEADER: (self._header, self._allowed)}
        else:
            secret = {SECRET_PARAM: (self._param, self._allowed)}
        request.extensions = {**request.extensions, **secret}
        response = yield request
        # a 401 from a redirect target on another origin (which got no token) is no reason to refresh
        if (
            response.status_code == 401
            and self._on_unauthorized is not None
            and origin_of(str(response.url)) in self._allowed
        ):
            fresh = self._on_unauthorized(token)
            if fresh and fresh != token:
                self._put(request, fresh)
                yield request

    def _put(self, request: httpx2.Request, token: str) -> None:
        if self._param is None:
            request.headers[self._header] = f"{self._prefix}{token}"
        else:  # set, not add: a next-page link may echo the parameter back
            request.url = request.url.copy_set_param(self._param, token)

    def __repr__(self) -> str:
        return f"BearerAuth(provider={self._provider!r})"
