"""The embedded demo authorization server, built on authlib's server classes.

Authorization code + PKCE (S256 only), refresh with rotation and reuse detection,
revocation (RFC 7009), introspection (RFC 7662), client credentials, the device grant
(RFC 8628), RFC 8414 metadata and the RFC 9207 ``iss`` authorization response parameter.
In-memory models (:mod:`._authmodels`) behind authlib's grants and endpoints
(:mod:`.grants`); served by werkzeug on 127.0.0.1 in a daemon thread::

    with DemoAuthServer(auto_approve_user="alice") as srv:
        print(srv.issuer)  # http://127.0.0.1:PORT
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE
from flask import Flask, Response, jsonify, redirect, request, session
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as WsgiResponse

from remotetables.demo.authserver.grants import (
    ClientCredentialsGrant,
    CodeGrant,
    DeviceEndpoint,
    DeviceGrant,
    Introspection,
    RefreshGrant,
    Revocation,
    S256Challenge,
)
from remotetables.demo.authserver.models import (
    ClientModel,
    DemoClient,
    DemoStats,
    Store,
)
from remotetables.demo.authserver.pages import (
    check_post as _check_post,
)
from remotetables.demo.authserver.pages import (
    consent_page,
    device_page,
    login_page,
    logout_page,
    message_page,
)
from remotetables.demo.authserver.pages import (
    csrf_token as _csrf_token,
)
from remotetables.demo.authserver.pages import (
    html_response as _html,
)
from remotetables.demo.authserver.pages import (
    safe_next as _safe_next,
)
from remotetables.demo.authserver.pages import (
    security_headers as _security_headers,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_USERS",
    "DEVICE_CODE_GRANT_TYPE",
    "DemoAuthServer",
    "DemoClient",
    "DemoStats",
]

DEFAULT_CLIENT_ID = "remotetables-demo"
DEFAULT_USERS: Mapping[str, str] = MappingProxyType(
    {"alice": "alice", "bob": "bob", "carol": "carol"}
)
_GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", DEVICE_CODE_GRANT_TYPE)


class _Server(AuthorizationServer):  # type: ignore[misc]
    store: Store


# ---------------------------------------------------------------- the server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: request lines carry state and PKCE values."""


class DemoAuthServer:
    """An OAuth 2.0 authorization server on 127.0.0.1 for the demo and the tests.

    ``users`` maps usernames to passwords. ``clients`` defaults to one public client,
    ``remotetables-demo``, with the loopback redirect ``http://127.0.0.1/callback`` (any
    port). ``auto_approve_user`` signs that user in and approves without showing forms.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] = DEFAULT_USERS,
        clients: Sequence[DemoClient] | None = None,
        access_token_ttl: int = 3600,
        refresh_token_ttl: int | None = None,
        rotate_refresh_tokens: bool = True,
        reuse_detection: bool = True,
        clock: Callable[[], float] = time.time,
        port: int = 0,
        auto_approve_user: str | None = None,
        device_interval: int = 5,
        code_ttl: int = 600,
    ) -> None:
        if clients is None:
            clients = [
                DemoClient(
                    DEFAULT_CLIENT_ID,
                    None,
                    ["http://127.0.0.1/callback"],
                    client_name="remotetables demo",
                )
            ]
        if auto_approve_user is not None and auto_approve_user not in users:
            raise ValueError(f"auto_approve_user {auto_approve_user!r} is not a known user")
        self._port = port
        self._auto_user = auto_approve_user
        self._store = Store(
            users=dict(users),
            clients={c.client_id: ClientModel(c) for c in clients},
            clock=clock,
            refresh_token_ttl=refresh_token_ttl,
            rotate_refresh_tokens=rotate_refresh_tokens,
            reuse_detection=reuse_detection,
            code_ttl=code_ttl,
        )
        self._device_interval = device_interval
        self._app = self._build_app(access_token_ttl)
        self._httpd: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> DemoAuthServer:
        """Bind 127.0.0.1 and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the demo authorization server is already running")
        httpd = make_server(
            "127.0.0.1", self._port, self._app, threaded=True, request_handler=_QuietHandler
        )
        self._store.issuer = f"http://127.0.0.1:{httpd.server_port}"
        # Cookies ignore ports: one cookie name per server keeps two servers apart.
        self._app.config["SESSION_COOKIE_NAME"] = f"rt_demo_session_{httpd.server_port}"
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"demo-authserver-{httpd.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DemoAuthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DemoAuthServer(issuer={self._store.issuer or None!r})"

    # -- public helpers

    @property
    def sign_in_hint(self) -> str | None:
        """For the sign-in page, when every user's password is the user name (the demo's
        users): who can sign in and how. None otherwise: real passwords are never hinted."""
        users = self._store.users
        if not users or any(password != name for name, password in users.items()):
            return None
        names = sorted(users)
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"Demo users: {listed}; each password is the user name."

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:PORT`` (only once started)."""
        if not self._store.issuer:
            raise RuntimeError("the demo authorization server is not started")
        return self._store.issuer

    @property
    def metadata_url(self) -> str:
        return self.issuer + "/.well-known/oauth-authorization-server"

    @property
    def stats(self) -> DemoStats:
        return self._store.stats

    @property
    def wsgi_app(self) -> Flask:
        return self._app

    def validate_token(self, token: str) -> str | None:
        """Access token -> username (client id for client credentials); None if unusable."""
        with self._store.lock:
            ref = self._store.find(token, "access_token")
            if ref is None or ref.kind != "access_token" or ref.is_expired() or ref.is_revoked():
                return None
            return ref.rec.user or ref.rec.client_id

    def revoke_all_for(self, user: str) -> int:
        """Revoke every grant of ``user``; returns how many grants were revoked."""
        with self._store.lock:
            return self._store.revoke_user(user)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (refresh tokens stay usable)."""
        with self._store.lock:
            now = self._store.clock()
            for rec in self._store.by_access.values():
                rec.expires_at = min(rec.expires_at, now)

    # -- the Flask app

    def _build_app(self, access_token_ttl: int) -> Flask:
        app = Flask("remotetables.demo.authserver")
        app.secret_key = secrets.token_bytes(32)
        app.config.update(
            OAUTH2_REFRESH_TOKEN_GENERATOR=True,
            OAUTH2_TOKEN_EXPIRES_IN=dict.fromkeys(_GRANT_TYPES, access_token_ttl),
            SESSION_COOKIE_SAMESITE="Lax",
        )
        store = self._store
        server = _Server(app, query_client=store.clients.get, save_token=store.save_token)
        server.store = store
        server.scopes_supported = sorted({s for c in store.clients.values() for s in c.scopes})
        server.register_grant(CodeGrant, [S256Challenge(required=True)])
        server.register_grant(RefreshGrant)
        server.register_grant(ClientCredentialsGrant)
        server.register_grant(DeviceGrant)
        device_endpoint = DeviceEndpoint(server)
        device_endpoint.INTERVAL = self._device_interval
        server.register_endpoint(device_endpoint)
        server.register_endpoint(Revocation)
        server.register_endpoint(Introspection)
        _Routes(self, app, server).install()
        return app


def _without_prompt(path: str) -> str:
    """``path`` (an authorization request) without its ``prompt`` parameter."""
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "prompt"]
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


def _login_hint(next_url: str) -> str:
    """The ``login_hint`` of the authorization request in ``next_url``, to fill in the form."""
    values = dict(parse_qsl(urlsplit(next_url).query))
    return values.get("login_hint", "")[:100]


class _Routes:
    """The HTTP endpoints; one instance per server."""

    def __init__(self, owner: DemoAuthServer, app: Flask, server: _Server) -> None:
        self.owner, self.app, self.server, self.store = owner, app, server, server.store

    def install(self) -> None:
        add = self.app.add_url_rule
        add("/.well-known/oauth-authorization-server", view_func=self.metadata)
        add("/authorize", view_func=self.authorize, methods=["GET", "POST"])
        add("/login", view_func=self.login, methods=["GET", "POST"])
        add("/logout", view_func=self.logout, methods=["GET", "POST"])
        add("/token", view_func=self.token, methods=["POST"])
        add("/revoke", view_func=self.revoke, methods=["POST"])
        add("/introspect", view_func=self.introspect, methods=["POST"])
        add("/device_authorization", view_func=self.device_authorization, methods=["POST"])
        add("/device", view_func=self.device, methods=["GET", "POST"])
        self.app.after_request(_security_headers)

    # -- metadata and token-side endpoints (JSON)

    def metadata(self) -> WsgiResponse:
        iss = self.store.issuer
        auth_methods = ["none", "client_secret_basic", "client_secret_post"]
        doc = {
            "issuer": iss,
            "authorization_endpoint": iss + "/authorize",
            "token_endpoint": iss + "/token",
            "revocation_endpoint": iss + "/revoke",
            "introspection_endpoint": iss + "/introspect",
            "device_authorization_endpoint": iss + "/device_authorization",
            "scopes_supported": self.server.scopes_supported,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(_GRANT_TYPES),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "authorization_response_iss_parameter_supported": True,
            # OpenID Connect's prompt=login (sign in again even with a session) is honoured
            "prompt_values_supported": ["login"],
        }
        return jsonify(doc)

    def token(self) -> WsgiResponse:
        self.store.stats.incr("token_requests")
        with self.store.lock:  # in-memory and fast: one token operation at a time
            resp: WsgiResponse = self.server.create_token_response()
        return resp

    def revoke(self) -> WsgiResponse:
        with self.store.lock:
            resp: WsgiResponse = self.server.create_endpoint_response("revocation")
        return resp

    def introspect(self) -> WsgiResponse:
        self.store.stats.incr("introspections")
        with self.store.lock:
            resp: WsgiResponse = self.server.create_endpoint_response("introspection")
        return resp

    def device_authorization(self) -> WsgiResponse:
        with self.store.lock:
            resp: WsgiResponse = self.server.create_endpoint_response("device_authorization")
        return resp

    # -- browser side

    def _user(self) -> str | None:
        user = session.get("user")
        if user is None and self.owner._auto_user is not None:
            user = session["user"] = self.owner._auto_user
        return user if user in self.store.users else None

    def _to_login(self, next_url: str | None = None) -> WsgiResponse:
        nxt = request.full_path if next_url is None else next_url
        login = f"{self.store.issuer}/login?" + urlencode({"next": nxt})
        return redirect(login, code=302)

    def logout(self) -> WsgiResponse:
        """Sign out (POST with the CSRF token; GET shows a confirmation form), then go to
        ``next`` (a local path: the authorization request, which then asks to sign in)."""
        next_url = _safe_next(request.values.get("next", "/"))
        if request.method == "GET":
            return _html(logout_page(action="/logout", next_url=next_url, csrf_token=_csrf_token()))
        if not _check_post(self.store.issuer):
            return _html(message_page("Request refused", "The form was stale or forged."), 403)
        session.clear()
        if next_url == "/":
            return _html(message_page("Signed out", "You are signed out."))
        return redirect(self.store.issuer + next_url, code=302)

    def authorize(self) -> WsgiResponse:
        user = self._user()
        if request.method == "POST" and not _check_post(self.store.issuer):
            return _html(message_page("Request refused", "The form was stale or forged."), 403)
        try:
            grant = self.server.get_consent_grant(end_user=user)
        except OAuth2Error as exc:
            return self._oauth_error(exc)
        if user is None:  # signing in now answers a prompt=login too
            return self._to_login(_without_prompt(request.full_path))
        auto = self.owner._auto_user is not None
        if (
            not auto
            and request.method == "GET"
            and "login" in request.args.get("prompt", "").split()
        ):
            # prompt=login: sign in again whoever is signed in, then come back without it
            return self._to_login(_without_prompt(request.full_path))
        if not auto and request.method == "GET":
            client = grant.client
            page = consent_page(
                action=request.full_path,
                client_name=client.client_name,
                client_id=client.get_client_id(),
                user=user,
                scopes=scope_to_list(grant.request.scope) or [],
                csrf_token=_csrf_token(),
                switch_url="/login?" + urlencode({"next": _without_prompt(request.full_path)}),
                logout_action="/logout",
            )
            return _html(page)
        approved = self.owner._auto_user is not None or request.form.get("decision") == "allow"
        with self.store.lock:
            resp: WsgiResponse = self.server.create_authorization_response(
                grant_user=user if approved else None, grant=grant
            )
        return self._with_iss(resp)

    def _oauth_error(self, exc: OAuth2Error) -> WsgiResponse:
        if exc.redirect_uri:
            status, _body, headers = exc()
            return self._with_iss(Response("", status=status, headers=headers))
        text = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
        return _html(message_page("Authorization request refused", text), exc.status_code)

    def _with_iss(self, resp: WsgiResponse) -> WsgiResponse:
        if resp.status_code == 302 and resp.location:
            resp.location = add_params_to_uri(resp.location, [("iss", self.store.issuer)])
        return resp

    def login(self) -> WsgiResponse:
        next_url = _safe_next(request.values.get("next", "/"))
        if request.method == "GET":
            page = login_page(
                action="/login",
                next_url=next_url,
                csrf_token=_csrf_token(),
                hint=self.owner.sign_in_hint,
                username=_login_hint(next_url),
                signed_in=session.get("user"),
            )
            return _html(page)
        if not _check_post(self.store.issuer):
            return _html(message_page("Request refused", "The form was stale or forged."), 403)
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        expected = self.store.users.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            page = login_page(
                action="/login",
                next_url=next_url,
                csrf_token=_csrf_token(),
                error="Unknown user or wrong password.",
                hint=self.owner.sign_in_hint,
                username=username,
            )
            return _html(page, 401)
        session.clear()
        session["user"] = username
        return redirect(self.store.issuer + next_url, code=302)

    def device(self) -> WsgiResponse:
        user = self._user()
        if user is None:
            return self._to_login()
        user_code = request.values.get("user_code", "").strip().upper()
        with self.store.lock:
            cred = self.store.user_codes.get(user_code)
            if cred is not None and cred.is_expired():
                cred = None
        client = self.store.clients[cred.get_client_id()] if cred is not None else None
        auto = self.owner._auto_user is not None
        if request.method == "GET" and not (auto and cred is not None):
            page = device_page(
                action="/device",
                user=user,
                csrf_token=_csrf_token(),
                user_code=user_code,
                client_name=client.client_name if client else None,
                scopes=scope_to_list(cred.get_scope()) or [] if cred else (),
                error="Unknown or expired code." if user_code and cred is None else None,
            )
            return _html(page, 200 if cred or not user_code else 404)
        if request.method == "POST" and not _check_post(self.store.issuer):
            return _html(message_page("Request refused", "The form was stale or forged."), 403)
        if cred is None:
            return _html(message_page("Unknown code", "Unknown or expired code."), 404)
        approved = auto or request.form.get("decision") == "allow"
        with self.store.lock:
            self.store.device_grants[user_code] = (user, approved)
        if approved:
            return _html(message_page("Device connected", "You can close this window."))
        return _html(message_page("Access denied", "The device was not connected."))
