"""A tiny loopback authorization server that rotates refresh tokens with reuse detection.

``POST /token`` (grant_type=refresh_token) rotates the RT; replaying an old RT revokes the
whole family (RFC 9700 §4.14.2). ``GET /api`` answers 200 for a live access token, else 401.
Modes: ``ok``, ``500``, ``invalid_client``, ``hang`` (block until released, then 503
without rotating). Hooks for fault injection: ``before_refresh(headers)`` runs when a refresh
arrives (return True to answer 503 without rotating), ``after_rotation(headers)`` once the
refresh token has rotated, before the answer is sent. Also :func:`make_refresher`, a minimal
httpx2 refresher for the tests.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import httpx2

from remotetables.auth.store import TokenSet
from remotetables.errors import AuthError, ProviderError, ProviderUnavailable, TransportError


@dataclass
class _Family:
    subject: str
    refresh_token: str
    access_token: str
    old_refresh_tokens: set[str] = field(default_factory=set)
    revoked: bool = False


class _Server(ThreadingHTTPServer):
    # many clients connect at once (a connection per request): the default backlog of 5 drops
    # SYNs, which costs a client a 1 s retransmission (a ConnectTimeout with short timeouts)
    request_queue_size = 128


class RotatingAS:
    """The server; use as a context manager. Counters are safe to read after requests finish."""

    def __init__(
        self,
        *,
        client_id: str = "test-client",
        access_ttl: int = 3600,
        refresh_delay: float = 0.0,
        include_refresh_token: bool = True,
    ) -> None:
        self.client_id = client_id
        self.access_ttl = access_ttl
        self.refresh_delay = refresh_delay
        self.include_refresh_token = include_refresh_token
        self.mode = "ok"
        self.refresh_calls = 0  # every POST /token
        self.rotations = 0  # successful refreshes
        self.reuse_detected = 0
        self.before_refresh: Callable[[Any], bool] | None = None
        self.after_rotation: Callable[[Any], None] | None = None
        self.hang_arrived = threading.Event()
        self.hang_release = threading.Event()
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}  # family id -> family
        self._by_rt: dict[str, str] = {}  # any RT ever issued -> family id
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle

    def __enter__(self) -> RotatingAS:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.hang_release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    # -- state

    def seed(self, subject: str) -> tuple[str, str]:
        """Start a token family for ``subject`` as if consent happened; returns (AT, RT)."""
        with self._lock:
            fam_id = secrets.token_hex(4)
            fam = _Family(subject, _new("rt"), _new("at"))
            self._families[fam_id] = fam
            self._by_rt[fam.refresh_token] = fam_id
            return fam.access_token, fam.refresh_token

    def family_of(self, refresh_token: str) -> _Family:
        with self._lock:
            return self._families[self._by_rt[refresh_token]]

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id or self.mode == "invalid_client":
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if self.mode == "500":
            return 500, {"error": "server_error"}
        rt = form.get("refresh_token", "")
        with self._lock:
            fam_id = self._by_rt.get(rt)
            fam = self._families.get(fam_id) if fam_id else None
            if fam is None or fam.revoked:
                return 400, {"error": "invalid_grant"}
            if rt != fam.refresh_token:  # replay of a rotated RT: revoke the whole family
                fam.revoked = True
                self.reuse_detected += 1
                return 400, {"error": "invalid_grant", "error_description": "reused"}
            fam.old_refresh_tokens.add(rt)
            fam.refresh_token, fam.access_token = _new("rt"), _new("at")
            self._by_rt[fam.refresh_token] = fam_id  # type: ignore[index]
            self.rotations += 1
            body: dict[str, Any] = {
                "access_token": fam.access_token,
                "token_type": "Bearer",
                "expires_in": self.access_ttl,
            }
            if self.include_refresh_token:
                body["refresh_token"] = fam.refresh_token
            else:
                fam.refresh_token = rt  # no rotation of the RT itself
                fam.old_refresh_tokens.discard(rt)
            return 200, body

    def _api(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        token = (authorization or "").removeprefix("Bearer ")
        with self._lock:
            for fam in self._families.values():
                if not fam.revoked and token and token == fam.access_token:
                    return 200, {"subject": fam.subject}
        return 401, {"error": "invalid_token"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                if status == 401 and "invalid_token" in data.decode():
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if self.path != "/token":
                    self._send(404, {"error": "not_found"})
                    return
                with server._lock:
                    server.refresh_calls += 1
                if server.mode == "hang":
                    server.hang_arrived.set()
                    server.hang_release.wait(timeout=60)
                    self._send(503, {"error": "temporarily_unavailable"})
                    return
                hook = server.before_refresh
                if hook is not None and hook(self.headers):
                    self._send(503, {"error": "temporarily_unavailable"})
                    return
                if server.refresh_delay:
                    time.sleep(server.refresh_delay)
                status, body = server._refresh(form)
                after = server.after_rotation
                if after is not None and status == 200:
                    after(self.headers)
                self._send(status, body)

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/api":
                    self._send(404, {"error": "not_found"})
                    return
                self._send(*server._api(self.headers.get("Authorization")))

        return Handler


def _new(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(16)}"


def make_refresher(
    token_url: str,
    client_id: str,
    *,
    clock: Callable[[], float] = time.time,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> Callable[[str], TokenSet]:
    """A minimal refresh-token grant over httpx2, mapping errors to remotetables types."""

    def refresh(refresh_token: str) -> TokenSet:
        try:
            with httpx2.Client(timeout=timeout) as client:
                response = client.post(
                    token_url,
                    headers=headers,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": refresh_token,
                        "client_id": client_id,
                    },
                )
        except httpx2.TransportError as exc:
            raise TransportError(f"token endpoint unreachable: {type(exc).__name__}") from None
        received = clock()
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"token endpoint answered {response.status_code}")
        error = body.get("error") if isinstance(body, dict) else None
        if response.status_code != 200 or error:
            if error == "invalid_grant":
                raise AuthError("refresh token rejected", error_code="invalid_grant")
            raise ProviderError(f"token endpoint refused the client: {error}", error_code=error)
        expires_in = body.get("expires_in")
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),
            token_type=body.get("token_type", "Bearer"),
            scope=body.get("scope"),
            expires_at=received + float(expires_in) if expires_in is not None else None,
        )

    return refresh
