"""Unit tests for remotetables.auth.consent: listener, callbacks, run_consent, complete_pending."""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from remotetables.auth.consent import (
    DEFAULT_REDIRECT_URI,
    ConsentRequest,
    LoopbackListener,
    browser_consent,
    complete_pending,
    device_message,
    prompt_consent,
    raise_consent,
    run_consent,
)
from remotetables.auth.oauth import OAuthClient, OAuthSettings
from remotetables.auth.store import MemoryTokenStore, PendingAuth
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DEFAULT_USERS, DemoAuthServer
from remotetables.errors import AuthError, ConsentDenied, ConsentFailed, ConsentRequired
from tests.servers.walk import walk_consent

ISSUER = "https://as.example"
AT = "at-SECRET-0123456789"
CODE = "code-SECRET-0123456789"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(url: str, **kw: Any) -> httpx2.Response:
    with httpx2.Client(timeout=5) as client:
        return client.get(url, **kw)


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


# ---------------------------------------------------------------- loopback listener


@pytest.fixture
def listener() -> Iterator[LoopbackListener]:
    lst = LoopbackListener(timeout=5)
    lst.start()
    yield lst
    lst.close()


def wait_in_thread(
    listener: LoopbackListener, state: str
) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["url"] = listener.wait(state)
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_listener_binds_loopback_only(listener: LoopbackListener) -> None:
    host, port = listener.address
    assert host == "127.0.0.1" and port > 0
    assert listener.redirect_uri == f"http://127.0.0.1:{port}/callback"
    assert listener._server is not None
    sock = listener._server.socket
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_listener_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError):
        LoopbackListener(host="0.0.0.0")
    with pytest.raises(ValueError):
        LoopbackListener(host="localhost")  # an IP literal is required (RFC 8252 §8.3)


def test_wrong_state_gets_400_and_listener_keeps_waiting(listener: LoopbackListener) -> None:
    thread, out = wait_in_thread(listener, "good-state")
    base = listener.redirect_uri
    for query in ("state=bad&code=x", "code=x", "state=good-state&state=bad&code=x"):
        response = get(f"{base}?{query}")
        assert response.status_code == 400
        assert response.headers["referrer-policy"] == "no-referrer"
    assert get(base.replace("/callback", "/favicon.ico")).status_code == 404
    assert thread.is_alive()
    ok = get(f"{base}?state=good-state&code={CODE}")
    assert ok.status_code == 200
    assert "You can close this tab" in ok.text
    assert ok.headers["referrer-policy"] == "no-referrer"
    assert ok.headers["content-security-policy"] == "default-src 'none'"
    assert "http" not in ok.text.split("<body>")[1]  # no external resources, no links
    assert CODE not in ok.text
    thread.join(timeout=5)
    assert out["url"] == f"{base}?state=good-state&code={CODE}"


def test_error_callback_with_right_state_is_accepted(listener: LoopbackListener) -> None:
    thread, out = wait_in_thread(listener, "s1")
    assert get(f"{listener.redirect_uri}?state=s1&error=access_denied").status_code == 200
    thread.join(timeout=5)
    assert "error=access_denied" in out["url"]


def test_second_callback_after_success_is_ignored() -> None:
    listener = LoopbackListener(timeout=5)
    listener.start()
    listener.expect("s1")
    base = listener.redirect_uri
    try:
        assert get(f"{base}?state=s1&code=first").status_code == 200
        assert get(f"{base}?state=s1&code=second").status_code == 400
        assert listener.wait("s1").endswith("code=first")
    finally:
        listener.close()


def test_callback_before_wait_is_held_until_state_known() -> None:
    listener = LoopbackListener(timeout=5)
    listener.start()
    base = listener.redirect_uri
    result: dict[str, int] = {}

    def hit() -> None:
        result["status"] = get(f"{base}?state=early&code=c").status_code

    thread = threading.Thread(target=hit, daemon=True)
    thread.start()
    url = listener.wait("early")
    thread.join(timeout=5)
    assert url.endswith("state=early&code=c") and result["status"] == 200


def test_wrong_host_header_is_rejected(listener: LoopbackListener) -> None:
    listener.expect("s1")
    response = get(f"{listener.redirect_uri}?state=s1&code=c", headers={"Host": "evil.example"})
    assert response.status_code == 400


def test_timeout_raises_and_closes_port() -> None:
    listener = LoopbackListener(timeout=0.2)
    listener.start()
    host, port = listener.address
    with pytest.raises(ConsentFailed) as info:
        listener.wait("never")
    assert info.value.error_code == "timeout"
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass


def test_success_closes_port(listener: LoopbackListener) -> None:
    host, port = listener.address
    thread, _ = wait_in_thread(listener, "s")
    get(f"{listener.redirect_uri}?state=s&code=c")
    thread.join(timeout=5)
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass


def test_ipv6_loopback_listener() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = LoopbackListener(timeout=5, host="::1")
        listener.start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        assert listener.redirect_uri.startswith("http://[::1]:")
        assert listener.address[0] == "::1"
    finally:
        listener.close()


# ---------------------------------------------------------------- callbacks


class FakeAS:
    def __init__(self) -> None:
        self.token_requests = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.token_requests += 1
        return httpx2.Response(200, json={"access_token": AT, "token_type": "Bearer"})


@pytest.fixture
def fake() -> FakeAS:
    return FakeAS()


@pytest.fixture
def client(fake: FakeAS) -> Iterator[OAuthClient]:
    s = OAuthSettings(
        name="demo",
        client_id="cli",
        issuer=ISSUER,
        authorization_endpoint=f"{ISSUER}/authorize",
        token_endpoint=f"{ISSUER}/token",
    )
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as http:
        yield OAuthClient(s, http, clock=Clock())


def approve(url: str, request_redirect: str, **params: str) -> str:
    return f"{request_redirect}?{urlencode({'state': state_of(url), **params})}"


def test_browser_consent_end_to_end_with_fake_browser(client: OAuthClient, fake: FakeAS) -> None:
    opened: list[str] = []
    out = io.StringIO()

    def open_browser(url: str) -> bool:
        # The "browser" follows the redirect to the listener, as the AS would send it.
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        opened.append(url)
        threading.Thread(target=get, args=(approve(url, redirect, code=CODE),), daemon=True).start()
        return True

    store = MemoryTokenStore()
    callback = browser_consent(timeout=5, open_browser=open_browser, out=out, paste=None)
    clock = Clock()
    tokens = run_consent(
        client,
        callback,
        subject="alice",
        save_pending=store.save_pending,
        take_pending=store.take_pending,
        clock=clock,
    )
    assert tokens.access_token == AT and fake.token_requests == 1
    assert opened and opened[0] in out.getvalue()  # the URL is printed too
    redirect = parse_qs(urlsplit(opened[0]).query)["redirect_uri"][0]
    assert redirect.startswith("http://127.0.0.1:") and redirect.endswith("/callback")
    assert store.take_pending(state_of(opened[0]), now=clock()) is None  # single use
    port = urlsplit(redirect).port
    assert port is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_browser_consent_takes_a_pasted_redirect_url(client: OAuthClient, fake: FakeAS) -> None:
    """No browser here (or one on another machine): the user pastes the address the browser
    landed on; a paste with another state is refused and the wait goes on."""
    read_fd, write_fd = os.pipe()
    out = io.StringIO()

    def open_browser(url: str) -> bool:
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]

        def paste() -> None:
            with os.fdopen(write_fd, "w") as w:
                w.write(f"{redirect}?code=x&state=not-this-one\n")
                w.flush()
                time.sleep(0.3)
                w.write(approve(url, redirect, code=CODE) + "\n")

        threading.Thread(target=paste, daemon=True).start()
        return False

    store = MemoryTokenStore()
    with os.fdopen(read_fd) as pasted:
        callback = browser_consent(timeout=5, open_browser=open_browser, out=out, paste=pasted)
        tokens = run_consent(
            client,
            callback,
            subject="alice",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
            clock=Clock(),
        )
    assert tokens.access_token == AT and fake.token_requests == 1
    text = out.getvalue()
    assert "No browser could be opened here" in text
    assert "state does not match" in text


def test_browser_consent_denied_makes_no_token_request(client: OAuthClient, fake: FakeAS) -> None:
    def open_browser(url: str) -> bool:
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        threading.Thread(
            target=get, args=(approve(url, redirect, error="access_denied"),), daemon=True
        ).start()
        return True

    store = MemoryTokenStore()
    with pytest.raises(ConsentDenied):
        run_consent(
            client,
            browser_consent(timeout=5, open_browser=open_browser, out=io.StringIO()),
            subject="alice",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
        )
    assert fake.token_requests == 0


def test_browser_consent_timeout_discards_pending(client: OAuthClient, fake: FakeAS) -> None:
    saved: list[PendingAuth] = []
    store = MemoryTokenStore()

    def save(p: PendingAuth) -> None:
        saved.append(p)
        store.save_pending(p)

    with pytest.raises(ConsentFailed) as info:
        run_consent(
            client,
            # a browser opened, and the user never finished (with none opened and nothing to
            # paste into, the call fails at once: tests/auth/test_consent_lifecycle.py)
            browser_consent(
                timeout=0.2, open_browser=lambda _u: True, out=io.StringIO(), paste=None
            ),
            subject="alice",
            save_pending=save,
            take_pending=store.take_pending,
        )
    assert info.value.provider == "demo"
    assert store.take_pending(saved[0].state, now=saved[0].created_at) is None
    assert fake.token_requests == 0


def test_prompt_consent(client: OAuthClient, fake: FakeAS) -> None:
    out = io.StringIO()
    seen: list[str] = []

    def fake_input(prompt: str) -> str:
        seen.append(prompt)
        url = out.getvalue().split("\n\n  ")[1].split("\n")[0]
        return "  " + approve(url, DEFAULT_REDIRECT_URI, code=CODE) + "\n"

    store = MemoryTokenStore()
    tokens = run_consent(
        client,
        prompt_consent(input=fake_input, out=out),
        subject="bob",
        save_pending=store.save_pending,
        take_pending=store.take_pending,
    )
    assert tokens.access_token == AT and seen == ["Paste the redirect URL: "]
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback" in out.getvalue()


def test_prompt_consent_asks_again_after_a_bad_paste(client: OAuthClient, fake: FakeAS) -> None:
    out = io.StringIO()
    url = ""

    def answers() -> Iterator[str]:
        yield "hunter2"  # a password pasted by mistake
        yield "http://127.0.0.1/callback?code=old&state=from-another-sign-in"
        yield approve(url, DEFAULT_REDIRECT_URI, code=CODE)

    given = answers()

    def fake_input(prompt: str) -> str:
        nonlocal url
        url = out.getvalue().split("\n\n  ")[1].split("\n")[0]
        return next(given)

    store = MemoryTokenStore()
    tokens = run_consent(
        client,
        prompt_consent(input=fake_input, out=out),
        subject="bob",
        save_pending=store.save_pending,
        take_pending=store.take_pending,
    )
    assert tokens.access_token == AT
    said = out.getvalue()
    assert "That is not a redirect URL" in said and "2 more tries" in said
    assert "another sign-in (its state does not match)" in said and "1 more try" in said
    assert "hunter2" not in said and "code=old" not in said  # a paste is never echoed


def test_prompt_consent_gives_up_after_a_few_bad_pastes() -> None:
    request = ConsentRequest("bob", "demo", "https://as.example/a?state=s", DEFAULT_REDIRECT_URI)
    asked: list[str] = []

    def bad(prompt: str) -> str:
        asked.append(prompt)
        return "not a url"

    out = io.StringIO()
    with pytest.raises(ConsentFailed) as info:
        prompt_consent(input=bad, out=out)(request)
    assert len(asked) == 3
    assert "that is not a redirect URL" in str(info.value) and "3 tries" in str(info.value)
    assert "not a url" not in str(info.value) + out.getvalue()


def test_prompt_consent_empty_answer_fails() -> None:
    request = ConsentRequest("bob", "demo", "https://as.example/a?state=s", DEFAULT_REDIRECT_URI)
    with pytest.raises(ConsentFailed):
        prompt_consent(input=lambda _p: "", out=io.StringIO())(request)

    def eof(_p: str) -> str:
        raise EOFError

    with pytest.raises(ConsentFailed):
        prompt_consent(input=eof, out=io.StringIO())(request)


def test_plain_callable_gets_default_redirect_uri(client: OAuthClient) -> None:
    requests: list[ConsentRequest] = []

    def cb(request: ConsentRequest) -> str:
        requests.append(request)
        return approve(request.authorization_url, request.redirect_uri, code=CODE)

    store = MemoryTokenStore()
    run_consent(
        client,
        cb,
        subject="carol",
        save_pending=store.save_pending,
        take_pending=store.take_pending,
    )
    assert requests[0].redirect_uri == DEFAULT_REDIRECT_URI
    assert (requests[0].user, requests[0].provider) == ("carol", "demo")


def test_raise_consent_then_complete_pending(client: OAuthClient, fake: FakeAS) -> None:
    store = MemoryTokenStore()
    clock = Clock()
    web = "https://app.example/oauth/callback"
    with pytest.raises(ConsentRequired) as info:
        run_consent(
            client,
            raise_consent(redirect_uri=web),
            subject="dave",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
            clock=clock,
            web_session="sess-1",
        )
    exc = info.value
    assert exc.authorization_url is not None and exc.state == state_of(exc.authorization_url)
    assert (exc.user, exc.provider) == ("dave", "demo")
    callback_url = f"{web}?{urlencode({'state': exc.state, 'code': CODE})}"
    # another web session cannot finish it (and the state is consumed)
    pending, tokens = complete_pending(
        client, callback_url, store.take_pending, web_session="sess-1", clock=clock
    )
    assert pending.subject == "dave" and tokens.access_token == AT
    with pytest.raises(ConsentFailed):
        complete_pending(client, callback_url, store.take_pending, clock=clock)
    assert fake.token_requests == 1


def test_complete_pending_wrong_session_or_unknown_state(client: OAuthClient, fake: FakeAS) -> None:
    store = MemoryTokenStore()
    _, pending = client.begin(subject="erin", redirect_uri=DEFAULT_REDIRECT_URI, web_session="s1")
    store.save_pending(pending)
    url = approve(f"x?state={pending.state}", DEFAULT_REDIRECT_URI, code=CODE)
    with pytest.raises(ConsentFailed, match="another session"):
        complete_pending(client, url, store.take_pending, web_session="s2", clock=Clock())
    with pytest.raises(ConsentFailed):
        complete_pending(client, f"{DEFAULT_REDIRECT_URI}?code=c", store.take_pending)
    assert fake.token_requests == 0
    # the wrong session did not use the transaction up: its own session finishes it, once
    taken, _ = complete_pending(client, url, store.take_pending, web_session="s1", clock=Clock())
    assert taken.subject == "erin" and fake.token_requests == 1
    with pytest.raises(ConsentFailed, match="unknown or already used"):
        complete_pending(client, url, store.take_pending, web_session="s1", clock=Clock())
    assert fake.token_requests == 1


def test_run_consent_refuses_replayed_state(client: OAuthClient, fake: FakeAS) -> None:
    """If the pending record is gone (used elsewhere), the code is not redeemed."""
    store = MemoryTokenStore()

    def cb(request: ConsentRequest) -> str:
        store.take_pending(state_of(request.authorization_url), now=0)  # someone else used it
        return approve(request.authorization_url, request.redirect_uri, code=CODE)

    with pytest.raises(ConsentFailed):
        run_consent(
            client,
            cb,
            subject="f",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
        )
    assert fake.token_requests == 0


def test_browser_listener_released_when_begin_fails(fake: FakeAS) -> None:
    s = OAuthSettings(
        name="demo",
        client_id="cli",
        issuer=ISSUER,
        authorization_endpoint=None,
        token_endpoint=None,
    )
    with httpx2.Client(transport=httpx2.MockTransport(lambda r: httpx2.Response(503))) as http:
        bad = OAuthClient(s, http)
        callback = browser_consent(timeout=5, open_browser=lambda _u: True, out=io.StringIO())
        store = MemoryTokenStore()
        with pytest.raises(Exception):  # noqa: B017  (ProviderUnavailable)
            run_consent(
                bad,
                callback,
                subject="g",
                save_pending=store.save_pending,
                take_pending=store.take_pending,
            )
    assert callback._listeners == {}


# ---------------------------------------------------------------- end to end on loopback


def walking_browser(username: str, password: str, *, approve: bool = True) -> Any:
    """An ``open_browser`` that walks login + consent, then lands on the redirect."""
    threads: list[threading.Thread] = []

    def open_browser(url: str) -> bool:
        def run() -> None:
            landed = walk_consent(url, username=username, password=password, approve=approve)
            get(landed)  # the browser follows the redirect to the loopback listener

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return True

    return open_browser


@pytest.fixture
def demo() -> Iterator[DemoAuthServer]:
    with DemoAuthServer(device_interval=1) as server:
        yield server


@pytest.fixture
def demo_client(demo: DemoAuthServer) -> Iterator[OAuthClient]:
    s = OAuthSettings(
        name="demo",
        client_id=DEFAULT_CLIENT_ID,
        issuer=demo.issuer,
        scopes=("incidents.read",),
        timeout=5,
    )
    with httpx2.Client() as http:
        yield OAuthClient(s, http)


def test_e2e_demo_browser_consent_refresh_revoke(
    demo: DemoAuthServer, demo_client: OAuthClient
) -> None:
    store = MemoryTokenStore()
    md = demo_client.metadata()
    assert md.authorization_response_iss_parameter_supported and md.issuer == demo.issuer
    callback = browser_consent(
        timeout=20, open_browser=walking_browser("alice", DEFAULT_USERS["alice"]), out=io.StringIO()
    )
    tokens = run_consent(
        demo_client,
        callback,
        subject="alice",
        save_pending=store.save_pending,
        take_pending=store.take_pending,
    )
    assert demo.validate_token(tokens.access_token) == "alice"
    assert tokens.refresh_token and tokens.expires_at is not None
    assert demo.stats.code_exchanges == 1
    refreshed = demo_client.refresh(tokens.refresh_token)
    assert demo.validate_token(refreshed.access_token) == "alice"
    assert refreshed.refresh_token and refreshed.refresh_token != tokens.refresh_token
    with pytest.raises(AuthError) as info:  # replay of the rotated RT: reuse detection
        demo_client.refresh(tokens.refresh_token)
    assert info.value.error_code == "invalid_grant"
    assert tokens.refresh_token not in str(info.value)


def test_e2e_demo_revoke(demo: DemoAuthServer, demo_client: OAuthClient) -> None:
    store = MemoryTokenStore()
    callback = browser_consent(
        timeout=20, open_browser=walking_browser("bob", DEFAULT_USERS["bob"]), out=io.StringIO()
    )
    tokens = run_consent(
        demo_client,
        callback,
        subject="bob",
        save_pending=store.save_pending,
        take_pending=store.take_pending,
    )
    assert tokens.refresh_token is not None
    assert demo_client.revoke(tokens.refresh_token) is True
    with pytest.raises(AuthError) as info:
        demo_client.refresh(tokens.refresh_token)
    assert info.value.error_code == "invalid_grant"


def test_e2e_demo_denied(demo: DemoAuthServer, demo_client: OAuthClient) -> None:
    store = MemoryTokenStore()
    callback = browser_consent(
        timeout=20,
        open_browser=walking_browser("alice", DEFAULT_USERS["alice"], approve=False),
        out=io.StringIO(),
    )
    with pytest.raises(ConsentDenied):
        run_consent(
            demo_client,
            callback,
            subject="alice",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
        )
    assert demo.stats.token_requests == 0


def test_e2e_demo_iss_tampered_and_state_swapped(
    demo: DemoAuthServer, demo_client: OAuthClient
) -> None:
    _, pending_a = demo_client.begin(subject="alice", redirect_uri="http://127.0.0.1:1/callback")
    url_b, pending_b = demo_client.begin(
        subject="alice", redirect_uri="http://127.0.0.1:1/callback"
    )
    landed = walk_consent(url_b, username="alice", password=DEFAULT_USERS["alice"])
    assert "iss=" in landed
    with pytest.raises(ConsentFailed):  # b's response cannot finish a's transaction
        demo_client.complete(pending_a, landed)
    tampered = landed.replace("iss=http", "iss=https")
    with pytest.raises(ConsentFailed):
        demo_client.complete(pending_b, tampered)
    without_iss = "&".join(p for p in landed.split("&") if not p.startswith("iss="))
    with pytest.raises(ConsentFailed):
        demo_client.complete(pending_b, without_iss)
    assert demo.stats.token_requests == 0
    assert demo_client.complete(pending_b, landed).access_token


def test_e2e_demo_device_grant(demo: DemoAuthServer, demo_client: OAuthClient) -> None:
    dev = demo_client.device_start()
    assert dev.verification_uri_complete is not None
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the user approves while we poll
            walk_consent(dev.verification_uri_complete or "", username="carol", password="carol")

    text = device_message(dev, provider="demo", user="carol")
    assert dev.user_code in text and dev.verification_uri in text and "never enter" in text
    assert dev.device_code not in text
    tokens = demo_client.device_poll(dev, sleep=sleep)
    assert demo.validate_token(tokens.access_token) == "carol"
    assert len(sleeps) == 2 and all(s >= dev.interval for s in sleeps)


def test_e2e_dot_browser_consent_refresh_revoke(dot: Any) -> None:
    s = OAuthSettings(
        name="dot",
        client_id=dot.client_id,
        issuer=dot.issuer,
        scopes=("incidents.read",),
        timeout=10,
    )
    with httpx2.Client() as http:
        client = OAuthClient(s, http)
        md = client.metadata()
        assert md.code_challenge_methods_supported and "S256" in md.code_challenge_methods_supported
        store = MemoryTokenStore()
        callback = browser_consent(
            timeout=30,
            open_browser=walking_browser("alice", dot.users["alice"]),
            out=io.StringIO(),
        )
        tokens = run_consent(
            client,
            callback,
            subject="alice",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
        )
        assert dot.introspection_validator()(tokens.access_token) == "alice"
        assert tokens.scope == "incidents.read" and tokens.refresh_token
        refreshed = client.refresh(tokens.refresh_token)
        assert dot.introspection_validator()(refreshed.access_token) == "alice"
        assert refreshed.refresh_token
        with pytest.raises(AuthError) as info:  # the old RT was rotated away
            client.refresh(tokens.refresh_token)
        assert info.value.error_code == "invalid_grant"


def test_e2e_dot_denied_and_revoke(dot: Any) -> None:
    s = OAuthSettings(name="dot", client_id=dot.client_id, issuer=dot.issuer, timeout=10)
    with httpx2.Client() as http:
        client = OAuthClient(s, http)
        store = MemoryTokenStore()
        denied = browser_consent(
            timeout=30,
            open_browser=walking_browser("bob", dot.users["bob"], approve=False),
            out=io.StringIO(),
        )
        with pytest.raises(ConsentDenied):
            run_consent(
                client,
                denied,
                subject="bob",
                save_pending=store.save_pending,
                take_pending=store.take_pending,
            )
        approved = browser_consent(
            timeout=30, open_browser=walking_browser("bob", dot.users["bob"]), out=io.StringIO()
        )
        tokens = run_consent(
            client,
            approved,
            subject="bob",
            save_pending=store.save_pending,
            take_pending=store.take_pending,
        )
        assert tokens.refresh_token
        assert client.revoke(tokens.refresh_token) is True
        with pytest.raises(AuthError) as info:
            client.refresh(tokens.refresh_token)
        assert info.value.error_code == "invalid_grant"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_a_pasted_redirect_url_stays_out_of_readline_history() -> None:
    """On a terminal, input() puts each line in readline's history (the shell saves it to
    ~/.sqlite_history): the pasted URL, which holds the code, is taken out again."""
    import pty
    import select as select_mod

    script = (
        "import readline\n"
        "from remotetables.auth.consent import ConsentRequest, PromptConsent\n"
        "readline.add_history('SELECT 1;')\n"
        "req = ConsentRequest('alice', 'demo', 'https://as.example/authorize?state=s', "
        "'http://127.0.0.1/callback')\n"
        "url = PromptConsent()(req)\n"
        "items = [readline.get_history_item(i + 1) for i in range(readline.get_current_history_length())]\n"
        "print('GOT', url.startswith('http://127.0.0.1/callback?code='), 'HISTORY', items)\n"
    )
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(sys.executable, [sys.executable, "-c", script])
    out = b""
    try:
        sent = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the child exits (EOF on the pty)
            ready, _, _ = select_mod.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child is gone
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"Paste the redirect URL" in out:
                os.write(fd, b"http://127.0.0.1/callback?code=c0de-XYZ&state=s\r")
                sent = True
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "GOT True HISTORY ['SELECT 1;']" in text, text
