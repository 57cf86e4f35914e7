"""A loopback JSON API of incidents for tests, benchmarks and ``remotetables demo``.

It serves the same rows in every common pagination style, per-user data behind bearer tokens, a
ServiceNow Table API shape and a GitHub list-API shape, with fault injection (:mod:`.api_faults`).

>>> import httpx2
>>> with IncidentsAPI(n_rows=5) as api:
...     rows = httpx2.get(f"{api.base_url}/styles/offset/incidents?limit=2").json()
>>> rows["total"], len(rows["results"])
(5, 2)

Run it alone with ``python -m remotetables.demo.api.server --rows 100000 --port 0``: it prints one line
``READY http://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import signal
import socket
import struct
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from remotetables.demo.api.data import (
    Dataset,
    Row,
    generate_bulk,
    generate_incidents,
    generate_issues,
)
from remotetables.demo.api.faults import Fault, FaultKind, FaultSet
from remotetables.demo.api.routes import HTTPFailure, Request, Response, Router

__all__ = [
    "Fault",
    "FaultKind",
    "FaultSet",
    "IncidentsAPI",
    "RequestRecord",
    "main",
    "token_fingerprint",
]

_REDACTED_PARAMS = frozenset(
    {"access_token", "refresh_token", "token", "id_token", "code", "client_secret", "api_key"}
)


def token_fingerprint(token: str) -> str:
    """What the request log keeps of a token: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server saw it. Never holds a token, only its fingerprint.

    ``status`` is 0 when no response was sent (closed or reset connection); ``fault`` names the
    injected fault kind, if any. Secret-looking query parameters are stored as ``***``.
    ``header_names`` are the request's header names, lower case (never their values).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    user: str | None
    token_fp: str | None
    status: int
    fault: str | None = None
    header_names: frozenset[str] = frozenset()


class _PageCache:
    """LRU of serialized row arrays, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], build: Callable[[], bytes]) -> bytes:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = build()
        with self._lock:
            if key not in self._items and len(value) <= self._max:
                self._items[key] = value
                self._size += len(value)
                while self._size > self._max:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old)
        return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: IncidentsAPI) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the peer went away: nothing to report
            return
        super().handle_error(request, client_address)


class IncidentsAPI:
    """The loopback incidents API: a ``ThreadingHTTPServer`` in a daemon thread.

    Datasets: ``incidents`` (``n_rows`` generated incidents), ``bulk`` (``n_rows`` flat rows of 8
    fields, visible to every user), ``issues`` (``n_rows`` GitHub issues), plus ``datasets`` given
    by name (which replace generated ones of the same name). Generated datasets are built on first
    use. With ``token_validator`` or ``static_tokens`` every route but ``/echo`` needs a bearer
    token, and a user sees only rows whose ``assigned_to`` is that user (rows without an
    ``assigned_to`` key are visible to all).
    """

    def __init__(
        self,
        datasets: Mapping[str, Sequence[Row]] | None = None,
        *,
        n_rows: int = 250,
        users: Sequence[str] = ("alice", "bob", "carol"),
        token_validator: Callable[[str], str | None] | None = None,
        static_tokens: Mapping[str, str] | None = None,
        latency: float = 0.0,
        seed: int = 0,
        max_page_size: int = 1000,
        default_page_size: int = 100,
        fault_rate: float = 0.0,
        port: int = 0,
        page_cache_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        self.users = tuple(users)
        self.latency = latency
        self.seed = seed
        self.max_page_size = max_page_size
        self.default_page_size = min(default_page_size, max_page_size)
        self.faults = FaultSet(seed=seed, fault_rate=fault_rate)
        self._validator = token_validator
        self._static_tokens = dict(static_tokens or {})
        self._port = port
        self._factories: dict[str, Callable[[], Sequence[Row]]] = {
            "incidents": lambda: generate_incidents(n_rows, users=self.users, seed=seed),
            "bulk": lambda: generate_bulk(n_rows, seed=seed),
            "issues": lambda: generate_issues(n_rows, users=self.users, seed=seed),
        }
        for name, rows in (datasets or {}).items():
            self._factories[name] = functools.partial(_copy_rows, rows)
        self._datasets: dict[str, Dataset] = {}
        self._data_lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.page_cache = _PageCache(page_cache_bytes)
        self.router = Router(self)  # router.matchers: more ways to filter, chosen by _match=NAME

    def __repr__(self) -> str:  # never shows tokens
        where = self.base_url if self._server is not None else "stopped"
        auth = "validator" if self._validator else "static" if self._static_tokens else "none"
        return f"IncidentsAPI({where}, auth={auth})"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> IncidentsAPI:
        """Bind 127.0.0.1 and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("IncidentsAPI already started")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"IncidentsAPI:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> IncidentsAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("IncidentsAPI is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- data and auth

    @property
    def auth_required(self) -> bool:
        return self._validator is not None or bool(self._static_tokens)

    @property
    def dataset_names(self) -> list[str]:
        return sorted(self._factories)

    def dataset(self, name: str) -> Dataset:
        """The named dataset, built on first use; ``KeyError`` if there is none."""
        found = self._datasets.get(name)
        if found is not None:
            return found
        with self._data_lock:
            found = self._datasets.get(name)
            if found is None:
                found = Dataset(name, self._factories[name]())
                self._datasets[name] = found
            return found

    def warm(self, name: str, page_size: int | None = None) -> int:
        """Serialize every unfiltered page of a shared dataset ahead of time; returns pages."""
        size = min(page_size or self.max_page_size, self.max_page_size)
        return self.router.warm(self.dataset(name), size)

    def authenticate(self, token: str | None) -> str | None:
        """The user a bearer token belongs to, or ``None`` when it is missing or invalid."""
        if token is None:
            return None
        user = self._static_tokens.get(token)
        if user is None and self._validator is not None:
            user = self._validator(token)
        return user

    def wait(self, seconds: float) -> None:
        """Sleep that :meth:`stop` interrupts (used for latency and slow faults)."""
        if seconds > 0:
            self._stopping.wait(seconds)

    # ---------------------------------------------------------------- request log

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._records_lock:
            return list(self._records)

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._records_lock:
            self._records.append(record)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)


class _Handler(BaseHTTPRequestHandler):
    """Parses the request, applies faults and auth, hands off to the router, writes the answer."""

    protocol_version = "HTTP/1.1"
    server_version = "remotetables-demo-api"
    disable_nagle_algorithm = True
    timeout = 60

    @property
    def api(self) -> IncidentsAPI:
        return cast(_Server, self.server).api

    def setup(self) -> None:
        super().setup()
        self.api._track(self.connection, add=True)

    def finish(self) -> None:
        self.api._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is :attr:`IncidentsAPI.requests`."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    # ---------------------------------------------------------------- the pipeline

    def _serve(self, method: str) -> None:
        api = self.api
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        auth = self.headers.get("Authorization")
        token: str | None = None
        if auth and auth[:7].lower() == "bearer ":
            token = auth[7:].strip() or None
        self._logged = False
        self._fault_kind: str | None = None
        self._user: str | None = None
        self._log_query = {
            k: ["***"] if k.lower() in _REDACTED_PARAMS else v for k, v in query.items()
        }
        self._token_fp = token_fingerprint(token) if token else None
        try:
            user = self._user = api.authenticate(token)
            req = Request(
                method=method,
                path=split.path,
                query=query,
                body=body,
                user=user,
                authorization=auth,
                idempotency_key=self.headers.get("Idempotency-Key"),
                base_url=api.base_url,
            )
            api.wait(api.latency)
            window = api.router.window(req)
            fault = api.faults.match(
                method,
                req.path,
                user=user,
                page=window.page if window else None,
                offset=window.offset if window else None,
                random_ok=method == "GET" and window is not None,
            )
            self._fault_kind = fault.kind if fault else None
            self._respond(req, fault, token)
        except OSError:
            self._log(0)
            raise
        except Exception:  # a bug in a route or the token validator: answer 500
            self._write(Response.error(500, "internal_error", "internal server error"))

    def _log(self, status: int) -> None:
        """Append this request to the log once, before any byte of the answer is sent."""
        if self._logged:
            return
        self._logged = True
        self.api._record(
            RequestRecord(
                method=self.command,
                path=urlsplit(self.path).path,
                query=self._log_query,
                user=self._user,
                token_fp=self._token_fp,
                status=status,
                fault=self._fault_kind,
                header_names=frozenset(name.lower() for name in self.headers),
            )
        )

    def _respond(self, req: Request, fault: Fault | None, token: str | None) -> None:
        api = self.api
        kind = fault.kind if fault else None
        if fault is not None and kind in ("close_connection", "reset"):
            self._drop(reset=kind == "reset")
            return
        if fault is not None and kind == "delay":
            api.wait(fault.seconds)
        elif fault is not None and kind in ("status", "html_error", "redirect", "invalid_json"):
            self._write(_fault_response(fault))
            return
        if api.auth_required and req.user is None and req.path != "/echo":
            self._write(
                Response.error(
                    401,
                    "invalid_token",
                    "missing bearer token" if token is None else "invalid bearer token",
                    headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')],
                )
            )
            return
        try:
            resp = api.router.handle(req, fault)
        except HTTPFailure as failure:
            resp = failure.response
        if fault is not None and kind == "wrong_content_type":
            resp.content_type = "text/plain; charset=utf-8"
        if fault is not None and kind == "truncated_body":
            self._write(resp, truncate=True)
        elif fault is not None and kind == "trickle":
            self._write(resp, trickle=(max(1, fault.chunk), fault.seconds))
        else:
            self._write(resp)

    def _drop(self, *, reset: bool) -> None:
        """End the connection without a response: FIN, or RST when ``reset``."""
        self._log(0)
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # the fd closes (RST) once rfile/wfile close in finish()

    def _write(
        self,
        resp: Response,
        *,
        truncate: bool = False,
        trickle: tuple[int, float] | None = None,
    ) -> None:
        lines = [f"HTTP/1.1 {resp.status} {_phrase(resp.status)}", f"Server: {self.server_version}"]
        if resp.content_type is not None:
            lines.append(f"Content-Type: {resp.content_type}")
        if resp.status != 204:
            lines.append(f"Content-Length: {len(resp.body)}")
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        body = resp.body if resp.status != 204 else b""
        if truncate:
            self.close_connection = True
            lines.append("Connection: close")
            body = body[: len(body) // 2]
        elif self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._log(resp.status)
        if trickle is None:
            self._send(head, body)
        else:
            self.wfile.write(head)
            step, pause = trickle
            for start in range(0, len(body), step):
                if self.api._stopping.is_set():
                    self.close_connection = True
                    break
                self.api.wait(pause)
                self.wfile.write(body[start : start + step])

    def _send(self, head: bytes, body: bytes) -> None:
        """Write head and body with one syscall where possible, without copying the body."""
        parts = [memoryview(head), memoryview(body)]
        while parts:
            sent = self.connection.sendmsg(parts)
            while parts and sent >= len(parts[0]):
                sent -= len(parts[0])
                parts.pop(0)
            if parts and sent:
                parts[0] = parts[0][sent:]


def _copy_rows(rows: Sequence[Row]) -> list[Row]:
    return [dict(r) for r in rows]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _fault_response(fault: Fault) -> Response:
    """The whole answer for faults that replace the response."""
    body = fault.body.encode() if isinstance(fault.body, str) else fault.body
    headers = list(fault.headers.items())
    if fault.kind == "html_error":
        html = body or b"<html><body><h1>502 Bad Gateway</h1><p>upstream broke</p></body></html>"
        return Response(fault.status or 502, html, "text/html; charset=utf-8", headers)
    if fault.kind == "redirect":
        assert fault.url is not None  # checked by Fault
        return Response(fault.status or 302, b"", None, [("Location", fault.url), *headers])
    if fault.kind == "invalid_json":
        return Response(
            fault.status or 200, body or b'{"result": [{"sys_id": "abc", "num', headers=headers
        )
    status = fault.status or 500
    if body is None:
        code = "invalid_token" if status == 401 else _phrase(status).lower().replace(" ", "_")
        body = orjson.dumps({"error": code, "message": f"injected {status}"})
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "application/json")
    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
    return Response(status, body, ctype, headers)


# -------------------------------------------------------------------- python -m


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m remotetables.demo.api.server",
        description="Serve the loopback incidents API until SIGTERM/SIGINT.",
    )
    parser.add_argument("--rows", type=int, default=250, help="rows per generated dataset")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-page-size", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="random 500s/resets")
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        metavar="N",
        help="serialize the bulk dataset's pages of N rows before READY",
    )
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN=USER",
        help="accept this bearer token for USER (test use only); repeatable",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the API in the foreground; print ``READY <base_url>`` once it serves."""
    args = _parse_args(argv)
    tokens = dict(item.split("=", 1) for item in args.token)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    api = IncidentsAPI(
        n_rows=args.rows,
        static_tokens=tokens or None,
        latency=args.latency,
        seed=args.seed,
        max_page_size=args.max_page_size,
        fault_rate=args.fault_rate,
        port=args.port,
    )
    for name in api.dataset_names:
        api.dataset(name)
    if args.warm:
        api.warm("bulk", args.warm)
    with api:
        print(f"READY {api.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
