"""What a request gives back (:class:`JsonResponse`) and what a statement's requests count
(:class:`Counters`: requests, retries, bytes, revalidated pages, the last rate-limit budget)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from remotetables.http.ratelimit import Budget
from remotetables.http.text import body_message, shorten

__all__ = ["Counters", "JsonResponse"]


@dataclass
class JsonResponse:
    body: Any
    headers: httpx2.Headers
    url: str
    status: int
    nbytes: int
    # what a fast decoder made of the body (remotetables.decoders): then ``body`` holds only
    # what the paginator reads
    fast: Any = None

    def outline(self) -> str:
        """What the body holds, for an error that did not find the rows in it: its top-level
        keys and the API's own message, if it has one (bounded, URLs redacted)."""
        body = self.body
        if not isinstance(body, Mapping):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "empty"}
            return f"the answer is {kind.get(type(body), 'a number')}"
        if not body:
            return "the answer is an empty object"
        keys = [shorten(" ".join(str(k).split()), 40) for k in list(body)[:10]]
        more = f" and {len(body) - 10} more" if len(body) > 10 else ""
        text = f"the answer has the top-level keys {', '.join(keys)}{more}"
        said = body_message(body, limit=120)
        if said is not None:
            text += f' and says {said[0]}: "{said[1]}"'
        return text


@dataclass
class Counters:
    """What one statement did on the network (updated by the client)."""

    requests: int = 0
    retries: int = 0
    bytes: int = 0
    revalidated: int = 0  # conditional requests answered 304 (cached rows reused)
    budget: Budget | None = None  # the rate limit the last answer announced
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, *, requests: int = 0, retries: int = 0, nbytes: int = 0, revalidated: int = 0
    ) -> None:
        with self.lock:
            self.requests += requests
            self.retries += retries
            self.bytes += nbytes
            self.revalidated += revalidated
