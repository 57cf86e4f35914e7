"""The HTTP layer: the one pooled client with retries, deadlines and error mapping
(:mod:`.client`), and the reading and redaction of what servers answer (:mod:`.text`)."""

from __future__ import annotations

from remotetables.http.client import (
    HttpClient,
    JsonResponse,
    RequestContext,
    RetryPolicy,
    check_url_allowed,
)

__all__ = ["HttpClient", "JsonResponse", "RequestContext", "RetryPolicy", "check_url_allowed"]
