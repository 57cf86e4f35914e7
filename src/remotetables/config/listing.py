"""How a table asks for its rows when that is not GET with query parameters:
``method = "POST"`` with a JSON ``body`` template (Jira's JQL search, Elasticsearch-style
search APIs), or a ``graphql`` document (GitHub v4, Shopify, Linear) -> :class:`BodySpec`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from remotetables.config.parse import _Ctx, _get
from remotetables.config.types import BodySpec, PaginationSpec

__all__ = ["LISTING_KEYS", "listing"]

LISTING_KEYS = {"method", "body", "graphql", "idempotent"}
_OPERATION = re.compile(r"^\s*(?:#[^\n]*\n\s*)*(query|mutation|subscription|\{)")


def listing(
    ctx: _Ctx, p: str, raw: Mapping[str, Any], pagination: PaginationSpec
) -> tuple[str, BodySpec | None]:
    """(method, body) of ``[tables.X]``."""
    method = _get(ctx, raw, p, "method", str, "GET").upper()
    if method not in ("GET", "POST"):
        raise ctx.err(f"{p}.method", f"must be GET or POST, not {method!r}")
    template = raw.get("body")
    document = _get(ctx, raw, p, "graphql", str)
    idempotent = _get(ctx, raw, p, "idempotent", bool)
    if document is not None:
        if template is not None:
            raise ctx.err(f"{p}.graphql", "give either body or graphql, not both")
        m = _OPERATION.match(document)
        if m is None or m.group(1) in ("mutation", "subscription"):
            raise ctx.err(
                f"{p}.graphql",
                "must be a GraphQL query (a mutation or subscription cannot list rows)",
            )
        if method != "POST" and "method" in raw:
            raise ctx.err(f"{p}.method", "a GraphQL table is asked with POST")
        method = "POST"
        body = BodySpec(
            {"query": document, "variables": {}},
            params_at=("variables",),
            graphql=True,
            idempotent=True if idempotent is None else idempotent,  # a query changes nothing
        )
    elif method == "POST":
        if template is None:
            template = {}
        if not isinstance(template, Mapping):
            raise ctx.err(f"{p}.body", "must be a table (the JSON object sent)")
        body = BodySpec(dict(template), idempotent=bool(idempotent))
    else:
        if template is not None:
            raise ctx.err(f"{p}.body", 'a body is sent only with method = "POST"')
        if idempotent is not None:
            raise ctx.err(f"{p}.idempotent", 'only for method = "POST" (GET is always retried)')
        return method, None
    if pagination.style in ("link", "next_url"):
        raise ctx.err(
            f"{p}.pagination",
            f"a POST listing pages with a cursor, offset or page number in its body, not "
            f"{pagination.style!r}",
        )
    return method, body
