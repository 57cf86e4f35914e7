"""Which account a grant belongs to, against a real OpenID provider: django-oauth-toolkit with
OIDC enabled (RS256 ID tokens, JWKS), walked as one browser would (one HTTP client, one
cookie jar, so the provider's sign-in session carries over from one consent to the next).

The test API validates each token by introspection at DOT and serves the rows of whoever
the token belongs to: a grant bound to the wrong account returns the wrong person's rows.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import remotetables
from remotetables.auth.consent import ConsentRequest
from remotetables.demo.api.server import IncidentsAPI
from remotetables.errors import AccountMismatch
from remotetables.shell import token_rows
from tests.conftest import incidents_table
from tests.servers.dot_server import DOT_USERS, DotServer
from tests.servers.walk import walk_consent

NO_KEYRING = {"REMOTETABLES_NO_KEYRING": "1"}


@pytest.fixture
def api(dot: DotServer) -> Iterator[IncidentsAPI]:
    with IncidentsAPI(n_rows=40, token_validator=dot.introspection_validator()) as server:
        yield server


def dot_config(tmp_path: Path, dot: DotServer, api: IncidentsAPI, extra: str = "") -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    cfg = tmp_path / "remotetables.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [settings]
            token_store = "{state}/tokens.db"
            key_file = "{state}/token.key"
            [providers.dot]
            issuer = "{dot.issuer}"
            client_id = "{dot.client_id}"
            scopes = ["openid", "incidents.read"]
            """
        )
        + extra
        + "\n"
        + incidents_table("incidents", "link", api.base_url, extra="cache_ttl = 0\n")
    )
    return cfg


class OneBrowser:
    """Consent walked in one cookie jar, by whoever is at the keyboard: they sign in as
    themselves when the provider shows its sign-in page, and click Authorize (or, with
    ``approve`` off, Cancel) otherwise."""

    def __init__(self) -> None:
        self.http = httpx2.Client(follow_redirects=False, timeout=10.0)
        self.at_keyboard = "alice"
        self.approve = True
        self.requests: list[ConsentRequest] = []

    def __call__(self, req: ConsentRequest) -> str:
        self.requests.append(req)
        who = self.at_keyboard
        return walk_consent(
            req.authorization_url,
            username=who,
            password=DOT_USERS[who],
            client=self.http,
            approve=self.approve,
        )

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser_session() -> Iterator[OneBrowser]:
    b = OneBrowser()
    try:
        yield b
    finally:
        b.close()


def owners(conn: Any, user: str) -> set[str]:
    conn.execute("SELECT set_user(?)", (user,))
    return {r[0] for r in conn.execute("SELECT assigned_to FROM incidents")}


def connect(cfg: Path, consent: Callable[[ConsentRequest], str]) -> Any:
    return remotetables.connect(":memory:", config=cfg, consent=consent, environ=NO_KEYRING)


def test_alice_then_bob_in_one_browser_session_each_get_their_own_account(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path, browser_session: OneBrowser
) -> None:
    cfg = dot_config(tmp_path, dot, api)
    with connect(cfg, browser_session) as conn:
        assert owners(conn, "alice") == {"alice"}
        browser_session.at_keyboard = "bob"
        # without prompt=login DOT would show its consent page for alice's session and
        # store alice's grant as bob's: bob would see alice's rows
        assert owners(conn, "bob") == {"bob"}
        svc = conn.runtime.oauth_service()
        provider = conn.runtime.provider("dot")
        accounts = {}
        for user in ("alice", "bob"):
            rec = svc.store.get(svc.key(provider, user))
            assert rec is not None and rec.tokens is not None and rec.tokens.account is not None
            accounts[user] = rec.tokens.account
        headers, rows = token_rows(conn.runtime)
    assert accounts["alice"].name == "alice@example.com"
    assert accounts["bob"].name == "bob@example.com"
    assert {a.source for a in accounts.values()} == {"id_token"}
    assert accounts["alice"].subject != accounts["bob"].subject  # DOT's sub: the user's id
    assert accounts["alice"].issuer == dot.issuer
    urls = [r.authorization_url for r in browser_session.requests]
    assert "prompt=login" in urls[0] and "prompt=login" in urls[1]
    assert all("nonce=" in u for u in urls)
    column = headers.index("account")
    assert sorted((r[1], r[column]) for r in rows) == [
        ("alice", "alice@example.com"),
        ("bob", "bob@example.com"),
    ]


def test_the_same_user_again_is_not_asked_to_sign_in(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path, browser_session: OneBrowser
) -> None:
    cfg = dot_config(tmp_path, dot, api)
    with connect(cfg, browser_session) as conn:
        assert owners(conn, "alice") == {"alice"}
        svc = conn.runtime.oauth_service()
        svc.logout(conn.runtime.provider("dot"), "alice")
        assert owners(conn, "alice") == {"alice"}
    first, second = (r.authorization_url for r in browser_session.requests)
    assert "prompt=login" in first and "prompt=" not in second


@pytest.mark.parametrize("prompt", ["auto", "never"])
def test_a_configured_account_refuses_someone_elses_sign_in_and_stores_nothing(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path, browser_session: OneBrowser, prompt: str
) -> None:
    # auto: DOT asks bob to sign in, but alice (still at the keyboard) signs in as herself;
    # never: no sign-in is asked, DOT's consent page runs on alice's session
    cfg = dot_config(tmp_path, dot, api, f'account = "{{user}}@example.com"\nprompt = "{prompt}"\n')
    with connect(cfg, browser_session) as conn:
        assert owners(conn, "alice") == {"alice"}
        svc = conn.runtime.oauth_service()
        provider = conn.runtime.provider("dot")
        alice_before = svc.store.get(svc.key(provider, "alice"))
        revocations = dot.stats.revocations
        api.clear_requests()
        with pytest.raises(AccountMismatch) as info:
            owners(conn, "bob")
        err = info.value
        assert err.account == "alice@example.com" and err.expected == "bob@example.com"
        assert err.user == "bob" and err.provider == "dot"
        text = str(err)
        assert "alice@example.com" in text and "bob@example.com" in text
        assert "not stored" in text and "remotetables login dot --user bob" in text
        assert ("sign out first" in text) == (prompt == "never")
        # nothing stored for bob, alice's grant untouched, no API request made with it
        assert svc.store.get(svc.key(provider, "bob")) is None
        alice_after = svc.store.get(svc.key(provider, "alice"))
        assert alice_after is not None and alice_before is not None
        assert alice_after.version == alice_before.version
        assert not api.requests
        assert [i.subject for i in svc.tokens()] == ["alice"]
        # the unwanted grant is revoked at the provider
        assert dot.stats.revocations > revocations
        # bob at the keyboard now
        browser_session.at_keyboard = "bob"
        if prompt == "auto":  # the next consent asks to sign in: bob does, and it works
            assert owners(conn, "bob") == {"bob"}
            assert "prompt=login" in browser_session.requests[-1].authorization_url
        else:  # never asked to sign in: DOT's session is still alice's, refused again
            with pytest.raises(AccountMismatch):
                owners(conn, "bob")
            assert "prompt=" not in browser_session.requests[-1].authorization_url
            assert svc.store.get(svc.key(provider, "bob")) is None


def test_the_shell_switches_user_and_tokens_shows_each_account(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path, browser_session: OneBrowser
) -> None:
    from tests.test_shell import run_shell

    cfg = dot_config(tmp_path, dot, api)

    def consent(req: ConsentRequest) -> str:
        browser_session.at_keyboard = req.user  # each user at the keyboard in turn
        return browser_session(req)

    with connect(cfg, consent) as conn:
        conn.execute("SELECT set_user('alice')")
        script = (
            "SELECT DISTINCT assigned_to FROM incidents;\n.user bob\n"
            "SELECT DISTINCT assigned_to FROM incidents;\n.tokens\n"
        )
        out, err = run_shell(conn, script)
    assert err == ""
    lines = out.splitlines()
    assert lines[:3] == ["alice", "now querying as bob", "bob"]
    header = next(line for line in lines if line.startswith("provider"))
    assert header.split()[:4] == ["provider", "user", "account", "status"]
    rows = [line.split()[:4] for line in lines if line.startswith("dot ")]
    assert rows == [
        ["dot", "alice", "alice@example.com", "active"],
        ["dot", "bob", "bob@example.com", "active"],
    ]


def test_a_web_app_completing_someone_elses_consent_stores_nothing(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path, browser_session: OneBrowser
) -> None:
    cfg = dot_config(tmp_path, dot, api, 'account = "{user}@example.com"\n')
    with remotetables.connect(":memory:", config=cfg, consent="raise", environ=NO_KEYRING) as conn:
        conn.execute("SELECT set_user('bob')")
        with pytest.raises(remotetables.ConsentRequired) as required:
            conn.execute("SELECT count(*) FROM incidents").fetchone()
        url = required.value.authorization_url
        assert url is not None and "prompt=login" in url and "nonce=" in url
        browser_session.at_keyboard = "alice"  # alice signs in on the page meant for bob
        redirect = browser_session(ConsentRequest("bob", "dot", url, dot.redirect_uri))
        with pytest.raises(AccountMismatch, match="was given by account"):
            remotetables.complete_consent(conn, redirect)
        svc = conn.runtime.oauth_service()
        assert svc.tokens() == []
        provider = conn.runtime.provider("dot")
        assert provider.client_id is not None
        assert svc.store.last_signin(provider.token_key_issuer, provider.client_id) is None


def test_a_consent_that_fails_after_someone_signed_in_makes_the_next_one_ask_again(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path, browser_session: OneBrowser
) -> None:
    cfg = dot_config(tmp_path, dot, api)
    with connect(cfg, browser_session) as conn:
        assert owners(conn, "alice") == {"alice"}
        svc = conn.runtime.oauth_service()
        svc.logout(conn.runtime.provider("dot"), "alice")
        # bob signs in at the provider, then cancels: the browser now holds bob's session
        browser_session.at_keyboard, browser_session.approve = "bob", False
        with pytest.raises(remotetables.ConsentDenied):
            owners(conn, "bob")
        # alice's next consent must not run on bob's session
        browser_session.at_keyboard, browser_session.approve = "alice", True
        assert owners(conn, "alice") == {"alice"}
        rec = svc.store.get(svc.key(conn.runtime.provider("dot"), "alice"))
        assert rec is not None and rec.tokens is not None and rec.tokens.account is not None
        assert rec.tokens.account.name == "alice@example.com"
    assert "prompt=login" in browser_session.requests[-1].authorization_url
