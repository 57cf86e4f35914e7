"""The hostile server itself: a threading TCP server on loopback speaking raw HTTP/1.1."""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from tests.servers.hostile.catalog import CATALOG, bomb
from tests.servers.hostile.wire import Request, normal

# ---------------------------------------------------------------- the server


def _endpoint(path: str) -> str:
    if "/.well-known/" in path:
        return "discovery"
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last in ("token", "revoke", "authorize") else "api"


def _mode(path: str) -> str:
    return path.split("/m/", 1)[1].split("/", 1)[0] if "/m/" in path else "ok"


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        got = conn.recv(65536)
        if not got or len(data) > 1 << 20:
            return None
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < min(length, 1 << 20):
        got = conn.recv(65536)
        if not got:
            break
        body += got
    parts = urlsplit(target)
    return Request(method, parts.path, dict(parse_qsl(parts.query)), headers, body)


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(30)
        hostile = self.server.hostile
        try:
            req = _read_request(conn)
            if req is None:
                return
            endpoint = _endpoint(req.path)
            hostile.hits.append((_mode(req.path), endpoint))
            hostile.received.extend(req.secrets())
            behaviour = CATALOG.get(_mode(req.path))
            if behaviour is None or endpoint not in behaviour.endpoints:
                normal(hostile, conn, req, endpoint)
            else:
                behaviour.answer(hostile, conn, req, endpoint)
        except OSError:
            pass


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    hostile: HostileServer


@dataclass
class HostileServer:
    """``with HostileServer() as s:`` serves on ``s.base_url``; ``s.other`` is a second origin."""

    other: HostileServer | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    hits: list[tuple[str, str]] = field(default_factory=list)
    received: list[str] = field(default_factory=list)  # every credential a client sent

    def __post_init__(self) -> None:
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.hostile = self
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HostileServer:
        bomb()  # made once, before any client waits for it
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
