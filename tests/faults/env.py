"""Loopback environments for the fault tests: a demo AS + the incidents API, or a rotating AS.

:class:`DemoEnv` runs :class:`DemoAuthServer` and an :class:`IncidentsAPI` that validates its
tokens; :meth:`DemoEnv.connect` opens a remotetables connection whose consent walks the demo
login and consent forms (passwords = user names) and counts how often it ran.
:class:`RotatingEnv` uses ``tests/auth/rotating_as.RotatingAS`` (no consent: tokens are seeded).
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import remotetables
from remotetables.auth.store import TokenKey, TokenRecord, TokenSet
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from tests.auth.rotating_as import RotatingAS
from tests.conftest import incidents_table
from tests.servers.walk import walk_consent

CLIENT_ID = "remotetables-demo"


class Clock:
    """Wall time plus an adjustable offset (skew, suspend/resume, breaker cooldowns)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


class SleepLog:
    """An injected sleep that returns at once and records how long each retry waited.

    Slices of one wait are summed: a new wait starts when ``marker()`` (e.g. the number of
    requests the server saw) changed since the previous slice.
    """

    def __init__(
        self, marker: Callable[[], int] = lambda: 0, hook: Callable[[], None] | None = None
    ):
        self.marker = marker
        self.hook = hook
        self.waits: list[float] = []
        self.calls = 0
        self._last: int | None = None
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls += 1
            mark = self.marker()
            if self._last == mark and self.waits:
                self.waits[-1] += seconds
            else:
                self.waits.append(seconds)
            self._last = mark
        if self.hook is not None:
            self.hook()

    @property
    def total(self) -> float:
        return sum(self.waits)


class Consent:
    """A consent callable that walks the demo AS forms, counting calls per user."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, req: Any) -> str:
        with self._lock:
            self.calls.append(req.user)
        return walk_consent(req.authorization_url, username=req.user, password=req.user)


class DemoEnv:
    def __init__(
        self,
        tmp: Path,
        *,
        access_token_ttl: int = 3600,
        fault_rate: float = 0.0,
        n_rows: int = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tmp = tmp
        self.auth = DemoAuthServer(access_token_ttl=access_token_ttl, clock=clock).start()
        self.api = IncidentsAPI(
            n_rows=n_rows, seed=3, token_validator=self.auth.validate_token, fault_rate=fault_rate
        ).start()
        self.consent = Consent()
        self.conns: list[Any] = []
        self._n = 0

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.api.stop()
        self.auth.stop()

    def config(
        self,
        *,
        provider_extra: str = "",
        table_extra: str = "",
        style: str = "link",
        max_page_size: int = 10,
        settings_extra: str = "",
    ) -> Path:
        self._n += 1
        text = textwrap.dedent(f"""
            [settings]
            token_store = "{self.tmp / "tokens.db"}"
            key_file = "{self.tmp / "token.key"}"
            {settings_extra}
            [providers.demo]
            issuer = "{self.auth.issuer}"
            client_id = "{CLIENT_ID}"
            scopes = ["incidents.read"]
            {provider_extra}
            """)
        extra = 'provider = "demo"\ncache_ttl = 0\n' + textwrap.dedent(table_extra)
        text += incidents_table(
            "inc", style, self.api.base_url, max_page_size=max_page_size, extra=extra
        )
        path = self.tmp / f"faults-{self._n}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def connect(
        self, user: str | None = "alice", *, config: Path | None = None, **kw: Any
    ) -> remotetables.Connection:
        kw.setdefault("consent", self.consent)
        if "runtime" in kw:
            conn = remotetables.connect(":memory:", user=user, **kw)
        else:
            conn = remotetables.connect(":memory:", config=config or self.config(), user=user, **kw)
        self.conns.append(conn)
        return conn

    # -- the stored tokens

    @staticmethod
    def key(conn: Any, user: str) -> TokenKey:
        svc = conn.runtime.oauth_service()
        return svc.key(conn.runtime.provider("demo"), user)  # type: ignore[no-any-return]

    def record(self, conn: Any, user: str) -> TokenRecord | None:
        return conn.runtime.oauth_service().store.get(self.key(conn, user))  # type: ignore[no-any-return]

    def expire_stored(self, conn: Any, user: str) -> int:
        """Make the stored access token of ``user`` expired (locally and at the AS)."""
        store = conn.runtime.oauth_service().store
        rec = store.get(self.key(conn, user))
        assert rec is not None and rec.tokens is not None
        self.auth.expire_access_tokens()
        tokens = replace(rec.tokens, expires_at=time.time() - 10)
        return store.put(self.key(conn, user), tokens, now=time.time())  # type: ignore[no-any-return]


def rows_of(conn: Any, sql: str = "SELECT sys_id, assigned_to FROM inc", *args: Any) -> list[Any]:
    return list(conn.execute(sql, args).fetchall())


def rotating_validator(server: RotatingAS) -> Callable[[str], str | None]:
    """Access token -> subject, as RotatingAS's own /api decides (live family, current AT)."""

    def validate(token: str) -> str | None:
        with server._lock:
            for fam in server._families.values():
                if not fam.revoked and token == fam.access_token:
                    return fam.subject
        return None

    return validate


class RotatingEnv:
    """RotatingAS as the provider's token endpoint, IncidentsAPI checking its tokens."""

    def __init__(self, tmp: Path, **as_kw: Any) -> None:
        self.tmp = tmp
        self.auth = RotatingAS(**as_kw).__enter__()
        self.api = IncidentsAPI(
            n_rows=60, seed=5, token_validator=rotating_validator(self.auth)
        ).start()

    def close(self) -> None:
        self.api.stop()
        self.auth.__exit__(None, None, None)

    def config_text(self, provider_extra: str = "") -> str:
        return textwrap.dedent(f"""
            [settings]
            token_store = "{self.tmp / "tokens.db"}"
            key_file = "{self.tmp / "token.key"}"
            consent = "raise"
            [providers.rot]
            client_id = "{self.auth.client_id}"
            token_endpoint = "{self.auth.token_url}"
            authorization_endpoint = "{self.auth.url}/authorize"
            {provider_extra}
            """) + incidents_table(
            "inc",
            "link",
            self.api.base_url,
            max_page_size=10,
            extra='provider = "rot"\ncache_ttl = 0\n',
        )

    def config(self, provider_extra: str = "") -> Path:
        path = self.tmp / "rot.toml"
        path.write_text(self.config_text(provider_extra), encoding="utf-8")
        return path

    def key(self, user: str = "alice") -> TokenKey:
        return TokenKey(self.auth.token_url, self.auth.client_id, user)

    def seed(self, conn: Any, user: str = "alice", *, expires_in: float | None = -10) -> str:
        """A fresh token family at the AS, stored for ``user``; returns its RT."""
        at, rt = self.auth.seed(user)
        exp = None if expires_in is None else time.time() + expires_in
        conn.runtime.oauth_service().store.put(
            self.key(user), TokenSet(at, rt, expires_at=exp), now=time.time()
        )
        return rt


class OutageAS:
    """A token endpoint that is down in a chosen way; counts hits. ``mode``: 500, 429_text,
    502_html, not_json, 503 (also for /revoke), ok_revoke."""

    def __init__(self, mode: str = "500") -> None:
        self.mode = mode
        self.hits = 0
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.hits += 1
                owner.paths.append(self.path)
                status, ctype, body, extra = owner.answer()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        if self.mode == "429_text":
            return 429, "text/plain", b"slow down", [("Retry-After", "7")]
        if self.mode == "502_html":
            return 502, "text/html", b"<html><h1>Bad Gateway</h1></html>", []
        if self.mode == "not_json":
            return 200, "application/json", b'{"access_token": "abc", "token_ty', []
        if self.mode == "503":
            return 503, "application/json", b'{"error": "temporarily_unavailable"}', []
        if self.mode == "ok_revoke":
            return 200, "application/json", b"{}", []
        return 500, "application/json", b'{"error": "server_error"}', []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def iter_close(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for t in things:
            t.close()
