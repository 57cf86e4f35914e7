"""A loopback API that rate-limits the way real APIs document it, on an injected clock.

Shapes (from the public docs, see /work/shared/reference/real-api-facts.md):

* ``/github/...``: GitHub's primary limit. Every answer has ``x-ratelimit-limit``,
  ``-remaining``, ``-used``, ``-reset`` (UTC epoch seconds) and ``-resource: core``; a token over
  its limit gets **403** ``{"message": "API rate limit exceeded for user ID 1.",
  "documentation_url": ...}`` with remaining 0 (GitHub also uses 429 for it: ``status_429``).
  One budget per token: users have separate budgets.
* ``/secondary/...``: GitHub's secondary limit: 403 with ``retry-after`` and "You have exceeded a
  secondary rate limit" for the first ``secondary_refusals`` requests.
* ``/ietf/...``: ``RateLimit: "default";r=R;t=T`` and ``RateLimit-Policy: "default";q=Q;w=W``
  (draft-ietf-httpapi-ratelimit-headers); over the quota: 429 with those fields.
* ``/plain429/...``: the first ``plain_refusals`` requests get a bare 429 (Stripe: no headers),
  or with ``Retry-After`` when ``plain_retry_after`` is set (Microsoft Graph, Slack).

Rows: ``{"rows": [...], "total_pages": N}`` paged by ``page`` (1-based, ``per_page`` rows), so
the client may fetch pages in parallel; the server records the most requests in flight per token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

GITHUB_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


class FakeClock:
    """Unix time that moves only when someone sleeps (shared by server and client)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += seconds
            self.slept.append(seconds)

    def total_slept(self) -> float:
        with self.lock:
            return sum(self.slept)


@dataclass
class Bucket:
    remaining: int
    reset: float


@dataclass
class State:
    clock: FakeClock
    limit: int = 100
    window: float = 3600.0
    n_rows: int = 50
    per_page: int = 5
    status_429: bool = False
    secondary_refusals: int = 0
    plain_refusals: int = 0
    plain_retry_after: str | None = None
    buckets: dict[str, Bucket] = field(default_factory=dict)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (token, path, status)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    delay: threading.Event = field(default_factory=threading.Event)  # never set: a short wait
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bucket(self, token: str, now: float) -> Bucket:
        b = self.buckets.get(token)
        if b is None or b.reset <= now:
            b = self.buckets[token] = Bucket(self.limit, now + self.window)
        return b

    def refused(self, token: str) -> int:
        with self.lock:
            return sum(1 for t, _, s in self.log if t == token and s >= 400)


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            token = self.headers.get("Authorization", "").removeprefix("Bearer ") or "-"
            with state.lock:
                state.in_flight[token] = state.in_flight.get(token, 0) + 1
                state.max_in_flight[token] = max(
                    state.max_in_flight.get(token, 0), state.in_flight[token]
                )
            try:
                # a short pause so that requests sent together overlap on the server
                state.delay.wait(0.02)
                status, headers, body = self.answer(parts.path, query, token)
            finally:
                with state.lock:
                    state.in_flight[token] -= 1
                    state.log.append((token, parts.path, status))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def rows(self, query: dict[str, list[str]]) -> dict[str, Any]:
            page = int(query.get("page", ["1"])[0])
            per = int(query.get("per_page", [str(state.per_page)])[0])
            start = (page - 1) * per
            items = [
                {"id": i, "name": f"row {i}"} for i in range(start, min(start + per, state.n_rows))
            ]
            return {"rows": items, "total_pages": -(-state.n_rows // per)}

        def answer(
            self, path: str, query: dict[str, list[str]], token: str
        ) -> tuple[int, dict[str, str], Any]:
            now = state.clock.now()
            with state.lock:
                if path.startswith("/github/"):
                    b = state.bucket(token, now)
                    headers = {
                        "x-ratelimit-limit": str(state.limit),
                        "x-ratelimit-used": str(state.limit - b.remaining),
                        "x-ratelimit-reset": str(int(b.reset)),
                        "x-ratelimit-resource": "core",
                    }
                    if b.remaining <= 0:
                        headers["x-ratelimit-remaining"] = "0"
                        msg = {
                            "message": "API rate limit exceeded for user ID 1.",
                            "documentation_url": GITHUB_DOCS,
                        }
                        return (429 if state.status_429 else 403), headers, msg
                    b.remaining -= 1
                    headers["x-ratelimit-remaining"] = str(b.remaining)
                    return 200, headers, self.rows(query)
                if path.startswith("/secondary/"):
                    if state.secondary_refusals > 0:
                        state.secondary_refusals -= 1
                        msg = {
                            "message": "You have exceeded a secondary rate limit. Please wait a "
                            "few minutes before you try again.",
                            "documentation_url": GITHUB_DOCS,
                        }
                        return 403, {"retry-after": "30"}, msg
                    return 200, {}, self.rows(query)
                if path.startswith("/ietf/"):
                    b = state.bucket(token, now)
                    t = max(0, int(b.reset - now))
                    policy = {
                        "RateLimit-Policy": f'"default";q={state.limit};w={int(state.window)}'
                    }
                    if b.remaining <= 0:
                        return (
                            429,
                            {**policy, "RateLimit": f'"default";r=0;t={t}'},
                            {"error": "too many requests"},
                        )
                    b.remaining -= 1
                    return (
                        200,
                        {**policy, "RateLimit": f'"default";r={b.remaining};t={t}'},
                        (self.rows(query)),
                    )
                if path.startswith("/plain429/"):
                    if state.plain_refusals > 0:
                        state.plain_refusals -= 1
                        headers = {}
                        if state.plain_retry_after is not None:
                            headers["Retry-After"] = state.plain_retry_after
                        return (
                            429,
                            headers,
                            {"error": {"type": "rate_limit", "message": "Too many requests"}},
                        )
                    return 200, {}, self.rows(query)
                if path.startswith("/forbidden/"):  # a permission problem, budget left
                    headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"}
                    return (
                        403,
                        headers,
                        {
                            "message": "Resource not accessible by integration",
                            "documentation_url": GITHUB_DOCS,
                        },
                    )
            return 404, {}, {"message": "Not Found"}

    return Handler


@contextmanager
def serve(state: State) -> Iterator[str]:
    """The API on 127.0.0.1 (a free port) while the block runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
