"""What each hop of a request may carry: the token header (or query parameter) and the caller's
extra headers go only to the origins they belong to, and no hop goes to plain http off loopback.
Used as the request event hook of http/client.py's pooled client (redirects included)."""

from __future__ import annotations

import httpx2

from remotetables.config import is_loopback_host, origin_of
from remotetables.errors import RemoteError, redact_url

__all__ = [
    "EXTRA_HEADERS",
    "SECRET_HEADER",
    "SECRET_PARAM",
    "strip_off_origin_headers",
    "transport_allowed",
]


def transport_allowed(scheme: str, host: str | None) -> bool:
    """https everywhere; plain http only to loopback addresses."""
    return scheme == "https" or (scheme == "http" and is_loopback_host(host))


# request extensions, kept by redirects: (header name, allowed origins) of the token header
# and (header names, origin of the first URL) of the caller's extra headers
SECRET_HEADER = "remotetables.secret_header"
SECRET_PARAM = "remotetables.secret_param"
EXTRA_HEADERS = "remotetables.extra_headers"


def strip_off_origin_headers(request: httpx2.Request) -> None:
    """Every hop of a request (redirects included): credentials go only where they belong.

    The token header the auth flow set goes only to the provider's origins: httpx strips
    ``Authorization`` on cross-origin redirects by itself, but not an API-key header such as
    ``X-API-Key``. The caller's extra headers (the provider's ``headers``, which may carry
    credentials too) go where the token may go, or, on a request without a token, only to the
    origin of the URL first asked for. A hop to plain http off loopback is refused: the answer
    would come back unencrypted (the configured URLs are checked the same way).
    """
    url = request.url
    if not transport_allowed(url.scheme, url.host):
        raise RemoteError(
            f"refusing to follow a redirect to {redact_url(str(url))}: only https (or http to a "
            "loopback address) is allowed",
            url=str(url),
        )
    origin = origin_of(str(url))
    secret = request.extensions.get(SECRET_HEADER)  # (header, allowed origins)
    param = request.extensions.get(SECRET_PARAM)  # (query parameter, allowed origins)
    token_origins: frozenset[str] = (secret or param or ("", frozenset()))[1]
    if origin not in token_origins:  # no token goes here
        if secret is not None:
            request.headers.pop(secret[0], None)
        if param is not None and param[0] in url.params:
            request.url = url.copy_remove_param(param[0])
        extra = request.extensions.get(EXTRA_HEADERS)  # (header names, origin first asked)
        if extra is not None and origin != extra[1]:
            for name in extra[0]:
                request.headers.pop(name, None)
