"""A small multi-user web app on remotetables: each request queries as its signed-in user.

* ``GET /login?user=NAME`` signs a user in with a signed cookie (a stand-in for your real
  login; behind an authenticating proxy pass ``user_header="X-Remote-User"`` instead).
* ``GET /tables/{name}`` runs ``SELECT * FROM name`` after ``set_user(user)``; when that user
  has not authorized the provider yet, ``ConsentRequired`` becomes a redirect to the
  authorization server.
* ``GET /callback`` finishes the consent (``remotetables.complete_consent``) for the signed-in user
  and sends them back to the page they wanted.

Tokens live in the token store of the config: for several app servers use PostgreSQL,
``settings.token_store = "postgresql://..."``, with the same key file on every server.

Run it (``pip install -e '.[webapp]'`` first: Starlette and uvicorn)::

    python examples/webapp/app.py --config remotetables.toml --port 8000
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import remotetables
from remotetables.auth.consent import raise_consent
from remotetables.config import Config, load_config
from remotetables.errors import ConsentFailed, ConsentRequired, Error
from remotetables.session import Runtime

USER_COOKIE = "rt_user"
NEXT_COOKIE = "rt_next"
_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class WebApp:
    """The app: one shared :class:`Runtime` (HTTP client, cache, token store) per process,
    one remotetables connection per worker thread, ``set_user`` on every request."""

    def __init__(
        self,
        config: Config | str | os.PathLike[str],
        *,
        public_url: str,
        secret: bytes | None = None,
        environ: Mapping[str, str] | None = None,
        user_header: str | None = None,
        secure_cookies: bool | None = None,
    ) -> None:
        cfg = config if isinstance(config, Config) else load_config(config, environ=environ)
        store = cfg.settings.token_store or ""
        if not store.startswith(("postgresql://", "postgres://")):
            print(
                "webapp: settings.token_store is not PostgreSQL; fine for one server only",
                file=sys.stderr,
            )
        self.runtime = Runtime(cfg, environ=dict(os.environ if environ is None else environ))
        self.public_url = public_url.rstrip("/")
        self.redirect_uri = self.public_url + "/callback"
        self.consent = raise_consent(redirect_uri=self.redirect_uri)
        self._secret = secret or secrets.token_bytes(32)
        self._user_header = user_header
        self._secure = (
            self.public_url.startswith("https:") if secure_cookies is None else secure_cookies
        )
        self._local = threading.local()
        self._conns: list[remotetables.Connection] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/", self.index),
                Route("/login", self.login),
                Route("/logout", self.logout),
                Route("/tables/{name}", self.table),
                Route("/callback", self.callback),
            ],
            lifespan=self._lifespan,
        )

    # -- plumbing

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        self.close()

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self.runtime.close()

    def connection(self) -> remotetables.Connection:
        """This worker thread's connection (apsw connections are not shared by threads)."""
        conn: remotetables.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = remotetables.connect(":memory:", runtime=self.runtime, consent=self.consent)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _sign(self, user: str) -> str:
        mac = hmac.new(self._secret, user.encode(), hashlib.sha256).digest()
        return user + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def web_session_of(self, request: Request) -> str:
        """This browser's session, as remotetables binds a consent to it (RFC 9700 §2.1.1):
        a digest of the signed sign-in cookie (the same on every server sharing the secret)."""
        value = request.cookies.get(USER_COOKIE, "") or request.headers.get(
            self._user_header or "", ""
        )
        return hashlib.sha256(self._secret + value.encode()).hexdigest()

    def user_of(self, request: Request) -> str | None:
        """The signed-in user: the trusted proxy header, else the signed cookie."""
        if self._user_header:
            name = request.headers.get(self._user_header)
            return name if name and _USER_RE.match(name) else None
        value = request.cookies.get(USER_COOKIE, "")
        user = value.rsplit(".", 1)[0]
        if _USER_RE.match(user) and hmac.compare_digest(self._sign(user), value):
            return user
        return None

    def _cookie(self, resp: Response, name: str, value: str, max_age: int) -> None:
        resp.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="lax", secure=self._secure
        )

    # -- routes

    def index(self, request: Request) -> Response:
        tables = sorted(self.runtime.config.tables)
        return JSONResponse({"user": self.user_of(request), "tables": tables})

    def login(self, request: Request) -> Response:
        user = request.query_params.get("user", "")
        if not _USER_RE.match(user):
            return JSONResponse({"error": "give ?user=NAME"}, status_code=400)
        resp = RedirectResponse("/", status_code=303)
        self._cookie(resp, USER_COOKIE, self._sign(user), 8 * 3600)
        return resp

    def logout(self, request: Request) -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(USER_COOKIE)
        return resp

    def table(self, request: Request) -> Response:
        user = self.user_of(request)
        if user is None:
            return JSONResponse({"error": "sign in first: /login?user=NAME"}, status_code=401)
        name = request.path_params["name"]
        if name not in self.runtime.config.tables:
            return JSONResponse({"error": f"no table {name!r}"}, status_code=404)
        conn = self.connection()
        conn.execute("SELECT set_user(?)", (user,))  # every request: threads serve many users
        # a consent started here belongs to this browser session: only it can finish it
        conn.session.web_session = self.web_session_of(request)
        try:
            # closed here, in this thread: a cursor left to the garbage collector would be
            # finalized in whatever thread collects it (remotetables frees an unclosed one at once too)
            with contextlib.closing(conn.execute(f'SELECT * FROM "{name}"')) as cur:
                rows = cur.fetchall()
                columns = [d[0] for d in cur.description or ()]
        except ConsentRequired as exc:
            if not exc.authorization_url:
                return JSONResponse({"error": str(exc)}, status_code=403)
            resp = RedirectResponse(exc.authorization_url, status_code=303)
            self._cookie(resp, NEXT_COOKIE, request.url.path, 900)
            return resp
        except Error as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({"user": user, "columns": columns, "rows": [list(r) for r in rows]})

    def callback(self, request: Request) -> Response:
        user = self.user_of(request)
        if user is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        conn = self.connection()
        conn.execute("SELECT set_user(?)", (user,))
        conn.session.web_session = self.web_session_of(request)
        # rebuild the URL from our own redirect URI: the Host header is not trusted
        callback_url = self.redirect_uri + "?" + request.url.query
        try:
            # the transaction must have been started by this user in this browser session:
            # someone else's callback URL attaches nothing here, and stays theirs to finish
            remotetables.complete_consent(conn, callback_url)
        except ConsentFailed as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        target = request.cookies.get(NEXT_COOKIE, "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        resp = RedirectResponse(target, status_code=303)
        resp.delete_cookie(NEXT_COOKIE)
        return resp


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", default=os.environ.get("REMOTETABLES_CONFIG", "remotetables.toml")
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--public-url", help="default http://HOST:PORT")
    args = parser.parse_args(argv)
    secret = os.environ.get("WEBAPP_SECRET")  # share it between servers behind one name
    web = WebApp(
        Path(args.config),
        public_url=args.public_url or f"http://{args.host}:{args.port}",
        secret=secret.encode() if secret else None,
    )
    started = time.time()
    # no access log: the callback's query string holds an authorization code
    uvicorn.run(web.app, host=args.host, port=args.port, log_level="info", access_log=False)
    print(f"webapp: served {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
