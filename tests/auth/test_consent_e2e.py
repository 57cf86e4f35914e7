"""Consent against the demo authorization server on loopback: what a user or a web app sees
when something is off (wrong web session, denied access, a pasted non-URL, a server down)."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

import remotetables
from remotetables.auth.consent import LoopbackListener, browser_consent, prompt_consent
from remotetables.auth.service import SYSTEM_SUBJECT, complete_consent
from remotetables.cli import main
from remotetables.demo.authserver.server import DemoClient
from remotetables.errors import (
    ConsentDenied,
    ConsentFailed,
    ConsentRequired,
    ProviderError,
    ProviderUnavailable,
)
from tests.auth.test_oauth_e2e import Env, make_env, refuse, rows_of
from tests.servers.walk import walk_consent

CODE = "code-SECRET-0123456789"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path) as e:
        yield e


def test_a_callback_from_another_web_session_does_not_use_up_the_consent(env: Env) -> None:
    conn = env.connect(user="alice", consent="raise")
    conn.session.web_session = "sess-1"
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    landed = walk_consent(info.value.authorization_url or "", username="alice", password="alice")
    with pytest.raises(ConsentFailed, match="started from another session"):
        complete_consent(conn.runtime, landed, web_session="sess-2", user="alice")
    assert env.srv.stats.code_exchanges == 0 and conn.runtime.oauth_service().tokens() == []
    # the rightful session still finishes it ...
    assert complete_consent(conn.runtime, landed, web_session="sess-1", user="alice") == (
        "demo",
        "alice",
    )
    assert env.srv.stats.code_exchanges == 1
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    # ... once: a replay fails from either session, and redeems nothing
    for session in ("sess-1", "sess-2"):
        with pytest.raises(ConsentFailed, match="matches no pending authorization"):
            complete_consent(conn.runtime, landed, web_session=session, user="alice")
    assert env.srv.stats.code_exchanges == 1
    conn.close()


# ---------------------------------------------------------------- logout refused (RFC 7009)

SVC = "svc-client"
SVC_SECRET = "service-account-secret-for-tests"  # test-only


@pytest.fixture
def cc_env(tmp_path: Path) -> Iterator[Env]:
    clients = [DemoClient(SVC, SVC_SECRET, [], client_name="service account")]
    with make_env(tmp_path, clients=clients, users=("alice", SVC)) as e:
        e.environ["SVC_SECRET"] = SVC_SECRET
        yield e


CC = 'integration = "system"\ngrant = "client_credentials"\nclient_secret_env = "SVC_SECRET"\n'


def test_logout_refused_for_a_wrong_client_secret_is_not_an_outage(cc_env: Env) -> None:
    env = cc_env
    cfg = env.toml(client_id=SVC, provider=CC)
    conn = env.connect(cfg, user="alice", consent=refuse)
    rows = rows_of(conn)
    assert {r[1] for r in rows} == {SVC}
    key = env.key(SYSTEM_SUBJECT, SVC)
    store = env.store()
    rec = store.get(key)
    assert rec is not None and rec.tokens is not None
    token = rec.tokens.access_token

    wrong = remotetables.Runtime(
        remotetables.load_config(cfg), environ={**env.environ, "SVC_SECRET": "wrong"}
    )
    svc = wrong.oauth_service()
    with pytest.raises(ProviderError) as info:
        svc.logout(wrong.provider("demo"), SYSTEM_SUBJECT)
    message = str(info.value)
    assert info.value.error_code == "invalid_client" and "invalid_client" in message
    assert "NOT revoked at demo" in message and "$SVC_SECRET" in message
    assert "right now" not in message and "wrong" not in message  # no secret, no "outage"
    revocations = len(env.cap.forms("/revoke"))
    assert revocations >= 1 and env.srv.validate_token(token) == SVC  # still valid there
    # unusable here at once: the next query needs a new grant (here: client credentials)
    rec = store.get(key)
    assert rec is not None and rec.status == "revoked"
    assert (rec.last_error or "").startswith("revocation refused")
    # a permanent refusal is not retried on its own (login, tokens and queries retry outages)
    assert svc.retry_revocations() == 0 and svc.retry_revocations(wrong.provider("demo")) == 0
    assert len(env.cap.forms("/revoke")) == revocations
    wrong.close()

    # with the secret fixed, logging out again revokes it there and deletes it here
    right = remotetables.Runtime(remotetables.load_config(cfg), environ=env.environ)
    assert right.oauth_service().logout(right.provider("demo"), SYSTEM_SUBJECT) is True
    assert store.get(key) is None and env.srv.validate_token(token) is None
    right.close()
    store.close()
    conn.close()


def test_cli_logout_with_a_wrong_client_secret_names_the_refusal(cc_env: Env) -> None:
    env = cc_env
    cfg = env.toml(client_id=SVC, provider=CC)
    conn = env.connect(cfg, user="alice", consent=refuse)
    rows_of(conn)
    conn.close()
    result = CliRunner().invoke(
        main,
        ["logout", "demo", "--system", "-c", str(cfg)],
        env={**env.environ, "SVC_SECRET": "wrong"},
        catch_exceptions=False,
    )
    assert result.exit_code == 1, result.output
    assert "invalid_client" in result.output and "NOT revoked" in result.output
    assert "could not confirm" not in result.output and "will retry" not in result.output
    # `tokens` does not ask the provider again
    revocations = len(env.cap.forms("/revoke"))
    result = CliRunner().invoke(main, ["tokens", "-c", str(cfg)], env=env.environ)
    assert result.exit_code == 0 and "revoked" in result.output
    assert len(env.cap.forms("/revoke")) == revocations


# ---------------------------------------------------------------- what the user is told


@pytest.mark.parametrize(
    ("query", "says", "never"),
    [
        ("error=access_denied", "Access was denied", "Authorization received"),
        ("error=server_error", "returned an error (server_error)", "Authorization received"),
        ("error=%3Cscript%3Ex", "returned an error (&lt;script&gt;x)", "<script>"),
        (f"code={CODE}", "Authorization received", "denied"),
    ],
    ids=["access_denied", "other-error", "escaped", "code"],
)
def test_the_listener_page_says_what_the_redirect_carried(
    query: str, says: str, never: str
) -> None:
    with LoopbackListener(timeout=5) as listener:
        listener.expect("s1")
        with httpx2.Client(timeout=5) as http:
            page = http.get(f"{listener.redirect_uri}?state=s1&{query}")
    assert page.status_code == 200
    body = page.text.split("<body>")[1]
    assert says in body and never not in body and CODE not in body


def test_browser_consent_denied_in_the_browser_says_so_on_the_page(env: Env) -> None:
    """The user clicks Deny at the demo server: the tab says access was denied, the query
    fails with ConsentDenied, nothing is stored."""
    pages: list[str] = []

    def open_browser(url: str) -> bool:
        def run() -> None:
            landed = walk_consent(url, username="alice", password="alice", approve=False)
            pages.append(httpx2.get(landed, timeout=10).text)

        threading.Thread(target=run, daemon=True).start()
        return True

    consent = browser_consent(timeout=10, open_browser=open_browser, out=io.StringIO(), paste=None)
    conn = env.connect(user="alice", consent=consent)
    with pytest.raises(ConsentDenied):
        rows_of(conn)
    deadline = time.monotonic() + 10
    while not pages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pages and "Access was denied" in pages[0]
    assert "Authorization received" not in pages[0]
    assert conn.runtime.oauth_service().tokens() == [] and env.srv.stats.token_requests == 0
    conn.close()


def test_pasting_something_that_is_not_a_url_says_so(env: Env) -> None:
    out = io.StringIO()
    conn = env.connect(user="bob", consent=prompt_consent(input=lambda _p: "garbage", out=out))
    with pytest.raises(ConsentFailed) as info:
        rows_of(conn)
    message = str(info.value)
    assert "not a redirect URL" in message and "http://127.0.0.1/callback?" in message
    assert "state does not match" not in message and "garbage" not in message
    assert env.srv.stats.token_requests == 0
    conn.close()


@pytest.mark.parametrize("pasted", ["garbage", "code=x", "mailto:x?state=y"])
def test_a_callable_answering_a_non_url_is_told_so(env: Env, pasted: str) -> None:
    conn = env.connect(user="bob", consent=lambda req: pasted)
    with pytest.raises(ConsentFailed, match="not a redirect URL"):
        rows_of(conn)
    with pytest.raises(ConsentFailed, match="not a redirect URL"):
        complete_consent(conn, pasted)
    conn.close()


def test_a_paste_that_is_not_a_url_while_the_browser_waits(env: Env) -> None:
    """On a terminal the user may paste while the listener waits: a non-URL is named as such,
    a redirect of another sign-in as that, and the right one still completes."""
    read_fd, write_fd = os.pipe()
    out = io.StringIO()

    def open_browser(url: str) -> bool:
        def paste() -> None:
            landed = walk_consent(url, username="bob", password="bob")
            with os.fdopen(write_fd, "w") as w:
                w.write("garbage\n")
                w.flush()
                time.sleep(0.3)
                w.write(f"{landed.split('?')[0]}?code=x&state=not-this-one\n")
                w.flush()
                time.sleep(0.3)
                w.write(landed + "\n")

        threading.Thread(target=paste, daemon=True).start()
        return False

    with os.fdopen(read_fd) as pasted:
        consent = browser_consent(timeout=10, open_browser=open_browser, out=out, paste=pasted)
        conn = env.connect(user="bob", consent=consent)
        assert {r[1] for r in rows_of(conn)} == {"bob"}
    text = out.getvalue()
    assert "That is not a redirect URL" in text and "garbage" not in text
    assert "its state does not match" in text
    conn.close()


def test_an_authorization_server_that_is_down_is_named_with_a_hint(env: Env) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    cfg = env.toml().read_text().replace(env.srv.issuer, f"http://127.0.0.1:{port}")
    path = env.tmp / "down.toml"
    path.write_text(cfg)
    conn = env.connect(path, consent=refuse)
    with pytest.raises(ProviderUnavailable) as info:
        rows_of(conn)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server" in message
    assert "ConnectError" in message and "authorization server is running" in message
    assert "providers.demo.issuer" in message
    conn.close()
