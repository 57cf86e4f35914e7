"""django-oauth-toolkit (DOT) as a third-party authorization server on loopback, for tests.

Django settings can be configured once per process, so: one DOT server at a time per
process. The database is migrated once into a template file; each :class:`DotServer` start
copies the template and creates users and applications afresh::

    with DotServer(access_token_ttl=3) as dot:
        dot.issuer, dot.client_id, dot.introspection_validator()
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx2

__all__ = ["DOT_USERS", "DotServer", "DotStats"]

DOT_USERS: Mapping[str, str] = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
PUBLIC_CLIENT_ID = "remotetables-dot"
RESOURCE_CLIENT_ID = "resource-server"
RESOURCE_CLIENT_SECRET = "resource-server-secret-for-tests"  # test-only, never a real secret
REDIRECT_URI = "http://127.0.0.1/callback"
SCOPES = {
    "openid": "Who you are (OpenID Connect)",
    "incidents.read": "Read incidents",
    "incidents.write": "Create and change incidents",
    "introspection": "Introspect tokens",
}

_LOGIN_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Sign in</h1>{% if form.errors %}<p>Wrong username or password.</p>{% endif %}
<form method="post" action="">{% csrf_token %}
<input type="hidden" name="next" value="{{ next }}">
<label>Username <input type="text" name="username"></label>
<label>Password <input type="password" name="password"></label>
<input type="submit" value="Sign in"></form></body></html>
"""

_lock = threading.Lock()
_state: dict[str, Any] = {"configured": False, "running": None}


def __getattr__(name: str) -> Any:
    """``urlpatterns`` for ROOT_URLCONF, built lazily (Django must be set up first)."""
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.contrib.auth.views import LoginView
    from django.urls import include, path

    return [
        path("accounts/login/", LoginView.as_view(), name="login"),
        path("", include("oauth2_provider.urls")),
    ]


def _configure(workdir: Path, access_token_ttl: int) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="dot-test-server-" + "x" * 40,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(workdir / "dot.sqlite3"),
                "OPTIONS": {"timeout": 20},
            }
        },
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oauth2_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.locmem.Loader",
                            {"registration/login.html": _LOGIN_TEMPLATE},
                        ),
                        "django.template.loaders.app_directories.Loader",
                    ],
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                    ],
                },
            }
        ],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # tests only
        LOGIN_URL="/accounts/login/",
        OAUTH2_PROVIDER={
            "SCOPES": SCOPES,
            "DEFAULT_SCOPES": ["incidents.read", "incidents.write"],
            "PKCE_REQUIRED": True,
            "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
            "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
            "ROTATE_REFRESH_TOKEN": True,
            "REFRESH_TOKEN_REUSE_PROTECTION": True,
            "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_ttl,
            "RESOURCE_SERVER_TOKEN_CACHING_SECONDS": 1,
            # OpenID Connect: ID tokens signed with this RSA key (JWKS at /.well-known/jwks.json)
            "OIDC_ENABLED": True,
            "OIDC_RSA_PRIVATE_KEY": _rsa_private_key_pem(),
            "OAUTH2_VALIDATOR_CLASS": "tests.servers.dot_claims.ClaimsValidator",
        },
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    _close_db()
    shutil.copyfile(workdir / "dot.sqlite3", workdir / "template.sqlite3")


def _rsa_private_key_pem() -> str:
    """A fresh RSA key for this process's ID tokens (test-only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _close_db() -> None:
    from django.db import connections

    connections.close_all()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


class DotStats:
    """Request counters by endpoint (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.token_requests = 0
        self.revocations = 0
        self.introspections = 0
        self.authorize_requests = 0

    def count(self, path: str) -> None:
        name = {
            "/token/": "token_requests",
            "/revoke_token/": "revocations",
            "/introspect/": "introspections",
            "/authorize/": "authorize_requests",
        }.get(path)
        if name is not None:
            with self._lock:
                setattr(self, name, getattr(self, name) + 1)

    def __repr__(self) -> str:
        return (
            f"DotStats(token_requests={self.token_requests}, revocations={self.revocations}, "
            f"introspections={self.introspections}, authorize_requests={self.authorize_requests})"
        )


class DotServer:
    """django-oauth-toolkit on ``http://127.0.0.1:PORT`` with a public PKCE client.

    ``client_id`` is public (authorization code, PKCE S256 required, loopback redirect
    ``http://127.0.0.1/callback`` on any port; with scope ``openid`` it gets RS256 ID tokens
    carrying ``email`` = NAME@example.com and ``preferred_username``); ``resource-server`` is
    confidential and may introspect. Users and passwords are in ``users``.
    """

    def __init__(
        self,
        *,
        access_token_ttl: int = 3600,
        users: Mapping[str, str] = DOT_USERS,
        workdir: Path | None = None,
    ) -> None:
        self.access_token_ttl = access_token_ttl
        self.users = dict(users)
        self.client_id = PUBLIC_CLIENT_ID
        self.redirect_uri = REDIRECT_URI
        self.resource_client_id = RESOURCE_CLIENT_ID
        self.resource_client_secret = RESOURCE_CLIENT_SECRET
        self.stats = DotStats()
        self._workdir = workdir
        self._httpd: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._issuer: str | None = None

    def __repr__(self) -> str:
        return f"DotServer(issuer={self._issuer!r})"

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise RuntimeError("the DOT server is not started")
        return self._issuer

    @property
    def metadata_url(self) -> str:
        return self.issuer + "/.well-known/oauth-authorization-server"

    def start(self) -> DotServer:
        """Fresh database, users and applications; serve in a daemon thread."""
        with _lock:
            if _state["running"] is not None:
                raise RuntimeError("only one DotServer may run at a time in a process")
            if not _state["configured"]:
                workdir = self._workdir or Path(tempfile.mkdtemp(prefix="rt-dot-"))
                if self._workdir is None:
                    atexit.register(shutil.rmtree, workdir, True)
                _configure(workdir, self.access_token_ttl)
                _state.update(configured=True, workdir=workdir)
            workdir = _state["workdir"]
            _close_db()
            shutil.copyfile(workdir / "template.sqlite3", workdir / "dot.sqlite3")
            self._set_ttl()
            self._populate()
            _close_db()
            from django.core.wsgi import get_wsgi_application

            django_app = get_wsgi_application()
            stats = self.stats

            def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
                stats.count(environ.get("PATH_INFO", ""))
                result: Iterable[bytes] = django_app(environ, start_response)
                return result

            httpd = make_server(
                "127.0.0.1",
                0,
                app,
                server_class=_ThreadingWSGIServer,
                handler_class=_QuietHandler,
            )
            assert isinstance(httpd, _ThreadingWSGIServer)
            self._httpd = httpd
            self._issuer = f"http://127.0.0.1:{httpd.server_port}"
            self._set_oidc_issuer(self._issuer)
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="dot-server",
                daemon=True,
            )
            self._thread.start()
            _state["running"] = self
        return self

    def stop(self) -> None:
        with _lock:
            httpd, self._httpd = self._httpd, None
            if httpd is None:
                return
            httpd.shutdown()
            httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            _close_db()
            _state["running"] = None

    def __enter__(self) -> DotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _set_ttl(self) -> None:
        from django.conf import settings
        from oauth2_provider.settings import oauth2_settings

        settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"] = self.access_token_ttl
        oauth2_settings.reload()

    def _set_oidc_issuer(self, issuer: str) -> None:
        """ID tokens name the issuer the metadata does (DOT would build it from headers)."""
        from django.conf import settings
        from oauth2_provider.settings import oauth2_settings

        settings.OAUTH2_PROVIDER["OIDC_ISS_ENDPOINT"] = issuer
        oauth2_settings.reload()

    def _populate(self) -> None:
        from django.contrib.auth import get_user_model
        from oauth2_provider.models import get_application_model

        user_model = get_user_model()
        for name, password in self.users.items():
            user_model.objects.create_user(username=name, password=password)
        application = get_application_model()
        application.objects.create(
            name="remotetables",
            client_id=PUBLIC_CLIENT_ID,
            client_secret="",
            client_type=application.CLIENT_PUBLIC,
            authorization_grant_type=application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=REDIRECT_URI,
            skip_authorization=False,
            algorithm=application.RS256_ALGORITHM,  # ID tokens (scope openid)
        )
        application.objects.create(
            name="resource server",
            client_id=RESOURCE_CLIENT_ID,
            client_secret=RESOURCE_CLIENT_SECRET,  # DOT hashes it on save
            client_type=application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=application.GRANT_CLIENT_CREDENTIALS,
            redirect_uris="",
        )

    def introspect(self, token: str) -> dict[str, Any]:
        """POST /introspect/ as the resource server; the raw RFC 7662 answer."""
        resp = httpx2.post(
            self.issuer + "/introspect/",
            data={"token": token},
            auth=(self.resource_client_id, self.resource_client_secret),
            timeout=10.0,
        )
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def introspection_validator(self) -> Callable[[str], str | None]:
        """A token -> username function (None when the token is not active)."""

        def validate(token: str) -> str | None:
            body = self.introspect(token)
            if not body.get("active"):
                return None
            username = body.get("username")
            return str(username) if username else None

        return validate
