"""Alice, then bob, in ONE real browser (one Playwright context: one cookie jar), as in the
README's walk-through: each grant must end bound to its own account.

Against django-oauth-toolkit with OpenID Connect (RS256 ID tokens) and against the embedded
demo server. Whoever is at the keyboard signs in as themselves when the provider shows its
sign-in page and clicks Allow/Authorize on a consent page, as people do; consent goes through
the real loopback listener (``browser_consent``).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.auth.consent import browser_consent
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.run import Demo
from remotetables.errors import AccountMismatch
from tests.conftest import incidents_table
from tests.servers.dot_server import DOT_USERS, DotServer
from tests.test_browser import _shot
from tests.test_browser import browser as browser  # the module-scoped chromium fixture

pytestmark = pytest.mark.browser
NO_KEYRING = {"REMOTETABLES_NO_KEYRING": "1"}


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()  # one context for the whole test: one browser session
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    try:
        yield pg
    finally:
        context.close()


class Person:
    """Who is at the keyboard of the one browser, and what they saw."""

    def __init__(self, page: Any, passwords: dict[str, str], issuer: str) -> None:
        self.page, self.passwords, self.issuer = page, passwords, issuer
        self.name = "alice"
        self.pages: list[str] = []  # "login" / "consent" per page shown

    def open(self, url: str) -> bool:
        """``open_browser`` for browser_consent: sign in if asked, then allow."""
        page = self.page
        page.goto(url)
        for _ in range(4):
            if "/callback?" in page.url and not page.url.startswith(self.issuer):
                return True
            if page.locator("input[name=password]").count():
                self.pages.append("login")
                page.fill("input[name=username]", self.name)
                page.fill("input[name=password]", self.passwords[self.name])
                page.locator("form [type=submit]").first.click()
            else:
                self.pages.append("consent")
                page.locator("[name=allow], button[value=allow]").first.click()
            page.wait_for_load_state()
        raise AssertionError(f"consent did not finish: {self.pages} at {page.url}")


def _dot_config(tmp_path: Path, dot: DotServer, api: IncidentsAPI, extra: str = "") -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
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


def _owners(conn: Any, user: str) -> set[str]:
    conn.execute("SELECT set_user(?)", (user,))
    return {r[0] for r in conn.execute("SELECT assigned_to FROM incidents")}


def test_dot_openid_alice_then_bob_in_one_browser(
    page: Any, dot: DotServer, tmp_path: Path
) -> None:
    with IncidentsAPI(n_rows=40, token_validator=dot.introspection_validator()) as api:
        cfg = _dot_config(tmp_path, dot, api)
        person = Person(page, dict(DOT_USERS), dot.issuer)
        consent = browser_consent(timeout=30, open_browser=person.open, out=None)
        with remotetables.connect(
            ":memory:", config=cfg, consent=consent, environ=NO_KEYRING
        ) as conn:
            assert _owners(conn, "alice") == {"alice"}
            person.name = "bob"
            assert _owners(conn, "bob") == {"bob"}
            _shot(page, "dot-bob-done")
            svc = conn.runtime.oauth_service()
            provider = conn.runtime.provider("dot")
            accounts = {}
            for user in ("alice", "bob"):
                rec = svc.store.get(svc.key(provider, user))
                assert rec is not None and rec.tokens is not None
                accounts[user] = rec.tokens.account
    # bob was asked to sign in although the browser had alice's session (prompt=login)
    assert person.pages == ["login", "consent", "login", "consent"]
    assert accounts["alice"] is not None and accounts["alice"].name == "alice@example.com"
    assert accounts["bob"] is not None and accounts["bob"].name == "bob@example.com"
    assert accounts["alice"].source == accounts["bob"].source == "id_token"


def test_dot_openid_mismatched_account_is_refused_in_one_browser(
    page: Any, dot: DotServer, tmp_path: Path
) -> None:
    with IncidentsAPI(n_rows=40, token_validator=dot.introspection_validator()) as api:
        cfg = _dot_config(tmp_path, dot, api, 'account = "{user}@example.com"\n')
        person = Person(page, dict(DOT_USERS), dot.issuer)
        consent = browser_consent(timeout=30, open_browser=person.open, out=None)
        with remotetables.connect(
            ":memory:", config=cfg, consent=consent, environ=NO_KEYRING
        ) as conn:
            assert _owners(conn, "alice") == {"alice"}
            api.clear_requests()
            # bob's consent, but alice is still at the keyboard and signs in as herself
            with pytest.raises(AccountMismatch, match=re.escape("alice@example.com")) as info:
                _owners(conn, "bob")
            svc = conn.runtime.oauth_service()
            provider = conn.runtime.provider("dot")
            assert svc.store.get(svc.key(provider, "bob")) is None
            assert [i.subject for i in svc.tokens()] == ["alice"]
            assert not api.requests
    assert info.value.expected == "bob@example.com"
    assert person.pages == ["login", "consent", "login", "consent"]


def test_demo_walkthrough_alice_then_bob_in_one_browser(page: Any, tmp_path: Path) -> None:
    """The README's demo: alice consents, then `.user bob`: bob signs in and sees his rows."""
    with Demo(tmp_path, n_rows=60) as demo:
        person = Person(page, {"alice": "alice", "bob": "bob"}, demo.auth.issuer)
        consent = browser_consent(timeout=30, open_browser=person.open, out=None)
        conn = demo.connect("alice", consent=consent)
        try:
            assert _owners(conn, "alice") == {"alice"}
            person.name = "bob"
            conn.execute("SELECT set_user('bob')")
            # the demo's sign-in page is filled in with bob's name (login_hint)
            assert _owners(conn, "bob") == {"bob"}
            svc = conn.runtime.oauth_service()
            names = {i.subject: i.account for i in svc.tokens()}
        finally:
            conn.close()
    assert person.pages == ["login", "consent", "login", "consent"]
    assert names == {"alice": "alice", "bob": "bob"}


def test_demo_consent_page_offers_sign_in_as_someone_else_and_sign_out(
    page: Any, tmp_path: Path
) -> None:
    """With alice's session, a consent page that is not asked to sign in again says "Not
    alice? Sign in as someone else": the link signs bob in; Sign out ends the session."""
    with Demo(tmp_path, n_rows=10) as demo:
        issuer = demo.auth.issuer
        page.goto(issuer + "/login?next=/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "alice")
        page.click("button[name=login]")
        # an authorization request for the demo client, without prompt=login
        import httpx2

        from remotetables.auth.oauth import OAuthClient, OAuthSettings

        with httpx2.Client() as http:
            client = OAuthClient(
                OAuthSettings(name="demo", client_id="remotetables-demo", issuer=issuer), http
            )
            url, _ = client.begin(subject="bob", redirect_uri="http://127.0.0.1:9/callback")
        page.goto(url)
        body = page.inner_text("body")
        assert "Signed in as alice" in body and "Not alice?" in body
        _shot(page, "demo-not-alice")
        page.click("text=Sign in as someone else")
        assert page.locator("input[name=password]").count() == 1
        assert "Signed in as alice" in page.inner_text("body")
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", "bob")
        page.click("button[name=login]")
        page.wait_for_selector("button[value=allow]")
        assert "Signed in as bob" in page.inner_text("body")
        page.click("button[name=logout]")
        # signed out: the authorization request now asks to sign in
        page.wait_for_selector("input[name=password]")
        assert "Signed in as" not in page.inner_text("body")
