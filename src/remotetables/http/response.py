"""What a request gives back (:class:`JsonResponse`, its body read by :func:`loads_json`) and
what a statement's requests count (:class:`Counters`: requests, retries, bytes, revalidated
pages, the last rate-limit budget)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson

from remotetables.http.ratelimit import Budget
from remotetables.http.text import body_message, shorten

__all__ = ["Counters", "JsonResponse", "loads_json"]


def loads_json(content: bytes | bytearray | memoryview) -> Any:
    """An answer's JSON, read as orjson reads it; a number beyond a double's range as well.

    RFC 8259 allows such numbers (``1e999``, an integer of 400 digits) and SQLite reads them as
    +-Inf; orjson refuses the whole document. Such a document is read again by the standard
    library, each number as orjson makes it (an integer within 64 bits stays one, any other
    number is a float, +-Inf beyond the range); NaN and Infinity (not JSON) stay refused, as do
    lone surrogates (``"\\ud800"``, which the standard library reads) and anything else orjson
    refuses (``orjson.JSONDecodeError``). The fast path (remotetables.decoders) skips the fields
    a statement does not read without reading their numbers: both paths read the same documents.
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in exc.msg:
            raise
        try:
            text = bytes(content).decode()  # UTF-8 only (json.loads would take UTF-16 too)
            doc = json.loads(text, parse_int=_int_as_orjson, parse_constant=_not_json)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise exc from None
        bad = _lone_surrogate(doc)
        if bad is not None:  # the standard library reads "\ud800" alone; orjson does not
            at = text.lower().find(f"\\u{ord(bad):04x}")
            raise orjson.JSONDecodeError("lone surrogate in a string", text, max(at, 0)) from None
        return doc


def _lone_surrogate(doc: Any) -> str | None:
    """The first character of ``doc``'s strings (keys too) that UTF-8 cannot hold, if any."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and not node.isascii():
            try:
                node.encode()
            except UnicodeEncodeError as err:
                return node[err.start]
    return None


def _int_as_orjson(text: str) -> int | float:
    if len(text) <= 20:  # int() refuses very long digit strings: those are floats anyway
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return float(text)


def _not_json(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


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
    # the answer's bytes, when asked to keep them (HttpClient.request_json ``keep``)
    content: bytes | None = None

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
