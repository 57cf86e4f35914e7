"""Secrets never leak: tokens, codes, verifiers and client secrets stay out of every output.

A test-level transport records every secret that crosses the wire (request forms, Basic
and Bearer headers, token responses); then a run through consent, refresh, 401, invalid
grant, invalid client, client credentials and failed consents is searched for them: log
records at DEBUG (every logger), exception texts, reprs and tracebacks, SQL function
results, the user's database file, the config file and the token store files.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Lock, Thread
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx2
import pytest

import remotetables
from remotetables.auth.consent import ConsentRequest, browser_consent
from remotetables.auth.service import complete_consent
from remotetables.demo.api.server import Fault, IncidentsAPI
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DemoClient
from remotetables.errors import Error, RemoteError
from tests.auth.test_oauth_e2e import SECRET, Env, confidential, make_env, walker
from tests.conftest import incidents_table
from tests.servers.walk import walk_consent

WRONG_SECRET = "wrong-secret-that-must-not-leak-either"
BROWSER = "fake-browser"
SERVER_LOGGERS = ("authlib.oauth2.rfc", "werkzeug", "django")  # the test's own servers
_FORM_SECRETS = ("code", "code_verifier", "refresh_token", "client_secret", "device_code", "token")
_JSON_SECRETS = ("access_token", "refresh_token", "device_code", "id_token")


class Recorder(httpx2.BaseTransport):
    """Wraps the real transport and keeps every secret it sees going out or coming back."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.secrets: set[str] = set()
        self._lock = Lock()

    def _add(self, *values: str | None) -> None:
        with self._lock:
            self.secrets.update(v for v in values if v and len(v) >= 8)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            self._add(auth[7:])
        elif auth.startswith("Basic "):
            _, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            self._add(unquote(secret))
        if request.headers.get("Content-Type", "").startswith("application/x-www-form"):
            form = dict(parse_qsl(request.read().decode()))
            self._add(*(form.get(k) for k in _FORM_SECRETS))
        response = self.inner.handle_request(request)
        content = response.read()
        try:
            doc = json.loads(content)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            self._add(*(v for k in _JSON_SECRETS if isinstance(v := doc.get(k), str)))
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx2.Response(response.status_code, headers=headers, content=content)

    def close(self) -> None:
        self.inner.close()


def quiet_browser(username: str) -> Callable[[str], bool]:
    """A fake browser that does not log the callback URL itself (urllib has no logging)."""

    def open_browser(url: str) -> bool:
        def run() -> None:
            landed = walk_consent(url, username=username, password=username)
            with urllib.request.urlopen(landed, timeout=10) as resp:
                resp.read()

        Thread(target=run, daemon=True, name=f"{BROWSER}-{username}").start()
        return True

    return open_browser


def in_browser(fn: Callable[[], str]) -> str:
    """Run ``fn`` as the test's fake browser does: in a thread whose log records are its own."""
    box: list[str] = []
    thread = Thread(target=lambda: box.append(fn()), name=BROWSER, daemon=True)
    thread.start()
    thread.join(30)
    assert box, "the fake browser did not finish"
    return box[0]


def quiet_walker(**kw: Any) -> Callable[[ConsentRequest], str]:
    inner = walker(**kw)
    return lambda req: in_browser(lambda: inner(req))


def ours(record: logging.LogRecord) -> bool:
    """Log records of remotetables' side: not the test's servers, not its fake browser."""
    return not (record.threadName or "").startswith(BROWSER) and not any(
        record.name.startswith(p) for p in SERVER_LOGGERS
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    public = DemoClient(DEFAULT_CLIENT_ID, None, ["http://127.0.0.1/callback"])
    with make_env(tmp_path, clients=[public, confidential()]) as e:
        e.environ["DEMO_SECRET"] = SECRET
        yield e


def write_config(env: Env) -> Path:
    state = env.tmp / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    iss, base = env.srv.issuer, env.api.base_url
    text = f"""
[settings]
token_store = "{state}/tokens.db"
key_file = "{state}/token.key"

[providers.demo]
issuer = "{iss}"
client_id = "{DEFAULT_CLIENT_ID}"
scopes = ["incidents.read"]

[providers.conf]
issuer = "{iss}"
client_id = "remotetables-conf"
client_secret_env = "DEMO_SECRET"
token_endpoint_auth_method = "client_secret_post"

[providers.svc]
issuer = "{iss}"
client_id = "remotetables-conf"
client_secret_env = "DEMO_SECRET"
integration = "system"
grant = "client_credentials"
"""
    for name, provider in (("incidents", "demo"), ("conf_incidents", "conf"), ("svc", "svc")):
        extra = f'provider = "{provider}"\ncache_ttl = 60\n'
        text += "\n" + incidents_table(name, "link", base, max_page_size=7, extra=extra)
    path = env.tmp / "remotetables.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_secret_in_logs_errors_sql_or_files(
    env: Env, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "httpx", "httpcore", "remotetables", "authlib"):
        caplog.set_level(logging.DEBUG, logger=name)
    rec = Recorder()
    cfg = write_config(env)
    db = env.tmp / "user.db"
    errors: list[BaseException] = []
    texts: list[str] = []

    def connect(**kw: Any) -> remotetables.Connection:
        kw.setdefault("environ", env.environ)
        return remotetables.connect(db, config=cfg, transport=rec, clock=env.clock, **kw)

    def expect_error(fn: Callable[[], Any]) -> None:
        with pytest.raises(Error) as info:
            fn()
        errors.append(info.value)

    def sql(conn: remotetables.Connection, text: str) -> None:
        for row in conn.execute(text).fetchall():
            texts.extend(str(v) for v in row)

    functions = (
        "SELECT current_user(), remotetables_stats(), remotetables_cache()",
        "SELECT remotetables_cache_clear('svc')",
    )
    conn = connect(user="alice", consent=quiet_walker())
    sql(conn, "SELECT * FROM incidents")
    sql(conn, "SELECT * FROM conf_incidents")
    sql(conn, "SELECT * FROM svc")
    for text in functions:
        sql(conn, text)
    # bob through the browser and the loopback listener
    sql(conn, "SELECT set_user('bob')")
    conn.session.consent = browser_consent(timeout=20, open_browser=quiet_browser("bob"))
    sql(conn, "SELECT * FROM incidents")
    # refresh before expiry, then a 401 mid-pagination
    env.clock.advance(3590)
    sql(conn, "SELECT remotetables_cache_clear()")
    sql(conn, "SELECT * FROM incidents")
    env.api.faults.add(Fault("status", path="/styles/link/incidents", page=2, status=401))
    sql(conn, "SELECT remotetables_cache_clear()")
    sql(conn, "SELECT * FROM incidents")
    # invalid_grant: consent again; a 401 that never ends
    env.srv.revoke_all_for("bob")
    env.clock.advance(3600)
    sql(conn, "SELECT remotetables_cache_clear()")
    conn.session.consent = quiet_walker()
    sql(conn, "SELECT * FROM incidents")
    env.api.faults.add(Fault("status", path="/styles/link/incidents", status=401, times=2))
    sql(conn, "SELECT remotetables_cache_clear()")
    expect_error(lambda: conn.execute("SELECT * FROM incidents").fetchall())
    # failed consents
    sql(conn, "SELECT set_user('carol')")
    conn.session.consent = quiet_walker(approve=False)
    expect_error(lambda: conn.execute("SELECT * FROM incidents").fetchall())
    conn.session.consent = quiet_walker(mutate=lambda u: u.replace("state=", "state=x"))
    expect_error(lambda: conn.execute("SELECT * FROM incidents").fetchall())
    conn.session.consent = "raise"
    expect_error(lambda: conn.execute("SELECT * FROM incidents").fetchall())
    url = getattr(errors[-1], "authorization_url", None) or ""
    landed = in_browser(lambda: walk_consent(url, username="carol", password="carol"))
    complete_consent(conn, landed)
    expect_error(lambda: complete_consent(conn, landed))  # used state
    sql(conn, "SELECT * FROM incidents")
    for text in functions:
        sql(conn, text)
    texts.append(repr(conn))
    texts.append(repr(conn.session))
    svc = conn.runtime.oauth_service()
    for provider in ("demo", "conf", "svc"):
        p = conn.runtime.provider(provider)
        texts += [repr(svc.credentials(p)), repr(svc.client(p)), repr(p)]
    texts += [repr(svc.store), repr(svc.manager), repr(svc.tokens())]
    conn.close()

    # invalid_client: a wrong secret for the confidential client (stored tokens are kept)
    env.clock.advance(3600)
    wrong = dict(env.environ, DEMO_SECRET=WRONG_SECRET)
    conn = connect(user="alice", consent=quiet_walker(), environ=wrong)
    expect_error(lambda: conn.execute("SELECT * FROM conf_incidents").fetchall())
    expect_error(lambda: conn.execute("SELECT * FROM svc").fetchall())
    conn.close()

    secrets = rec.secrets | {SECRET, WRONG_SECRET}
    # what was captured is what the run really used
    assert sum(1 for s in rec.secrets if s not in (SECRET, WRONG_SECRET)) >= 15
    assert env.srv.stats.refreshes >= 3 and env.srv.stats.code_exchanges >= 5
    assert len(errors) == 7
    assert {type(e).__name__ for e in errors} >= {
        "RemoteError",
        "ConsentDenied",
        "ConsentFailed",
        "ConsentRequired",
        "ProviderError",
    }

    for exc in errors:
        chain: BaseException | None = exc
        while chain is not None:
            texts += [str(chain), repr(chain), repr(chain.args)]
            texts.append(repr({k: v for k, v in vars(chain).items() if k != "__traceback__"}))
            chain = chain.__cause__ or chain.__context__
        texts.append("".join(traceback.format_exception(exc)))
    records = [r for r in caplog.records if ours(r)]
    logged = []
    for record in records:
        logged += [record.getMessage(), repr(record.args), str(record.exc_text or "")]
    out = capsys.readouterr()
    outputs = {
        "logs": "\n".join(logged),
        "errors and reprs": "\n".join(texts),
        "stdout/stderr": out.out + out.err,
    }
    assert len(records) > 50  # the loggers really were on
    assert {r.name for r in records} >= {"httpx2", "httpcore2.http11"}
    files = [db, cfg, *env.tmp.glob("user.db-*")]
    store_files = sorted((env.tmp / "state").glob("tokens.db*"))
    assert store_files and db.exists()
    for path in [*files, *store_files]:
        outputs[str(path)] = path.read_bytes().decode("latin-1")
    # control: the servers' own DEBUG logs do show tokens, so the search below can fail
    theirs = "\n".join(r.getMessage() for r in caplog.records if not ours(r))
    assert any(s in theirs for s in rec.secrets)
    leaks = [
        (where, s[:6] + "...") for where, text in outputs.items() for s in secrets if s in text
    ]
    assert leaks == []


def test_recorder_finds_a_planted_leak(env: Env) -> None:
    """Control: the search above does find a secret when one is there."""
    rec = Recorder()
    with httpx2.Client(transport=rec) as http:
        resp = http.post(
            env.srv.issuer + "/token",
            data={"grant_type": "client_credentials", "client_secret": SECRET},
            auth=("remotetables-conf", SECRET),
        )
    token = resp.json()["access_token"]
    assert token in rec.secrets and SECRET in rec.secrets
    buf = io.StringIO()
    logging.getLogger("remotetables.test").addHandler(logging.StreamHandler(buf))
    logging.getLogger("remotetables.test").warning("oops %s", token)
    assert any(s in buf.getvalue() for s in rec.secrets)


URL_SECRET = "abc123secretq"


def secret_url_table(base: str) -> str:
    """An API key in the URL (`token_param = "token"`, from $URL_KEY) on the test API, which
    ignores it and echoes it in its Link headers."""
    table = incidents_table("inc", "link", base, extra="cache_ttl = 0\n")
    return (
        '[providers.key]\nauth = "bearer"\ntoken_env = "URL_KEY"\ntoken_param = "token"\n' + table
    )


def test_a_redacted_query_value_reads_as_stars(
    fresh_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    conn = open_conn(secret_url_table(fresh_api.base_url), environ={"URL_KEY": URL_SECRET})
    fresh_api.faults.add(Fault("status", path="/styles/link/incidents", status=400))
    with pytest.raises(RemoteError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    message, url = str(info.value), info.value.url or ""
    assert "HTTP 400" in message and URL_SECRET not in message + url
    assert "&token=***" in message and "&token=***" in url
    assert "%2A" not in message + url


def test_library_logs_redact_url_secrets(
    fresh_api: IncidentsAPI, open_conn: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """httpx2 logs every request's URL at INFO, httpcore2 every answer's headers at DEBUG (the
    Link header repeats the query): with remotetables imported, neither shows the secret."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    conn = open_conn(secret_url_table(fresh_api.base_url), environ={"URL_KEY": URL_SECRET})
    assert len(conn.execute("SELECT * FROM inc").fetchall()) == 250  # 7 pages
    fresh_api.faults.add(
        Fault(
            "status",
            path="/styles/link/incidents",
            status=400,
            headers={"Set-Cookie": "sid=cookie-secret-42; Path=/; HttpOnly"},
        )
    )
    with pytest.raises(RemoteError):
        conn.execute("SELECT * FROM inc").fetchall()
    records = [r for r in caplog.records if r.name.startswith(("httpx2", "httpcore2"))]
    lines = [r.getMessage() for r in records]
    assert any(
        line.startswith("HTTP Request: GET http://") and "token=***" in line for line in lines
    )
    assert any(line.endswith('"HTTP/1.1 400 Bad Request"') for line in lines)
    headers = [line for line in lines if line.startswith("receive_response_headers.complete")]
    assert len(headers) == 8 and sum("token=***" in line for line in headers) >= 6  # Link
    assert "(b'Set-Cookie', b'***')" in headers[-1]
    texts = lines + [repr(r.args) for r in records]
    assert [t for t in texts if URL_SECRET in t or "cookie-secret-42" in t] == []
