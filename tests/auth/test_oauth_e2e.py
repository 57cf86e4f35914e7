"""Per-user OAuth end to end through SQL: connect() + SELECT against loopback servers.

The demo authorization server (authlib) issues the tokens; the test API validates them with
``DemoAuthServer.validate_token`` and serves each user only their own incidents. What the
servers saw is read on the servers' side (a Flask hook on the authorization server, the
API's request log); nothing of remotetables is mocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

import remotetables
from remotetables.auth.consent import ConsentRequest, browser_consent, prompt_consent
from remotetables.auth.service import complete_consent
from remotetables.auth.store import SQLiteTokenStore, TokenKey, TokenSet
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.demo.api.server import Fault, IncidentsAPI, token_fingerprint
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DemoAuthServer, DemoClient
from remotetables.errors import (
    ConfigError,
    ConsentDenied,
    ConsentFailed,
    ConsentRequired,
    NoSessionUser,
    ProviderError,
    RemoteError,
)
from tests.conftest import incidents_table
from tests.servers.walk import s256, walk_consent

__all__ = [
    "Env",
    "FakeClock",
    "ServerCapture",
    "make_env",
    "walker",
    "walking_browser",
]

NO_KEYRING = {"REMOTETABLES_NO_KEYRING": "1"}
SECRET = "s3cret-for-the-confidential-demo-client"  # test-only


class FakeClock:
    """A clock that moves only when told to (shared by the server and remotetables)."""

    def __init__(self) -> None:
        self.now = time.time()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class ServerCapture:
    """Every request the authorization server received: (path, form, Authorization header)."""

    def __init__(self, srv: DemoAuthServer) -> None:
        self.calls: list[tuple[str, dict[str, str], str | None]] = []
        self._lock = threading.Lock()
        srv.wsgi_app.before_request(self._record)  # before the first request only

    def _record(self) -> None:
        from flask import request

        with self._lock:
            self.calls.append(
                (request.path, dict(request.form), request.headers.get("Authorization"))
            )

    def forms(self, path: str = "/token", grant: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return [
                f
                for p, f, _ in self.calls
                if p == path and (grant is None or f.get("grant_type") == grant)
            ]

    def paths(self) -> list[str]:
        with self._lock:
            return [p for p, _, _ in self.calls]


@dataclass
class Env:
    """One authorization server, one test API and a place for config and token files."""

    srv: DemoAuthServer
    api: IncidentsAPI
    cap: ServerCapture
    clock: Any  # FakeClock, or time.time
    tmp: Path
    environ: dict[str, str] = field(default_factory=lambda: dict(NO_KEYRING))
    _n: int = 0

    def toml(
        self,
        *,
        provider: str = "",
        settings: str = "",
        table: str = "cache_ttl = 0\n",
        issuer: bool = True,
        client_id: str = DEFAULT_CLIENT_ID,
        tables: tuple[tuple[str, str], ...] = (("incidents", "link"),),
        page_size: int = 5,
    ) -> Path:
        state = self.tmp / "state"
        state.mkdir(mode=0o700, exist_ok=True)
        head = textwrap.dedent(
            f"""
            [settings]
            token_store = "{state}/tokens.db"
            key_file = "{state}/token.key"
            {settings}
            [providers.demo]
            client_id = "{client_id}"
            scopes = ["incidents.read"]
            """
        )
        if issuer:
            head += f'issuer = "{self.srv.issuer}"\n'
        head += textwrap.dedent(provider) + "\n"
        body = "\n".join(
            incidents_table(name, style, self.api.base_url, max_page_size=page_size, extra=table)
            for name, style in tables
        )
        self._n += 1
        path = self.tmp / f"remotetables-{self._n}.toml"
        path.write_text(head + body, encoding="utf-8")
        return path

    def connect(
        self,
        config: Path | None = None,
        *,
        user: str | None = "alice",
        consent: Any = None,
        clock: Callable[[], float] | None = None,
        **kw: Any,
    ) -> remotetables.Connection:
        return remotetables.connect(
            ":memory:",
            config=config or self.toml(),
            user=user,
            consent=consent,
            environ=kw.pop("environ", self.environ),
            clock=clock or self.clock,
            **kw,
        )

    def key(self, subject: str, client_id: str = DEFAULT_CLIENT_ID) -> TokenKey:
        return TokenKey(self.srv.issuer, client_id, subject)

    def store(self) -> SQLiteTokenStore:
        """The token store file, opened on its own (as another process would)."""
        key_file = self.tmp / "state" / "token.key"
        key_id, key = load_key(key_file=key_file, use_keyring=False, default_key_file=key_file)
        return SQLiteTokenStore(
            self.tmp / "state" / "tokens.db", TokenCipher({key_id: key}, current=key_id)
        )


@contextlib.contextmanager
def make_env(
    tmp: Path,
    *,
    clients: list[DemoClient] | None = None,
    users: tuple[str, ...] = ("alice", "bob", "carol"),
    n_rows: int = 80,
    **srv_kw: Any,
) -> Iterator[Env]:
    clock = srv_kw.pop("clock", None) or FakeClock()
    srv = DemoAuthServer(clock=clock, clients=clients, device_interval=1, **srv_kw)
    cap = ServerCapture(srv)
    with srv, IncidentsAPI(n_rows=n_rows, users=users, token_validator=srv.validate_token) as api:
        yield Env(srv, api, cap, clock, tmp)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path) as e:
        yield e


def confidential(**kw: Any) -> DemoClient:
    return DemoClient(
        "remotetables-conf", SECRET, ["http://127.0.0.1/callback"], client_name="conf", **kw
    )


@pytest.fixture
def conf_env(tmp_path: Path) -> Iterator[Env]:
    public = DemoClient(DEFAULT_CLIENT_ID, None, ["http://127.0.0.1/callback"])
    with make_env(tmp_path, clients=[public, confidential()]) as e:
        e.environ["DEMO_SECRET"] = SECRET
        yield e


def walker(
    calls: list[ConsentRequest] | None = None,
    *,
    approve: bool = True,
    as_user: str | None = None,
    mutate: Callable[[str], str] | None = None,
) -> Callable[[ConsentRequest], str]:
    """A consent callable that signs in (password = user name) and answers the form."""

    def consent(req: ConsentRequest) -> str:
        if calls is not None:
            calls.append(req)
        who = as_user or req.user
        landed = walk_consent(req.authorization_url, username=who, password=who, approve=approve)
        return mutate(landed) if mutate else landed

    return consent


def walking_browser(username: str | None = None) -> Callable[[str], bool]:
    """An ``open_browser`` that walks login + consent in a thread, then hits the listener."""

    def open_browser(url: str) -> bool:
        def run() -> None:
            landed = walk_consent(url, username=username or "", password=username or "")
            httpx2.get(landed, timeout=10)

        threading.Thread(target=run, daemon=True).start()
        return True

    return open_browser


def refuse(req: ConsentRequest) -> str:
    raise AssertionError(f"consent must not be asked here ({req.user})")


def rows_of(conn: remotetables.Connection, table: str = "incidents") -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT number, assigned_to FROM {table} ORDER BY number").fetchall()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ---------------------------------------------------------------- 1. session user


def test_session_user_sql_functions(env: Env) -> None:
    calls: list[ConsentRequest] = []
    conn = env.connect(user=None, consent=walker(calls))
    assert conn.execute("SELECT current_user()").fetchone() == (None,)
    with pytest.raises(NoSessionUser, match=r"set_user\('name'\)"):
        conn.execute("SELECT * FROM incidents").fetchall()
    assert calls == [] and env.api.requests == []
    assert conn.execute("SELECT set_user('bob')").fetchone() == ("bob",)
    assert conn.execute("SELECT current_user()").fetchone() == ("bob",)
    assert {r[1] for r in rows_of(conn)} == {"bob"}
    assert conn.execute("SELECT set_user(NULL)").fetchone() == (None,)
    with pytest.raises(NoSessionUser):
        conn.execute("SELECT count(*) FROM incidents").fetchall()
    with pytest.raises(Exception, match="non-empty"):
        conn.execute("SELECT set_user('  ')").fetchall()
    conn.close()
    conn = env.connect(user="carol", consent=walker(calls))
    assert conn.execute("SELECT current_user()").fetchone() == ("carol",)
    assert {r[1] for r in rows_of(conn)} == {"carol"}
    assert [c.user for c in calls] == ["bob", "carol"]
    conn.close()


def test_user_switch_takes_effect_at_the_next_statement(env: Env) -> None:
    conn = env.connect(user="alice", consent=walker())
    rows_of(conn)  # consent for alice
    conn.execute("SELECT set_user('bob')")
    rows_of(conn)  # consent for bob
    conn.execute("SELECT set_user('alice')")
    running = conn.cursor().execute("SELECT number, assigned_to FROM incidents")
    first = running.fetchone()
    assert conn.execute("SELECT set_user('bob')").fetchone() == ("bob",)
    rest = running.fetchall()  # the running statement stays alice's
    assert {r[1] for r in [first, *rest]} == {"alice"} and len(rest) > 5
    assert {r[1] for r in rows_of(conn)} == {"bob"}  # the next statement is bob's
    conn.close()


# ---------------------------------------------------------------- 2. provider config


def test_discovery_scopes_extra_params_public_client(env: Env) -> None:
    cfg = env.toml(provider='extra_authorize_params = { prompt = "consent", ui_locales = "fr" }')
    calls: list[ConsentRequest] = []
    conn = env.connect(cfg, consent=walker(calls))
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    assert env.cap.paths()[0] == "/.well-known/oauth-authorization-server"
    (req,) = calls
    q = query(req.authorization_url)
    assert req.authorization_url.startswith(env.srv.issuer + "/authorize?")
    assert q["scope"] == "incidents.read" and q["client_id"] == DEFAULT_CLIENT_ID
    # the first consent through this provider also asks to sign in (nobody known yet)
    assert (q["prompt"], q["ui_locales"]) == ("login consent", "fr")
    (exchange,) = env.cap.forms(grant="authorization_code")
    assert exchange["client_id"] == DEFAULT_CLIENT_ID and "client_secret" not in exchange
    assert all(auth is None for p, _, auth in env.cap.calls if p == "/token")
    (info,) = conn.runtime.oauth_service().tokens()
    assert (info.subject, info.scope, info.status) == ("alice", "incidents.read", "active")
    conn.close()


class _RewriteMetadata(httpx2.BaseTransport):
    """A test-level transport: the AS serves only OpenID discovery, or lies about its issuer."""

    def __init__(self, *, oidc_only: bool = False, issuer: str | None = None) -> None:
        self.inner = httpx2.HTTPTransport()
        self.oidc_only = oidc_only
        self.issuer = issuer
        self.seen: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.seen.append(path)
        if path.startswith("/.well-known/"):
            if self.oidc_only and path == "/.well-known/oauth-authorization-server":
                return httpx2.Response(404, json={"error": "not_found"})
            url = request.url.copy_with(path="/.well-known/oauth-authorization-server")
            real = self.inner.handle_request(httpx2.Request("GET", url))
            doc = json.loads(real.read())
            real.close()
            if self.issuer is not None:
                doc["issuer"] = self.issuer
            return httpx2.Response(200, json=doc)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_discovery_falls_back_to_openid_configuration(env: Env) -> None:
    transport = _RewriteMetadata(oidc_only=True)
    conn = env.connect(consent=walker(), transport=transport)
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    wk = [p for p in transport.seen if p.startswith("/.well-known/")]
    assert wk == ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
    conn.close()


def test_discovered_issuer_must_match(env: Env) -> None:
    calls: list[ConsentRequest] = []
    transport = _RewriteMetadata(issuer="http://127.0.0.1:1")
    conn = env.connect(consent=walker(calls), transport=transport)
    with pytest.raises(ProviderError, match="issuer"):
        rows_of(conn)
    assert calls == [] and env.srv.stats.token_requests == 0
    assert conn.runtime.oauth_service().tokens() == []
    conn.close()


def test_explicit_endpoints_need_no_discovery(env: Env) -> None:
    iss = env.srv.issuer
    cfg = env.toml(
        issuer=False,
        provider=f"""
        authorization_endpoint = "{iss}/authorize"
        token_endpoint = "{iss}/token"
        revocation_endpoint = "{iss}/revoke"
        """,
    )
    conn = env.connect(cfg, consent=walker())
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    assert not any(p.startswith("/.well-known") for p in env.cap.paths())
    svc = conn.runtime.oauth_service()
    assert svc.logout(conn.runtime.provider("demo"), "alice") is True
    conn.close()


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_confidential_client_secret_from_env(conf_env: Env, method: str) -> None:
    cfg = conf_env.toml(
        client_id="remotetables-conf",
        provider=f"""
        client_secret_env = "DEMO_SECRET"
        token_endpoint_auth_method = "{method}"
        """,
    )
    conn = conf_env.connect(cfg, consent=walker())
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    ((_, form, auth),) = [c for c in conf_env.cap.calls if c[0] == "/token"]
    if method == "client_secret_basic":
        assert auth is not None and auth.startswith("Basic ") and "client_secret" not in form
    else:
        assert auth is None and form["client_secret"] == SECRET
    conn.close()


def test_missing_client_secret_env_is_a_config_error(conf_env: Env) -> None:
    cfg = conf_env.toml(client_id="remotetables-conf", provider='client_secret_env = "NOPE"')
    conn = conf_env.connect(cfg, consent=refuse)
    with pytest.raises(ConfigError, match="NOPE") as info:
        rows_of(conn)
    assert "client_secret_env" in str(info.value)
    conn.close()


# ---------------------------------------------------------------- 3. consent through SQL


def test_browser_consent_pkce_s256_exact_redirect_and_iss(env: Env) -> None:
    out = io.StringIO()
    consent = browser_consent(timeout=20, open_browser=walking_browser("alice"), out=out)
    conn = env.connect(consent=consent)
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    url = re.search(r"(http://\S+/authorize\?\S+)", out.getvalue())
    assert url is not None
    q = query(url.group(1))
    assert q["code_challenge_method"] == "S256" and q["response_type"] == "code"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/callback", q["redirect_uri"])
    (exchange,) = env.cap.forms(grant="authorization_code")
    verifier = exchange["code_verifier"]
    assert 43 <= len(verifier) <= 128 and s256(verifier) == q["code_challenge"]
    assert exchange["redirect_uri"] == q["redirect_uri"]  # identical redirect URI
    with pytest.raises(httpx2.ConnectError):  # the one-shot listener is closed
        httpx2.get(q["redirect_uri"], timeout=2)
    conn.close()


def test_prompt_consent_with_injected_input(env: Env) -> None:
    out = io.StringIO()

    def answer(prompt: str) -> str:
        url = re.search(r"(http://\S+/authorize\?\S+)", out.getvalue())
        assert url is not None
        return walk_consent(url.group(1), username="bob", password="bob")

    conn = env.connect(user="bob", consent=prompt_consent(input=answer, out=out))
    assert {r[1] for r in rows_of(conn)} == {"bob"}
    (exchange,) = env.cap.forms(grant="authorization_code")
    assert exchange["redirect_uri"] == "http://127.0.0.1/callback"
    conn.close()


def test_raise_consent_then_complete_consent(env: Env) -> None:
    conn = env.connect(user="alice", consent="raise")
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    exc = info.value
    assert (exc.user, exc.provider) == ("alice", "demo")
    assert exc.authorization_url and exc.authorization_url.startswith(env.srv.issuer)
    assert env.srv.stats.token_requests == 0
    assert conn.runtime.oauth_service().tokens() == []
    landed = walk_consent(exc.authorization_url, username="alice", password="alice")
    assert complete_consent(conn, landed) == ("demo", "alice")
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    with pytest.raises(ConsentFailed, match="no pending authorization"):
        complete_consent(conn, landed)  # the state is single use
    assert env.srv.stats.code_exchanges == 1
    conn.close()


def test_complete_consent_is_bound_to_the_user(env: Env) -> None:
    conn = env.connect(user="alice", consent="raise")
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    url = info.value.authorization_url or ""
    landed = walk_consent(url, username="alice", password="alice")
    conn.execute("SELECT set_user('bob')")
    with pytest.raises(ConsentFailed, match="another user"):
        complete_consent(conn, landed)
    conn.execute("SELECT set_user('alice')")
    with pytest.raises(ConsentFailed):  # the transaction was discarded
        complete_consent(conn, landed)
    assert conn.runtime.oauth_service().tokens() == []
    assert env.srv.stats.token_requests == 0
    # a Runtime (a web app's callback route) finishes it too
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    landed = walk_consent(info.value.authorization_url or "", username="alice", password="alice")
    assert complete_consent(conn.runtime, landed) == ("demo", "alice")
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    conn.close()


def _set_param(url: str, name: str, value: str) -> str:
    return re.sub(rf"([?&]{name}=)[^&]*", rf"\g<1>{value}", url)


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("denied", ConsentDenied, "denied"),
        ("wrong_state", ConsentFailed, "state"),
        ("wrong_iss", ConsentFailed, "issuer"),
    ],
)
def test_failed_consent_is_clear_and_stores_nothing(
    env: Env, kind: str, error: type[Exception], match: str
) -> None:
    mutate = {
        "denied": None,
        "wrong_state": lambda u: _set_param(u, "state", "forged"),
        "wrong_iss": lambda u: _set_param(u, "iss", "http%3A%2F%2F127.0.0.1%3A1"),
    }[kind]
    conn = env.connect(consent=walker(approve=kind != "denied", mutate=mutate))
    with pytest.raises(error, match=match) as info:
        rows_of(conn)
    assert getattr(info.value, "user", None) == "alice"
    assert env.srv.stats.token_requests == 0
    assert conn.runtime.oauth_service().tokens() == []
    store = env.store()
    assert store.get(env.key("alice")) is None
    store.close()
    conn.close()


@pytest.mark.parametrize("approve", [True, False])
def test_device_grant_through_sql(
    env: Env, capsys: pytest.CaptureFixture[str], approve: bool
) -> None:
    walked: list[str] = []

    def sleep(seconds: float) -> None:
        env.clock.advance(seconds)
        if not walked:  # the user reads the terminal and answers on another device
            found = re.search(r"\(or open (\S+)\)", capsys.readouterr().err)
            assert found is not None
            url = found.group(1)
            walked.append(walk_consent(url, username="carol", password="carol", approve=approve))

    cfg = env.toml(settings='consent = "device"')
    conn = env.connect(cfg, user="carol", sleep=sleep)
    if approve:
        assert {r[1] for r in rows_of(conn)} == {"carol"}
    else:
        with pytest.raises(ConsentDenied, match="denied") as info:
            rows_of(conn)
        assert info.value.user == "carol"
        assert conn.runtime.oauth_service().tokens() == []
    assert len(walked) == 1
    assert len(env.cap.forms(grant="urn:ietf:params:oauth:grant-type:device_code")) == 1
    conn.close()


# ---------------------------------------------------------------- 4. refresh through SQL


@pytest.mark.parametrize("scope_on_refresh", [False, True])
def test_refresh_before_expiry_within_leeway(env: Env, scope_on_refresh: bool) -> None:
    extra = "send_scope_on_refresh = true" if scope_on_refresh else ""
    conn = env.connect(env.toml(provider=extra), consent=walker())
    rows = rows_of(conn)
    env.clock.advance(3600 - 90)  # outside the 60 s leeway: no refresh
    assert rows_of(conn) == rows and env.srv.stats.refreshes == 0
    env.clock.advance(60)  # 30 s before expiry: refresh first
    assert rows_of(conn) == rows and env.srv.stats.refreshes == 1
    (form,) = env.cap.forms(grant="refresh_token")
    assert ("scope" in form) is scope_on_refresh
    fps = [r.token_fp for r in env.api.requests]
    assert len(set(fps)) == 2 and fps[-1] != fps[0]
    conn.close()


def test_401_mid_pagination_refreshes_once_and_resumes(env: Env) -> None:
    conn = env.connect(consent=walker())
    reference = rows_of(conn)
    assert len(reference) > 15  # at least four pages of five
    env.api.clear_requests()
    env.api.faults.add(
        Fault(
            "status",
            path="/styles/link/incidents",
            page=3,
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    )
    assert rows_of(conn) == reference  # every row once: none skipped, none repeated
    assert env.srv.stats.refreshes == 1
    log = [(r.query.get("offset", ["0"])[0], r.status) for r in env.api.requests]
    statuses = [s for _, s in log]
    assert statuses.count(401) == 1 and statuses[2:4] == [401, 200]
    assert log[2][0] == log[3][0]  # the failed page was retried, not the next one
    conn.close()


def test_401_twice_gives_one_refresh_then_an_error(env: Env) -> None:
    conn = env.connect(consent=walker())
    rows_of(conn)
    env.api.faults.add(Fault("status", path="/styles/link/incidents", status=401, times=2))
    with pytest.raises(RemoteError) as info:
        rows_of(conn)
    assert info.value.status_code == 401 and env.srv.stats.refreshes == 1
    conn.close()


def test_invalid_grant_drops_tokens_and_asks_consent_again(env: Env) -> None:
    seen: list[Any] = []

    def consent(req: ConsentRequest) -> str:
        store = env.store()
        seen.append(store.get(env.key("alice")))
        store.close()
        return walk_consent(req.authorization_url, username="alice", password="alice")

    conn = env.connect(consent=consent)
    rows = rows_of(conn)
    env.srv.revoke_all_for("alice")
    env.clock.advance(3600)
    assert rows_of(conn) == rows
    assert len(seen) == 2 and seen[0] is None
    dropped = seen[1]
    assert dropped.status == "needs_consent" and dropped.tokens is None
    assert env.srv.stats.code_exchanges == 2
    conn.close()


def test_invalid_client_is_a_configuration_error_and_keeps_tokens(conf_env: Env) -> None:
    cfg = conf_env.toml(client_id="remotetables-conf", provider='client_secret_env = "DEMO_SECRET"')
    conn = conf_env.connect(cfg, consent=walker())
    rows_of(conn)
    conn.close()
    store = conf_env.store()
    key = conf_env.key("alice", "remotetables-conf")
    before = store.get(key)
    assert before is not None and before.tokens is not None
    conf_env.clock.advance(3600)
    wrong = dict(conf_env.environ, DEMO_SECRET="not-the-secret")
    conn = conf_env.connect(cfg, consent=refuse, environ=wrong)
    with pytest.raises(ProviderError, match="invalid_client") as info:
        rows_of(conn)
    assert info.value.error_code == "invalid_client"
    after = store.get(key)
    assert after is not None and after.status == "active" and after.tokens is not None
    assert after.tokens.refresh_token == before.tokens.refresh_token
    assert after.tokens.access_token == before.tokens.access_token
    conn.close()
    store.close()


WORKER = r"""
import json, sys, threading
import remotetables

config, n_threads = sys.argv[1], int(sys.argv[2])
go = threading.Event()
results, lock = [], threading.Lock()

def refuse(req):
    raise AssertionError("consent asked")

conns = [remotetables.connect(":memory:", config=config, user="alice", consent=refuse,
                              environ={"REMOTETABLES_NO_KEYRING": "1"}) for _ in range(n_threads)]

def work(conn):
    go.wait(60)
    try:
        rows = conn.execute("SELECT number, assigned_to FROM incidents").fetchall()
        res = {"ok": True, "n": len(rows), "owners": sorted({r[1] for r in rows})}
    except Exception as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with lock:
        results.append(res)

threads = [threading.Thread(target=work, args=(c,)) for c in conns]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for t in threads:
    t.join(90)
print(json.dumps(results), flush=True)
"""


@pytest.mark.timeout(180)
def test_four_processes_four_threads_refresh_once(tmp_path: Path) -> None:
    with make_env(tmp_path, clock=time.time) as env:
        cfg = env.toml(page_size=50)
        conn = env.connect(cfg, consent=walker(), clock=time.time)
        expected = len(rows_of(conn))
        conn.close()
        store = env.store()
        rec = store.get(env.key("alice"))
        assert rec is not None and rec.tokens is not None
        expired = TokenSet(
            rec.tokens.access_token, rec.tokens.refresh_token, expires_at=time.time() - 10
        )
        version = store.put(env.key("alice"), expired, now=time.time())
        env.srv.expire_access_tokens()
        env.api.clear_requests()
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(cfg), "4"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.communicate(timeout=30)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.extend(json.loads(out.splitlines()[-1]))
        assert len(results) == 16
        assert [r for r in results if not r["ok"]] == []
        assert {(r["n"], tuple(r["owners"])) for r in results} == {(expected, ("alice",))}
        assert env.srv.stats.refreshes == 1
        assert env.srv.stats.refresh_reuse_detected == 0
        new = store.get(env.key("alice"))
        assert new is not None and new.tokens is not None and new.version == version + 1
        fps = {r.token_fp for r in env.api.requests}
        assert fps == {token_fingerprint(new.tokens.access_token)}
        assert {r.user for r in env.api.requests} == {"alice"}
        store.close()


def test_raise_consent_is_bound_to_the_web_session(env: Env) -> None:
    """RFC 9700 2.1.1: a callback from another browser session cannot finish the consent."""
    conn = env.connect(user="alice", consent="raise")
    conn.session.web_session = "browser-session-A"
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    landed = walk_consent(info.value.authorization_url or "", username="alice", password="alice")
    with pytest.raises(ConsentFailed):
        complete_consent(conn.runtime, landed, web_session="browser-session-B", user="alice")
    assert conn.runtime.oauth_service().tokens() == []
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    landed = walk_consent(info.value.authorization_url or "", username="alice", password="alice")
    assert complete_consent(conn, landed) == ("demo", "alice")  # the connection's own session
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    conn.close()


def test_time_spent_on_consent_is_not_statement_time(env: Env) -> None:
    """`.stats` and the progress line count the query, not the minutes the user took to consent."""
    conn = env.connect(
        user="alice",
        consent=lambda req: walk_consent(req.authorization_url, username="alice", password="alice"),
    )
    rows_of(conn)
    stats = conn.session.last_stats
    assert stats is not None and stats.finished is not None  # ended when SQLite finished it
    assert stats.paused > 0  # the consent walk happened inside this statement
    assert stats.wall_time == pytest.approx(stats.finished - stats.started - stats.paused)
    rows_of(conn)  # a token now: nothing paused
    second = conn.session.last_stats
    assert second is not None and second is not stats and second.paused == 0
    conn.close()
