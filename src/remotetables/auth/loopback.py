"""The one-shot loopback listener that catches an authorization redirect (RFC 8252 §7.3, §8.3),
and reading a redirect URL the user pastes while it waits."""

from __future__ import annotations

import hmac
import html
import http.server
import ipaddress
import select
import socket
import threading
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from remotetables.errors import ConsentFailed

__all__ = [
    "CALLBACK_PATH",
    "NOT_A_REDIRECT_URL",
    "LoopbackListener",
    "interactive",
    "is_redirect_url",
    "read_pasted",
    "state_of",
]

CALLBACK_PATH = "/callback"


def state_of(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("state")
    return values[0] if values and len(values) == 1 else None


def is_redirect_url(text: str) -> bool:
    """Whether ``text`` can be an address a browser was redirected to: an absolute http(s)
    URL with a host, or a reference with a query (``/callback?code=...``). What a user
    pastes can be anything; this tells a mistaken paste from a redirect of another sign-in.
    """
    try:
        parts = urlsplit(text.strip())
        if parts.scheme in ("http", "https") and parts.hostname:
            return True
        return parts.scheme in ("", "http", "https") and bool(parts.query)
    except ValueError:
        return False


NOT_A_REDIRECT_URL = (
    "that is not a redirect URL: paste the full address from the browser's address bar "
    "after approving (it starts with {redirect_uri}?)"
)


# ---------------------------------------------------------------------- loopback listener

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>remotetables</title></head>
<body><p>{message}</p></body></html>
"""
_DONE = "Authorization received. You can close this tab."
_DENIED = "Access was denied: remotetables was not authorized. You can close this tab."
_ERROR = (
    "The authorization server returned an error ({error}): remotetables was not authorized. "
    "The terminal says more. You can close this tab."
)
_REJECTED = "This is not the authorization response remotetables is waiting for."
_IGNORED = "This authorization was already handled. You can close this tab."


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = False  # RFC 8252 §8.3: no SO_REUSEADDR on the redirect port
    daemon_threads = True
    listener: LoopbackListener


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a silent connection (browser preconnect) cannot hold a thread forever
    server_version = "remotetables"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the request line holds the authorization code."""

    def do_GET(self) -> None:
        status, message = self.server.listener._handle(self.path, self.headers.get("Host"))
        body = _PAGE.format(message=message).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.send_error(405)


class LoopbackListener:
    """A one-shot HTTP listener for the authorization redirect (RFC 8252 §7.3, §8.3).

    Binds ``host`` (loopback only) on an ephemeral port, serves ``/callback`` until a request
    with the expected ``state`` arrives, then closes. Wrong or missing state gets a 400 page and
    the listener keeps waiting; an ``error=`` response with the right state is accepted (the
    client's ``complete`` turns it into ``ConsentDenied``/``ConsentFailed``).

    >>> # with LoopbackListener(timeout=60) as listener:
    >>> #     uri = listener.redirect_uri; ...; url = listener.wait(state)
    """

    def __init__(self, *, timeout: float = 300, host: str = "127.0.0.1") -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the listener binds only a loopback IP literal, not {host!r}")
        self.timeout = timeout
        self.host = host
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._expected: str | None = None
        self._expected_set = threading.Event()
        self._done = threading.Event()
        self._result: str | None = None
        self._closed = False

    def __enter__(self) -> LoopbackListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise ConsentFailed("the loopback listener is not started")
        return int(self._server.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        """The bound socket address (host, port)."""
        if self._server is None:
            raise ConsentFailed("the loopback listener is not started")
        name = self._server.socket.getsockname()
        return str(name[0]), int(name[1])

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return f"http://{self._authority}{CALLBACK_PATH}"

    def start(self) -> None:
        """Bind the port and serve in a daemon thread. Idempotent."""
        if self._server is not None:
            return
        if self._closed:
            raise ConsentFailed("the loopback listener is one-shot and already closed")
        server_class = type(
            "_BoundServer",
            (_Server,),
            {"address_family": socket.AF_INET6 if ":" in self.host else socket.AF_INET},
        )
        server = server_class((self.host, 0), _Handler)
        server.listener = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="remotetables-consent-listener",
            daemon=True,
        )
        self._thread.start()

    def expect(self, state: str) -> None:
        """Set the state to wait for (requests that arrive earlier are held until then)."""
        self._expected = state
        self._expected_set.set()

    def wait(self, expected_state: str) -> str:
        """Block until the callback with ``expected_state`` arrives; return its full URL.

        Raises :class:`ConsentFailed` on timeout. Always closes the port.
        """
        try:
            self.start()
            self.expect(expected_state)
            if not self._done.wait(self.timeout):
                raise ConsentFailed(
                    f"no authorization response within {self.timeout:g} s", error_code="timeout"
                )
            assert self._result is not None
            return self._result
        finally:
            self.close()

    def deliver(self, url: str) -> bool:
        """Accept a redirect URL that reached us another way (pasted by the user) if it
        carries the expected state; False if it does not, or a response was already taken."""
        state = state_of(url)
        expected = self._expected
        if state is None or expected is None:
            return False
        if not hmac.compare_digest(state.encode(), expected.encode()):
            return False
        with self._lock:
            if self._done.is_set() or self._closed:
                return False
            self._result = url
            self._done.set()
        return True

    @property
    def done(self) -> bool:
        return self._done.is_set() or self._closed

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        self._expected_set.set()  # release handlers held waiting for the state
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handle(self, path: str, host_header: str | None) -> tuple[int, str]:
        """Judge one request: (status, message). Runs in a handler thread."""
        parts = urlsplit(path)
        if parts.path != CALLBACK_PATH:
            return 404, "Not found."
        if host_header is None or host_header.lower() != self._authority:
            return 400, _REJECTED  # DNS-rebinding defence: only our own IP literal
        self._expected_set.wait(self.timeout)
        state = state_of(path)
        expected = self._expected
        if (
            state is None
            or expected is None
            or not hmac.compare_digest(state.encode(), expected.encode())
        ):
            return 400, _REJECTED
        with self._lock:
            if self._done.is_set() or self._closed:
                return 400, _IGNORED
            self._result = f"http://{self._authority}{path}"
            self._done.set()
        return 200, _outcome(path)


def _outcome(path: str) -> str:
    """The page's message for an accepted redirect: received, denied, or the server's error
    code (escaped; the client's ``complete`` judges the response itself)."""
    errors = parse_qs(urlsplit(path).query).get("error")
    if not errors:
        return _DONE
    if errors[0] == "access_denied":
        return _DENIED
    code = "".join(ch for ch in errors[0][:64] if ch.isprintable())
    return _ERROR.format(error=html.escape(code or "unknown"))


def interactive(stream: TextIO) -> bool:
    try:
        return stream.isatty() and hasattr(select, "poll") and stream.fileno() >= 0
    except (ValueError, OSError):  # closed or not a real file
        return False


def read_pasted(stream: TextIO, listener: LoopbackListener, out: TextIO) -> None:
    """Lines pasted while the listener waits: a redirect URL with the right state completes
    the wait. Polls, so the thread ends with the wait and never eats a later line."""
    poller = select.poll()
    try:
        poller.register(stream.fileno(), select.POLLIN)
        redirect_uri = listener.redirect_uri
    except (ValueError, OSError, ConsentFailed):  # not a real file, or the wait is over
        return
    while not listener.done:
        if not poller.poll(200):
            continue
        line = stream.readline()
        if not line:
            return  # end of input
        line = line.strip()
        if not line or listener.done:
            continue
        if not is_redirect_url(line):
            message = NOT_A_REDIRECT_URL.format(redirect_uri=redirect_uri)
            print(message[0].upper() + message[1:] + ".", file=out, flush=True)
        elif not listener.deliver(line):
            print(
                "That is not the redirect address for this sign-in (its state does not match); "
                "paste the full address from the browser's address bar.",
                file=out,
                flush=True,
            )
