"""A loopback API with validators, the way GitHub documents conditional requests.

Every 200 carries an ``ETag`` (weak, per user: GitHub's vary with the token) and, unless
``etags`` is off, a ``Last-Modified``; ``If-None-Match`` (or, without it, ``If-Modified-Since``)
that still matches gets **304 Not Modified** with the ETag and rate-limit headers but no body
and no ``Link`` header (RFC 9110 does not require a 304 to repeat it). Rows are a bare array,
paged with ``page`` / ``per_page`` and a ``Link: <...>; rel="next"`` header. Each user sees
their own rows (``name`` says whose).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import remotetables
from remotetables.auth.store import MemoryTokenStore, TokenSet
from remotetables.cache import RowCache
from remotetables.config import load_config
from remotetables.session import Runtime


@dataclass
class Request:
    token: str
    page: int
    if_none_match: str | None
    if_modified_since: str | None
    status: int


@dataclass
class State:
    n_rows: int = 12
    per_page: int = 5
    etags: bool = True  # False: only Last-Modified
    modified: float = 1_700_000_000.0  # when the data last changed
    changed: dict[int, str] = field(default_factory=dict)  # id -> new name
    raw: dict[int, bytes] = field(default_factory=dict)  # page -> the body sent as is
    log: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def change(self, row_id: int, name: str, at: float) -> None:
        with self.lock:
            self.changed[row_id] = name
            self.modified = at


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            token = self.headers.get("Authorization", "").removeprefix("Bearer ") or "-"
            page = int(query.get("page", ["1"])[0])
            per = int(query.get("per_page", [str(state.per_page)])[0])
            with state.lock:
                start = (page - 1) * per
                items = [
                    {"id": i, "name": state.changed.get(i, f"{token} row {i}")}
                    for i in range(start, min(start + per, state.n_rows))
                ]
                modified = state.modified
                data = state.raw.get(page) or json.dumps(items).encode()
            etag = 'W/"' + hashlib.sha256(token.encode() + data).hexdigest()[:20] + '"'
            last_modified = email.utils.formatdate(modified, usegmt=True)
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4000"}
            if state.etags:
                headers["ETag"] = etag
            headers["Last-Modified"] = last_modified
            if inm is not None and state.etags:
                fresh = etag in [t.strip() for t in inm.split(",")]
            elif ims is not None:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
                fresh = modified <= since
            else:
                fresh = False
            status = 304 if fresh else 200
            with state.lock:
                state.log.append(Request(token, page, inm, ims, status))
            if not fresh and start + per < state.n_rows:
                base = f"http://{self.headers['Host']}{parts.path}"
                headers["Link"] = f'<{base}?page={page + 1}&per_page={per}>; rel="next"'
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if fresh:
                self.end_headers()
                return
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def serve(state: State) -> Iterator[str]:
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


# ------------------------------------------------------------------ connections to it, in tests

CONFIG = """
[providers.gh]
issuer = "http://127.0.0.1:9"
client_id = "c"
api_origins = ["{base}"]

[tables.items]
provider = "gh"
url = "{base}/repos/o/r/issues"
rows = ""
pagination = "link"
page_size_param = "per_page"
max_page_size = 5
cache_ttl = {ttl}
[tables.items.columns]
id = "INTEGER"
name = "TEXT"
{columns}
"""


class Ticks:
    """The row cache's clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Connections:
    """``connections(base, ttl=..., user=...)``: a connection to the API at ``base`` as alice or
    bob (both hold tokens), all sharing one Runtime whose row cache runs on ``ticks``."""

    def __init__(
        self,
        write_config: Callable[..., Path],
        ticks: Ticks,
        *,
        columns: str = "",
        environ: dict[str, str] | None = None,
    ) -> None:
        self._write_config = write_config
        self._ticks = ticks
        self._columns = columns
        self._environ = environ
        self._runtime: Runtime | None = None
        self._conns: list[remotetables.Connection] = []

    def __call__(self, base: str, *, ttl: int = 30, user: str = "alice") -> remotetables.Connection:
        if self._runtime is None:
            path = self._write_config(CONFIG, base=base, ttl=ttl, columns=self._columns)
            cfg = load_config(path)
            store = MemoryTokenStore()
            rt = Runtime(cfg, token_store=store, cache=RowCache(clock=self._ticks),
                         environ=self._environ)  # fmt: skip
            service = rt.oauth_service()
            for who in ("alice", "bob"):
                key = service.key(cfg.providers["gh"], who)
                store.put(key, TokenSet(f"tok-{who}", None, expires_at=rt.clock() + 3600), now=0)
            self._runtime = rt
        conn = remotetables.connect(":memory:", runtime=self._runtime, user=user)
        self._conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        if self._runtime is not None:
            self._runtime.close()
