"""The embedded demo authorization server, driven over loopback HTTP with plain httpx2."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest

from remotetables.demo.authserver.server import (
    DEFAULT_CLIENT_ID,
    DEVICE_CODE_GRANT_TYPE,
    DemoAuthServer,
    DemoClient,
)
from tests.servers.walk import (
    ConsentWalkError,
    authorization_url,
    callback_params,
    new_verifier,
    parse_forms,
    s256,
    walk_consent,
)

REDIRECT = "http://127.0.0.1:49152/callback"
RS_ID, RS_SECRET = "resource-server", "rs-secret"
SVC_ID, SVC_SECRET = "batch-service", "svc-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _clients() -> list[DemoClient]:
    return [
        DemoClient(DEFAULT_CLIENT_ID, None, ["http://127.0.0.1/callback"], client_name="RT demo"),
        DemoClient(RS_ID, RS_SECRET, [], grant_types=["client_credentials"]),
        DemoClient(
            SVC_ID, SVC_SECRET, [], scopes="incidents.read", grant_types=["client_credentials"]
        ),
    ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def srv(clock: FakeClock) -> Iterator[DemoAuthServer]:
    with DemoAuthServer(clients=_clients(), clock=clock, device_interval=0) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10.0) as client:
        yield client


def _authorize(srv: DemoAuthServer, verifier: str | None, **kw: Any) -> str:
    return authorization_url(
        srv.issuer + "/authorize",
        client_id=kw.pop("client_id", DEFAULT_CLIENT_ID),
        redirect_uri=kw.pop("redirect_uri", REDIRECT),
        state=kw.pop("state", "state-123"),
        verifier=verifier,
        **kw,
    )


def _code(srv: DemoAuthServer, verifier: str, user: str = "alice") -> str:
    final = walk_consent(_authorize(srv, verifier), username=user, password=user)
    params = callback_params(final)
    assert params["state"] == "state-123"
    assert params["iss"] == srv.issuer
    return params["code"]


def _exchange(
    http: httpx2.Client, srv: DemoAuthServer, code: str, verifier: str
) -> httpx2.Response:
    return http.post(
        srv.issuer + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": DEFAULT_CLIENT_ID,
            "code_verifier": verifier,
        },
    )


def _tokens(http: httpx2.Client, srv: DemoAuthServer, user: str = "alice") -> dict[str, Any]:
    verifier = new_verifier()
    resp = _exchange(http, srv, _code(srv, verifier, user), verifier)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _refresh(http: httpx2.Client, srv: DemoAuthServer, rt: str) -> httpx2.Response:
    return http.post(
        srv.issuer + "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": DEFAULT_CLIENT_ID},
    )


def _introspect(http: httpx2.Client, srv: DemoAuthServer, token: str) -> dict[str, Any]:
    resp = http.post(srv.issuer + "/introspect", data={"token": token}, auth=(RS_ID, RS_SECRET))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# ---------------------------------------------------------------- PKCE and metadata


def test_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_metadata_issuer_and_capabilities(srv: DemoAuthServer, http: httpx2.Client) -> None:
    meta = http.get(srv.issuer + "/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == srv.issuer
    assert srv.issuer.startswith("http://127.0.0.1:")
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert DEVICE_CODE_GRANT_TYPE in meta["grant_types_supported"]
    for key in ("authorization", "token", "revocation", "introspection", "device_authorization"):
        assert meta[f"{key}_endpoint"].startswith(srv.issuer + "/")


# ---------------------------------------------------------------- authorization code


def test_code_exchange_with_pkce(srv: DemoAuthServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, srv, "bob")
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "incidents.read incidents.write"
    assert tokens["refresh_token"]
    assert srv.validate_token(tokens["access_token"]) == "bob"
    assert srv.validate_token("not-a-token") is None
    assert srv.validate_token(tokens["refresh_token"]) is None  # not an access token
    assert srv.stats.code_exchanges == 1


def test_wrong_verifier_is_invalid_grant(srv: DemoAuthServer, http: httpx2.Client) -> None:
    code = _code(srv, new_verifier())
    resp = _exchange(http, srv, code, new_verifier())
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_code_replay_is_refused_and_revokes_its_tokens(
    srv: DemoAuthServer, http: httpx2.Client
) -> None:
    verifier = new_verifier()
    code = _code(srv, verifier)
    first = _exchange(http, srv, code, verifier)
    assert first.status_code == 200
    second = _exchange(http, srv, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert srv.validate_token(first.json()["access_token"]) is None


@pytest.mark.parametrize(
    ("verifier", "method"),
    [(None, None), ("x" * 50, "plain"), ("x" * 50, None)],
    ids=["no-pkce", "plain", "method-missing"],
)
def test_authorization_without_s256_is_refused(
    srv: DemoAuthServer, http: httpx2.Client, verifier: str | None, method: str | None
) -> None:
    resp = http.get(_authorize(srv, verifier, method=method))
    assert resp.status_code == 302
    params = callback_params(resp.headers["location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == "state-123"
    assert params["iss"] == srv.issuer


def test_loopback_redirect_any_port_but_nothing_else(
    srv: DemoAuthServer, http: httpx2.Client
) -> None:
    ok = http.get(_authorize(srv, new_verifier(), redirect_uri="http://127.0.0.1:1234/callback"))
    assert ok.status_code == 302 and ok.headers["location"].startswith(srv.issuer + "/login?")
    for bad in (
        "http://127.0.0.1:1234/other",
        "http://localhost:1234/callback",
        "http://evil.example/callback",
        "https://127.0.0.1:1234/callback",
    ):
        resp = http.get(_authorize(srv, new_verifier(), redirect_uri=bad))
        assert resp.status_code == 400, bad  # an error page, never a redirect
        assert "location" not in resp.headers


def test_deny_redirects_with_access_denied(srv: DemoAuthServer) -> None:
    final = walk_consent(
        _authorize(srv, new_verifier()), username="alice", password="alice", approve=False
    )
    params = callback_params(final)
    assert final.startswith(REDIRECT)
    assert params["error"] == "access_denied"
    assert params["state"] == "state-123"
    assert params["iss"] == srv.issuer
    assert "code" not in params


def test_wrong_password_is_refused(srv: DemoAuthServer) -> None:
    with pytest.raises(ConsentWalkError):
        walk_consent(_authorize(srv, new_verifier()), username="alice", password="bob")


def test_login_post_without_csrf_token_is_refused(srv: DemoAuthServer, http: httpx2.Client) -> None:
    page = http.get(srv.issuer + "/login?next=/authorize")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "csrf_token" in [name for name, _ in parse_forms(page.text)[0].fields]
    data = {"username": "alice", "password": "alice", "next": "/"}
    assert http.post(srv.issuer + "/login", data=data).status_code == 403
    forged = {**data, "csrf_token": dict(parse_forms(page.text)[0].fields)["csrf_token"]}
    cross = http.post(srv.issuer + "/login", data=forged, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403


def test_auto_approve_user_skips_the_forms(clock: FakeClock, http: httpx2.Client) -> None:
    with DemoAuthServer(auto_approve_user="carol", clock=clock) as srv:
        verifier = new_verifier()
        resp = http.get(_authorize(srv, verifier))
        assert resp.status_code == 302
        params = callback_params(resp.headers["location"])
        tokens = _exchange(http, srv, params["code"], verifier).json()
        assert srv.validate_token(tokens["access_token"]) == "carol"


# ---------------------------------------------------------------- refresh


def test_refresh_rotates(srv: DemoAuthServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, srv)
    resp = _refresh(http, srv, tokens["refresh_token"])
    assert resp.status_code == 200, resp.text
    new = resp.json()
    assert new["refresh_token"] not in (None, tokens["refresh_token"])
    assert srv.validate_token(new["access_token"]) == "alice"
    again = _refresh(http, srv, new["refresh_token"])
    assert again.status_code == 200
    assert srv.stats.refreshes == 2


def test_refresh_token_reuse_revokes_the_family(srv: DemoAuthServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, srv)
    other = _tokens(http, srv, "bob")
    new = _refresh(http, srv, tokens["refresh_token"]).json()
    replay = _refresh(http, srv, tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert srv.stats.refresh_reuse_detected == 1
    assert srv.validate_token(new["access_token"]) is None
    assert srv.validate_token(tokens["access_token"]) is None
    assert _refresh(http, srv, new["refresh_token"]).json()["error"] == "invalid_grant"
    assert srv.validate_token(other["access_token"]) == "bob"  # other grants untouched


def test_without_rotation_the_refresh_token_stays(clock: FakeClock, http: httpx2.Client) -> None:
    with DemoAuthServer(rotate_refresh_tokens=False, clock=clock) as srv:
        tokens = _tokens(http, srv)
        for _ in range(2):
            resp = _refresh(http, srv, tokens["refresh_token"])
            assert resp.status_code == 200
            assert "refresh_token" not in resp.json()
            assert srv.validate_token(resp.json()["access_token"]) == "alice"


def test_tokens_expire_with_the_injected_clock(clock: FakeClock, http: httpx2.Client) -> None:
    with DemoAuthServer(access_token_ttl=60, refresh_token_ttl=600, clock=clock) as srv:
        tokens = _tokens(http, srv)
        clock.now += 59
        assert srv.validate_token(tokens["access_token"]) == "alice"
        clock.now += 1
        assert srv.validate_token(tokens["access_token"]) is None
        new = _refresh(http, srv, tokens["refresh_token"]).json()
        assert srv.validate_token(new["access_token"]) == "alice"
        clock.now += 600
        assert _refresh(http, srv, new["refresh_token"]).json()["error"] == "invalid_grant"


def test_expire_access_tokens_keeps_refresh(srv: DemoAuthServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, srv)
    srv.expire_access_tokens()
    assert srv.validate_token(tokens["access_token"]) is None
    assert _introspect(http, srv, tokens["access_token"]) == {"active": False}
    assert _refresh(http, srv, tokens["refresh_token"]).status_code == 200


def test_revoke_all_for_user(srv: DemoAuthServer, http: httpx2.Client) -> None:
    alice, bob = _tokens(http, srv), _tokens(http, srv, "bob")
    assert srv.revoke_all_for("alice") == 1
    assert srv.validate_token(alice["access_token"]) is None
    assert _refresh(http, srv, alice["refresh_token"]).json()["error"] == "invalid_grant"
    assert srv.validate_token(bob["access_token"]) == "bob"


# ---------------------------------------------------------------- revocation, introspection


def test_revoking_the_refresh_token_revokes_the_grant(
    srv: DemoAuthServer, http: httpx2.Client
) -> None:
    tokens = _tokens(http, srv)
    data = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    resp = http.post(srv.issuer + "/revoke", data={**data, "client_id": DEFAULT_CLIENT_ID})
    assert resp.status_code == 200
    assert srv.validate_token(tokens["access_token"]) is None
    assert _refresh(http, srv, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert srv.stats.revocations == 1
    unknown = {"token": "no-such-token", "client_id": DEFAULT_CLIENT_ID}
    assert http.post(srv.issuer + "/revoke", data=unknown).status_code == 200


def test_revoking_the_access_token_only(srv: DemoAuthServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, srv)
    data = {"token": tokens["access_token"], "client_id": DEFAULT_CLIENT_ID}
    assert http.post(srv.issuer + "/revoke", data=data).status_code == 200
    assert srv.validate_token(tokens["access_token"]) is None
    assert _refresh(http, srv, tokens["refresh_token"]).status_code == 200


def test_introspection(srv: DemoAuthServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, srv)
    body = _introspect(http, srv, tokens["access_token"])
    assert body["active"] is True
    assert body["username"] == "alice"
    assert body["client_id"] == DEFAULT_CLIENT_ID
    assert body["iss"] == srv.issuer
    assert _introspect(http, srv, tokens["refresh_token"])["active"] is True
    own = http.post(
        srv.issuer + "/introspect",
        data={"token": tokens["access_token"], "client_id": DEFAULT_CLIENT_ID},
    )
    assert own.json()["active"] is True  # a public client may look at its own tokens
    assert _introspect(http, srv, "garbage") == {"active": False}
    unauth = http.post(srv.issuer + "/introspect", data={"token": tokens["access_token"]})
    assert unauth.status_code in (400, 401)
    assert srv.stats.introspections == 5  # every request counts


# ---------------------------------------------------------------- other grants


def test_client_credentials(srv: DemoAuthServer, http: httpx2.Client) -> None:
    resp = http.post(
        srv.issuer + "/token", data={"grant_type": "client_credentials"}, auth=(SVC_ID, SVC_SECRET)
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "refresh_token" not in body
    assert body["scope"] == "incidents.read"
    assert srv.validate_token(body["access_token"]) == SVC_ID
    bad = http.post(
        srv.issuer + "/token", data={"grant_type": "client_credentials"}, auth=(SVC_ID, "x")
    )
    assert bad.status_code == 401
    public = http.post(
        srv.issuer + "/token",
        data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID},
    )
    assert public.status_code in (400, 401)


def test_device_grant(srv: DemoAuthServer, http: httpx2.Client) -> None:
    start = http.post(srv.issuer + "/device_authorization", data={"client_id": DEFAULT_CLIENT_ID})
    assert start.status_code == 200, start.text
    dev = start.json()
    assert dev["verification_uri"] == srv.issuer + "/device"
    poll = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "device_code": dev["device_code"],
        "client_id": DEFAULT_CLIENT_ID,
    }
    assert http.post(srv.issuer + "/token", data=poll).json()["error"] == "authorization_pending"
    page_url = walk_consent(dev["verification_uri_complete"], username="carol", password="carol")
    assert page_url.startswith(srv.issuer + "/device")
    tokens = http.post(srv.issuer + "/token", data=poll).json()
    assert srv.validate_token(tokens["access_token"]) == "carol"
    assert http.post(srv.issuer + "/token", data=poll).status_code == 400  # used once


def test_device_grant_denied(srv: DemoAuthServer, http: httpx2.Client) -> None:
    dev = http.post(
        srv.issuer + "/device_authorization", data={"client_id": DEFAULT_CLIENT_ID}
    ).json()
    walk_consent(dev["verification_uri_complete"], username="bob", password="bob", approve=False)
    poll = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "device_code": dev["device_code"],
        "client_id": DEFAULT_CLIENT_ID,
    }
    assert http.post(srv.issuer + "/token", data=poll).json()["error"] == "access_denied"


# ---------------------------------------------------------------- hygiene


def test_reprs_hide_secrets(srv: DemoAuthServer, http: httpx2.Client) -> None:
    client = DemoClient("c", "super-secret-value", [])
    assert "super-secret-value" not in repr(client)
    tokens = _tokens(http, srv)
    for obj in (srv, srv.stats):
        assert tokens["access_token"] not in repr(obj)
        assert tokens["refresh_token"] not in repr(obj)


def test_two_servers_do_not_share_sessions(clock: FakeClock) -> None:
    with (
        DemoAuthServer(clock=clock) as a,
        DemoAuthServer(clock=clock) as b,
        httpx2.Client(follow_redirects=False, timeout=10.0) as shared,
    ):
        final = walk_consent(
            _authorize(a, new_verifier()), username="alice", password="alice", client=shared
        )
        assert "code" in callback_params(final)
        resp = shared.get(_authorize(b, new_verifier()))
        assert resp.headers["location"].startswith(b.issuer + "/login?")  # not signed in at b


def test_parallel_refreshes_of_one_token_have_one_winner(
    srv: DemoAuthServer, http: httpx2.Client
) -> None:
    tokens = _tokens(http, srv)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(
            pool.map(lambda _: _refresh(http, srv, tokens["refresh_token"]).status_code, range(8))
        )
    assert sorted(codes) == [200] + [400] * 7
    assert srv.stats.refresh_reuse_detected == 7


def test_consent_page_names_client_user_and_scopes(srv: DemoAuthServer) -> None:
    with httpx2.Client(timeout=10.0) as browser:
        login = browser.get(browser.get(_authorize(srv, new_verifier())).headers["location"])
        form = parse_forms(login.text)[0]
        data = {**dict(form.fields), "username": "alice", "password": "alice"}
        back = browser.post(srv.issuer + "/login", data=data)
        page = browser.get(back.headers["location"])
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in page.text and "http" not in page.text.split("<form")[0]
    for text in ("RT demo", "alice", "incidents.read", "incidents.write", "Allow", "Deny"):
        assert text in page.text
    # the application asking, by name and client id, and what each permission allows
    assert "<h1>Allow RT demo to use your account?</h1>" in page.text
    assert (
        "The application <strong>RT demo</strong> (client id <code>remotetables-demo</code>) "
        "asks to act as you" in page.text
    )
    assert "<li>Read the incidents assigned to you <code>incidents.read</code></li>" in page.text
    assert "<li>Create, change and delete the incidents assigned to you <code>incidents.write" in (
        page.text
    )
    # the login page hinted the demo users (every password is the user name)
    assert "Demo users: alice, bob and carol; each password is the user name." in login.text


def test_an_unknown_scope_is_shown_by_its_code_and_real_passwords_are_never_hinted() -> None:
    from remotetables.demo.authserver.pages import consent_page

    page = consent_page(
        action="/authorize", client_name="x", user="u", scopes=["weird.scope"], csrf_token="t"
    )
    assert "<li><code>weird.scope</code></li>" in page
    with DemoAuthServer(users={"alice": "s3cret-pass"}) as server, httpx2.Client() as browser:
        login = browser.get(server.issuer + "/login")
        assert server.sign_in_hint is None
    assert login.status_code == 200 and "Demo users" not in login.text
    assert "s3cret" not in login.text
