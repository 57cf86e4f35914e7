"""What the hostile server's behaviours share: the request, a behaviour, and writing answers
(raw bytes on the socket), including what a well-behaved server answers."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_plus

if TYPE_CHECKING:
    from tests.servers.hostile.server import HostileServer

ISSUED_ACCESS = "hostile-issued-access-4f1c2b9e7d"
ISSUED_REFRESH = "hostile-issued-refresh-8a3e5c1f0b"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("latin-1"), keep_blank_values=True))

    def secrets(self) -> list[str]:
        """Every credential the client sent: bearer token, Basic credentials, form secrets."""
        out = []
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            out.append(auth[7:])
        elif auth.lower().startswith("basic "):
            # client_id:client_secret, each form-urlencoded (RFC 6749 §2.3.1)
            with contextlib.suppress(ValueError, IndexError):
                out.append(unquote_plus(base64.b64decode(auth[6:]).decode().split(":", 1)[1]))
        for k in (
            "code",
            "code_verifier",
            "refresh_token",
            "token",
            "client_secret",
            "device_code",
        ):
            if k in self.form:
                out.append(self.form[k])
        return out


@dataclass
class Behaviour:
    """``answer(server, conn, request, endpoint)``; ``endpoints``: where it misbehaves (the
    others answer normally); ``table``: which table a query reads."""

    answer: Callable[[HostileServer, socket.socket, Request, str], None]
    endpoints: frozenset[str] = frozenset({"api", "token", "revoke", "discovery"})
    table: str = "t_page"
    doc: str = ""


# ---------------------------------------------------------------- writing answers


def send(conn: socket.socket, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        head += f"Content-Length: {len(body)}\r\n"
    conn.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n" + body)


def send_json(
    conn: socket.socket, status: int, doc: object, extra: list[tuple[str, str]] = ()
) -> None:  # type: ignore[assignment]
    send(conn, status, [("Content-Type", "application/json"), *extra], json.dumps(doc).encode())


def normal(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    """What a well-behaved server answers."""
    mode = req.path.split("/m/", 1)[1].split("/", 1)[0] if "/m/" in req.path else "ok"
    base = f"{server.base_url}/m/{mode}"
    if endpoint == "api":
        items = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
        send_json(conn, 200, {"items": items, "total_pages": 1})
    elif endpoint == "token":
        send_json(
            conn,
            200,
            {
                "access_token": ISSUED_ACCESS,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": ISSUED_REFRESH,
            },
            [("Cache-Control", "no-store")],
        )
    elif endpoint == "revoke":
        send(conn, 200, [], b"")
    elif endpoint == "discovery":
        send_json(
            conn,
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "revocation_endpoint": f"{base}/revoke",
                "code_challenge_methods_supported": ["S256"],
            },
        )
    else:
        send(conn, 404, [], b"")


def _trickle(
    server: HostileServer, conn: socket.socket, pieces: Callable[[int], bytes], every: float
) -> None:
    """Send ``pieces(n)`` every ``every`` seconds until the client leaves or the server stops."""
    n = 0
    while not server.stopping.wait(every):
        try:
            conn.sendall(pieces(n))
        except OSError:
            return
        n += 1
        if n > 600:
            return


def _hold(server: HostileServer, conn: socket.socket) -> None:
    """Keep the connection open, sending nothing, until the client leaves or the server stops."""
    conn.settimeout(0.2)
    while not server.stopping.is_set():
        try:
            if conn.recv(1024) == b"":
                return
        except TimeoutError:
            continue
        except OSError:
            return
