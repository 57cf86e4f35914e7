"""django-oauth-toolkit as a third-party authorization server: the same protocol checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.servers.dot_server import DotServer
from tests.servers.walk import authorization_url, callback_params, new_verifier, walk_consent

REDIRECT = "http://127.0.0.1:49153/callback"


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10.0) as client:
        yield client


def _authorize(dot: DotServer, verifier: str | None, method: str | None = "S256") -> str:
    return authorization_url(
        dot.issuer + "/authorize/",
        client_id=dot.client_id,
        redirect_uri=REDIRECT,
        state="dot-state",
        verifier=verifier,
        method=method,
        scope="incidents.read",
    )


def _token(http: httpx2.Client, dot: DotServer, **data: str) -> httpx2.Response:
    return http.post(dot.issuer + "/token/", data={"client_id": dot.client_id, **data})


def _tokens(http: httpx2.Client, dot: DotServer, user: str = "alice") -> dict[str, Any]:
    verifier = new_verifier()
    final = walk_consent(_authorize(dot, verifier), username=user, password=dot.users[user])
    params = callback_params(final)
    assert final.startswith(REDIRECT)
    assert params["state"] == "dot-state"
    assert params["iss"] == dot.issuer
    resp = _token(
        http,
        dot,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _refresh(http: httpx2.Client, dot: DotServer, rt: str) -> httpx2.Response:
    return _token(http, dot, grant_type="refresh_token", refresh_token=rt)


def test_metadata_issuer(dot: DotServer, http: httpx2.Client) -> None:
    meta = http.get(dot.metadata_url).json()
    assert meta["issuer"] == dot.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["token_endpoint"] == dot.issuer + "/token/"


def test_code_exchange_and_introspection(dot: DotServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, dot, "bob")
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert tokens["scope"] == "incidents.read"
    validate = dot.introspection_validator()
    assert validate(tokens["access_token"]) == "bob"
    assert validate("not-a-token") is None


def test_wrong_verifier_is_invalid_grant(dot: DotServer, http: httpx2.Client) -> None:
    final = walk_consent(_authorize(dot, new_verifier()), username="alice", password="alice-pw")
    resp = _token(
        http,
        dot,
        grant_type="authorization_code",
        code=callback_params(final)["code"],
        redirect_uri=REDIRECT,
        code_verifier=new_verifier(),
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_plain_pkce_is_refused(dot: DotServer) -> None:
    final = walk_consent(
        _authorize(dot, "x" * 50, method="plain"), username="alice", password="alice-pw"
    )
    params = callback_params(final)
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_refresh_rotates(dot: DotServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, dot)
    resp = _refresh(http, dot, tokens["refresh_token"])
    assert resp.status_code == 200, resp.text
    new = resp.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert dot.introspection_validator()(new["access_token"]) == "alice"


def test_refresh_token_reuse_revokes_the_family(dot: DotServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, dot)
    new = _refresh(http, dot, tokens["refresh_token"]).json()
    replay = _refresh(http, dot, tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert dot.introspection_validator()(new["access_token"]) is None
    assert _refresh(http, dot, new["refresh_token"]).json()["error"] == "invalid_grant"


def test_revocation(dot: DotServer, http: httpx2.Client) -> None:
    tokens = _tokens(http, dot)
    validate = dot.introspection_validator()
    assert validate(tokens["access_token"]) == "alice"
    resp = http.post(
        dot.issuer + "/revoke_token/",
        data={"token": tokens["access_token"], "client_id": dot.client_id},
    )
    assert resp.status_code == 200
    assert validate(tokens["access_token"]) is None
    before = dot.stats.revocations
    unknown = {"token": "no-such-token", "client_id": dot.client_id}
    assert http.post(dot.issuer + "/revoke_token/", data=unknown).status_code == 200
    assert dot.stats.revocations == before + 1


def test_deny_redirects_with_access_denied(dot: DotServer) -> None:
    final = walk_consent(
        _authorize(dot, new_verifier()), username="carol", password="carol-pw", approve=False
    )
    params = callback_params(final)
    assert final.startswith(REDIRECT)
    assert params["error"] == "access_denied"
    assert params["state"] == "dot-state"
    assert "code" not in params


def test_one_dot_server_per_process(dot: DotServer) -> None:
    with pytest.raises(RuntimeError, match="one DotServer"):
        DotServer().start()
