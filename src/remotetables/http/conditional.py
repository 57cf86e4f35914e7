"""Conditional requests and answers that are errors in disguise.

* :func:`kept_page` / :func:`reuse`: a page answered with an ``ETag`` or ``Last-Modified`` is
  kept (cache.py ``PageCopies``) as its JSON with its headers; a ``304 Not Modified`` to the
  conditional request hands the kept page on, its headers updated with the 304's
  (RFC 9111 4.3.4: a 304 need not repeat ``Link``, so the next page is still found).
* :func:`graphql_errors`: GraphQL answers its errors with 200 and an ``errors`` list.
"""

from __future__ import annotations

from typing import Any

import httpx2
import orjson

from remotetables.cache import PageCopy
from remotetables.errors import redact_text
from remotetables.http.client import JsonResponse
from remotetables.http.response import loads_json
from remotetables.http.text import shorten

__all__ = ["graphql_errors", "kept_page", "reuse"]

_NOT_KEPT = ("set-cookie", "content-encoding", "content-length", "content-type")


def kept_page(response: JsonResponse) -> PageCopy | None:
    """The page to keep for revalidation, or None when it came without a validator."""
    etag = response.headers.get("etag")
    modified = response.headers.get("last-modified")
    if (not etag and not modified) or response.status != 200:
        return None
    headers = tuple((k, v) for k, v in response.headers.multi_items() if k.lower() not in _NOT_KEPT)
    if response.content is not None:  # the bytes as they came (orjson.dumps writes inf as null)
        return PageCopy(etag, modified, response.content, headers)
    # as JSON, now: the scan may fill fields into the decoded rows it is handed
    return PageCopy(etag, modified, orjson.dumps(response.body), headers)


def reuse(response: JsonResponse, copy: PageCopy) -> JsonResponse:
    """The kept page, for a 304 answer to its conditional request."""
    merged = httpx2.Headers(list(copy.headers))
    for name in {k.lower() for k in response.headers}:
        if name not in _NOT_KEPT:
            merged[name] = response.headers[name]
    body = loads_json(copy.content)
    return JsonResponse(body, merged, response.url, 200, len(copy.content))


def graphql_errors(body: Any) -> str | None:
    """``"NOT_FOUND: Could not resolve to a Repository ... (and 1 more)"`` when a GraphQL
    answer has ``errors``; None otherwise."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    listed = errors if isinstance(errors, list) else [errors]
    first = listed[0]
    said = first.get("message") if isinstance(first, dict) else first
    text = shorten(redact_text(" ".join(str(said).split())), 300)
    kind = None
    if isinstance(first, dict):
        ext = first.get("extensions")
        kind = first.get("type") or (ext.get("code") if isinstance(ext, dict) else None)
    more = f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""
    return (f"{kind}: " if isinstance(kind, str) else "") + text + more
