"""The demo authorization server's sign-in session: prompt=login, login_hint, "Not alice? Sign
in as someone else", and sign out (POST with the CSRF token only)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode, urljoin

import httpx2
import pytest

from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DemoAuthServer
from tests.servers.walk import (
    authorization_url,
    callback_params,
    new_verifier,
    parse_forms,
    walk_consent,
)

REDIRECT = "http://127.0.0.1:49152/callback"


@pytest.fixture
def srv() -> Iterator[DemoAuthServer]:
    with DemoAuthServer() as server:
        yield server


@pytest.fixture
def browser() -> Iterator[httpx2.Client]:
    """One cookie jar: the server's session carries over, as in one browser."""
    with httpx2.Client(follow_redirects=False, timeout=10.0) as client:
        yield client


def _url(srv: DemoAuthServer, **extra: str) -> str:
    url = authorization_url(
        srv.issuer + "/authorize",
        client_id=DEFAULT_CLIENT_ID,
        redirect_uri=REDIRECT,
        state="st-1",
        verifier=new_verifier(),
    )
    return url + ("&" + urlencode(extra) if extra else "")


def _follow(browser: httpx2.Client, resp: httpx2.Response) -> httpx2.Response:
    while resp.is_redirect:
        resp = browser.get(urljoin(str(resp.url), resp.headers["location"]))
    return resp


def _sign_in_as_alice(srv: DemoAuthServer, browser: httpx2.Client) -> None:
    final = walk_consent(_url(srv), username="alice", password="alice", client=browser)
    assert "code" in callback_params(final)


def test_prompt_login_asks_to_sign_in_although_signed_in(
    srv: DemoAuthServer, browser: httpx2.Client
) -> None:
    _sign_in_as_alice(srv, browser)
    plain = _follow(browser, browser.get(_url(srv)))
    assert "Signed in as <strong>alice</strong>" in plain.text and "Not alice?" in plain.text
    page = _follow(browser, browser.get(_url(srv, prompt="login", login_hint="bob")))
    form = parse_forms(page.text)[0]
    assert form.is_login
    assert ("username", "bob") in form.fields  # the login_hint fills the field in
    assert "Signed in as <strong>alice</strong>" in page.text  # and says whose session it ends
    # signing in as bob answers the prompt: back to the request, without prompt, as bob
    final = walk_consent(_url(srv, prompt="login"), username="bob", password="bob", client=browser)
    assert "code" in callback_params(final)
    again = _follow(browser, browser.get(_url(srv)))
    assert "Signed in as <strong>bob</strong>" in again.text


def test_login_hint_is_escaped(srv: DemoAuthServer, browser: httpx2.Client) -> None:
    page = _follow(browser, browser.get(_url(srv, login_hint='"><script>x</script>')))
    assert parse_forms(page.text)[0].is_login
    assert "<script>x" not in page.text and "&lt;script&gt;x" in page.text


def test_sign_in_as_someone_else_link_goes_back_to_the_request(
    srv: DemoAuthServer, browser: httpx2.Client
) -> None:
    _sign_in_as_alice(srv, browser)
    consent = _follow(browser, browser.get(_url(srv, prompt="login")))
    assert parse_forms(consent.text)[0].is_login  # prompt=login: no consent page at all
    consent = _follow(browser, browser.get(_url(srv)))
    start = consent.text.index("Not alice?")
    href = consent.text[start:].split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    login = browser.get(srv.issuer + href)
    assert parse_forms(login.text)[0].is_login
    assert "%2Fauthorize%3F" in href and "prompt" not in href


def test_sign_out_needs_a_post_with_the_csrf_token(
    srv: DemoAuthServer, browser: httpx2.Client
) -> None:
    _sign_in_as_alice(srv, browser)
    # a GET (a link, an image on another site) only shows a confirmation form
    shown = browser.get(srv.issuer + "/logout?next=/")
    assert shown.status_code == 200 and parse_forms(shown.text)[0].action == "/logout"
    assert "Signed in as" in _follow(browser, browser.get(_url(srv))).text
    # a POST without the token (a forged form) is refused
    forged = browser.post(srv.issuer + "/logout", data={"next": "/"})
    assert forged.status_code == 403
    assert "Signed in as" in _follow(browser, browser.get(_url(srv))).text
    # the consent page's Sign out button: signed out, back at the request, which asks to sign in
    consent = _follow(browser, browser.get(_url(srv)))
    logout = next(f for f in parse_forms(consent.text) if f.action == "/logout")
    done = browser.post(
        srv.issuer + "/logout", data=dict(logout.fields), headers={"Origin": srv.issuer}
    )
    assert done.status_code == 302
    page = _follow(browser, done)
    assert parse_forms(page.text)[0].is_login and "Signed in as" not in page.text
