"""Unit tests for remotetables.auth.account and the account parts of OAuthClient, against a
fake OpenID provider behind httpx2.MockTransport whose ID tokens joserfc signs.

Each way an ID token can be wrong (signature, iss, aud, azp, nonce, exp, iat, sub, alg) fails
the consent before anything could be stored, and revokes the tokens it came with.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from remotetables.auth.account import account_from_claims, check_account, nonce_for
from remotetables.auth.oauth import OAuthClient, OAuthSettings
from remotetables.errors import AccountMismatch, ConsentFailed
from tests.auth.test_oauth import AT, CODE, RT, Clock, FakeAS

ISSUER = "https://op.example"
REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture(scope="module")
def keys() -> tuple[RSAKey, RSAKey]:
    """The provider's signing key and someone else's, with the same key id."""
    return (
        RSAKey.generate_key(2048, parameters={"kid": "k1"}),
        RSAKey.generate_key(2048, parameters={"kid": "k1"}),
    )


class FakeOP(FakeAS):
    """An OpenID provider: metadata (RFC 8414 + jwks_uri), JWKS, token endpoint with an ID token."""

    def __init__(self, key: RSAKey, **metadata: Any) -> None:
        super().__init__(
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token",
                "revocation_endpoint": f"{ISSUER}/revoke",
                "jwks_uri": f"{ISSUER}/jwks",
                "code_challenge_methods_supported": ["S256"],
                **metadata,
            }
        )
        self.key = key
        self.jwks: list[dict[str, Any]] = [key.as_dict(private=False)]
        self.on("/jwks", lambda _r: httpx2.Response(200, json={"keys": self.jwks}))
        self.on("/revoke", lambda _r: httpx2.Response(200))

    def issue(self, id_token: str | None, **extra: Any) -> None:
        body: dict[str, Any] = {"access_token": AT, "token_type": "Bearer", "refresh_token": RT}
        body["expires_in"] = 3600
        if id_token is not None:
            body["id_token"] = id_token
        body.update(extra)
        self.on("/token", lambda _r: httpx2.Response(200, json=body))


def claims_for(
    user: str, *, nonce: str | None, now: float, client_id: str = "cli"
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": ISSUER,
        "aud": client_id,
        "sub": f"sub-{user}",
        "exp": int(now) + 300,
        "iat": int(now),
        "email": f"{user}@example.com",
        "email_verified": True,
        "preferred_username": user,
    }
    if nonce is not None:
        c["nonce"] = nonce
    return c


def sign(claims: dict[str, Any], key: Any, alg: str = "RS256", kid: str | None = "k1") -> str:
    header: dict[str, Any] = {"alg": alg}
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(header, claims, key, algorithms=[alg])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def http_for() -> Iterator[Callable[[FakeAS], httpx2.Client]]:
    clients: list[httpx2.Client] = []

    def make(fake: FakeAS) -> httpx2.Client:
        c = httpx2.Client(transport=httpx2.MockTransport(fake))
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def client_for(fake: FakeAS, http: httpx2.Client, clock: Clock, **kw: Any) -> OAuthClient:
    base: dict[str, Any] = {
        "name": "op",
        "client_id": "cli",
        "issuer": ISSUER,
        "scopes": ("openid",),
    }
    base.update(kw)
    return OAuthClient(OAuthSettings(**base), http, clock=clock)


def begin(client: OAuthClient, user: str = "alice", **kw: Any) -> tuple[dict[str, str], Any]:
    url, pending = client.begin(subject=user, redirect_uri=REDIRECT, **kw)
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}, pending


def callback(pending: Any) -> str:
    return f"{REDIRECT}?code={CODE}&state={pending.state}&iss={ISSUER}"


# ----------------------------------------------------------------------------- ID tokens


def test_a_valid_id_token_names_the_account(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(op, http_for(op), clock)
    params, pending = begin(client)
    assert params["nonce"] == nonce_for(pending.code_verifier)
    op.issue(sign(claims_for("alice", nonce=params["nonce"], now=clock.now), keys[0]))
    tokens = client.complete(pending, callback(pending))
    assert tokens.account is not None
    assert (tokens.account.name, tokens.account.source) == ("alice@example.com", "id_token")
    assert (tokens.account.subject, tokens.account.issuer) == ("sub-alice", ISSUER)
    assert not op.forms("/revoke")


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def _bad(name: str) -> Callable[[dict[str, Any], Any, Any], str]:
    """How to spoil an ID token: (claims, provider key, other key) -> token."""

    def spoil(c: dict[str, Any], key: Any, other: Any) -> str:
        if name == "signature":
            return sign(c, other)  # same kid, another key
        if name == "alg_hs256":
            return sign(c, OctKey.import_key(b"k" * 32), alg="HS256")
        if name == "alg_none":  # unsigned; built by hand (joserfc warns against writing one)
            return f"{_b64({'alg': 'none', 'kid': 'k1'})}.{_b64(c)}."
        if name == "kid_unknown":
            return sign(c, other, kid="k-nobody")
        bad = dict(c)
        if name == "iss":
            bad["iss"] = "https://evil.example"
        elif name == "aud":
            bad["aud"] = "another-client"
        elif name == "azp":
            bad["aud"], bad["azp"] = ["cli", "another-client"], "another-client"
        elif name == "nonce":
            bad["nonce"] = "replayed-nonce"
        elif name == "no_nonce":
            del bad["nonce"]
        elif name == "expired":
            bad["exp"] = c["iat"] - 600
        elif name == "no_iat":
            del bad["iat"]
        elif name == "no_sub":
            del bad["sub"]
        elif name == "not_a_jwt":
            return "not.a.jwt"
        return sign(bad, key)

    return spoil


BAD_ID_TOKENS = [
    "signature", "alg_hs256", "alg_none", "kid_unknown", "iss", "aud", "azp", "nonce",
    "no_nonce", "expired", "no_iat", "no_sub", "not_a_jwt",
]  # fmt: skip


@pytest.mark.parametrize("defect", BAD_ID_TOKENS)
def test_an_invalid_id_token_fails_the_consent_and_revokes(
    defect: str,
    keys: tuple[RSAKey, RSAKey],
    clock: Clock,
    http_for: Callable[[FakeAS], httpx2.Client],
) -> None:
    op = FakeOP(keys[0])
    client = client_for(op, http_for(op), clock)
    params, pending = begin(client)
    claims = claims_for("alice", nonce=params["nonce"], now=clock.now)
    token = _bad(defect)(claims, keys[0], keys[1])
    op.issue(token)
    with pytest.raises(ConsentFailed) as info:
        client.complete(pending, callback(pending))
    err = info.value
    assert err.error_code == "invalid_id_token" and err.user == "alice" and err.provider == "op"
    text = str(err)
    assert "not stored" in text
    for secret in (AT, RT, CODE, token, pending.code_verifier):
        assert secret not in text
    assert op.forms("/revoke"), "the tokens that came with it are revoked"


def test_keys_are_fetched_again_when_the_provider_rotates(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(op, http_for(op), clock)
    params, pending = begin(client)
    op.issue(sign(claims_for("alice", nonce=params["nonce"], now=clock.now), keys[0]))
    client.complete(pending, callback(pending))  # JWKS fetched and kept
    new_key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    op.jwks = [new_key.as_dict(private=False)]
    params, pending = begin(client)
    op.issue(sign(claims_for("alice", nonce=params["nonce"], now=clock.now), new_key, kid="k2"))
    tokens = client.complete(pending, callback(pending))
    assert tokens.account is not None and tokens.account.name == "alice@example.com"
    assert len([r for r in op.requests if r.url.path == "/jwks"]) == 2


def test_the_clock_decides_expiry(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(op, http_for(op), clock)
    params, pending = begin(client)
    token = sign(claims_for("alice", nonce=params["nonce"], now=clock.now), keys[0])
    op.issue(token)
    clock.now += 300 + 121  # past exp and the 120 s leeway, on the injected clock
    with pytest.raises(ConsentFailed, match="exp"):
        client.complete(pending, callback(pending))


# ----------------------------------------------------------------------------- the account check


def test_a_configured_account_refuses_another_one(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(op, http_for(op), clock, account="{user}@Example.com")
    params, pending = begin(client, "bob")
    op.issue(sign(claims_for("alice", nonce=params["nonce"], now=clock.now), keys[0]))
    with pytest.raises(AccountMismatch) as info:
        client.complete(pending, callback(pending))
    err = info.value
    assert (err.account, err.expected, err.user) == ("alice@example.com", "bob@Example.com", "bob")
    assert "sign out of op" in str(err) and "remotetables login op --user bob" in str(err)
    assert op.forms("/revoke")
    # the same account in another case is the same account
    params, pending = begin(client, "alice")
    op.issue(sign(claims_for("alice", nonce=params["nonce"], now=clock.now), keys[0]))
    assert client.complete(pending, callback(pending)).account is not None


def test_account_claim_picks_the_claim(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(
        op, http_for(op), clock, account="{user}", account_claim="preferred_username"
    )
    params, pending = begin(client, "alice")
    op.issue(sign(claims_for("alice", nonce=params["nonce"], now=clock.now), keys[0]))
    tokens = client.complete(pending, callback(pending))
    assert tokens.account is not None and tokens.account.name == "alice"


def test_no_account_known_with_account_configured_is_refused(
    clock: Clock, http_for: Callable[[FakeAS], httpx2.Client], keys: tuple[RSAKey, RSAKey]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(op, http_for(op), clock, scopes=("read",), account="{user}")
    _, pending = begin(client)
    op.issue(None)  # plain OAuth, no ID token, no userinfo, no introspection
    with pytest.raises(AccountMismatch, match="cannot tell which account"):
        client.complete(pending, callback(pending))


def test_userinfo_then_introspection_when_there_is_no_id_token(
    clock: Clock, http_for: Callable[[FakeAS], httpx2.Client], keys: tuple[RSAKey, RSAKey]
) -> None:
    op = FakeOP(
        keys[0],
        userinfo_endpoint=f"{ISSUER}/userinfo",
        introspection_endpoint=f"{ISSUER}/introspect",
    )
    seen: list[str | None] = []

    def userinfo(req: httpx2.Request) -> httpx2.Response:
        seen.append(req.headers.get("authorization"))
        return httpx2.Response(200, json={"sub": "s-1", "preferred_username": "alice"})

    op.on("/userinfo", userinfo)
    op.on("/introspect", lambda _r: httpx2.Response(200, json={"active": True, "username": "al"}))
    client = client_for(op, http_for(op), clock)
    _, pending = begin(client)
    op.issue(None, scope="openid")
    tokens = client.complete(pending, callback(pending))
    assert tokens.account is not None
    assert (tokens.account.name, tokens.account.source) == ("alice", "userinfo")
    assert seen == [f"Bearer {AT}"]
    # without openid: introspection of the client's own token
    client = client_for(op, http_for(op), clock, scopes=("read",))
    _, pending = begin(client)
    op.issue(None, scope="read")
    tokens = client.complete(pending, callback(pending))
    assert tokens.account is not None
    assert (tokens.account.name, tokens.account.source) == ("al", "introspection")
    assert op.forms("/introspect")[-1]["token"] == AT


def test_an_unverified_email_does_not_name_the_account() -> None:
    claims = {"sub": "s", "email": "boss@example.com", "email_verified": False, "username": "u"}
    found = account_from_claims(claims, source="userinfo", claim=None, issuer=None)
    assert found is not None and found.name == "u"
    check_account(found, expected=None, provider="p", user="u", claim=None)  # nothing to check


# ----------------------------------------------------------------------------- the request


@pytest.mark.parametrize(
    ("kw", "advertised", "extra", "expected"),
    [
        ({}, None, {}, None),
        ({"sign_in": True}, None, {}, "login"),
        ({"sign_in": True}, ["login", "select_account"], {}, "select_account"),
        ({"sign_in": True}, None, {"prompt": "consent"}, "login consent"),
        ({}, None, {"prompt": "consent"}, "consent"),
    ],
)
def test_prompt_in_the_authorization_request(
    kw: dict[str, Any],
    advertised: list[str] | None,
    extra: dict[str, str],
    expected: str | None,
    clock: Clock,
    http_for: Callable[[FakeAS], httpx2.Client],
    keys: tuple[RSAKey, RSAKey],
) -> None:
    meta = {} if advertised is None else {"prompt_values_supported": advertised}
    op = FakeOP(keys[0], **meta)
    client = client_for(op, http_for(op), clock, extra_authorize_params=extra)
    params, _ = begin(client, **kw)
    assert params.get("prompt") == expected


def test_prompt_always_login_hint_and_nonce_only_with_openid(
    clock: Clock, http_for: Callable[[FakeAS], httpx2.Client], keys: tuple[RSAKey, RSAKey]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(
        op, http_for(op), clock, prompt="always", login_hint="{user}@example.com", scopes=("read",)
    )
    params, _ = begin(client, "bob")
    assert params["prompt"] == "login" and params["login_hint"] == "bob@example.com"
    assert "nonce" not in params


def test_without_a_configured_issuer_an_id_token_is_not_trusted(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(
        op,
        http_for(op),
        clock,
        issuer=None,
        authorization_endpoint=f"{ISSUER}/authorize",
        token_endpoint=f"{ISSUER}/token",
    )
    params, pending = begin(client)
    op.issue(sign(claims_for("mallory", nonce=params["nonce"], now=clock.now), keys[1]))
    tokens = client.complete(pending, callback(pending))  # nothing to check iss against
    assert tokens.account is None
    assert not [r for r in op.requests if r.url.path == "/jwks"]


@pytest.mark.parametrize(("userinfo_sub", "ok"), [("sub-alice", True), ("sub-mallory", False)])
def test_userinfo_fills_a_claim_the_id_token_lacks_only_for_the_same_subject(
    userinfo_sub: str,
    ok: bool,
    keys: tuple[RSAKey, RSAKey],
    clock: Clock,
    http_for: Callable[[FakeAS], httpx2.Client],
) -> None:
    op = FakeOP(keys[0], userinfo_endpoint=f"{ISSUER}/userinfo")
    op.on(
        "/userinfo",
        lambda _r: httpx2.Response(200, json={"sub": userinfo_sub, "nickname": "ally"}),
    )
    client = client_for(op, http_for(op), clock, account_claim="nickname")
    params, pending = begin(client)
    claims = claims_for("alice", nonce=params["nonce"], now=clock.now)  # no nickname in it
    op.issue(sign(claims, keys[0]), scope="openid")
    if ok:
        tokens = client.complete(pending, callback(pending))
        assert tokens.account is not None
        assert (tokens.account.name, tokens.account.source) == ("ally", "userinfo")
    else:
        with pytest.raises(ConsentFailed, match="another subject"):
            client.complete(pending, callback(pending))
        assert op.forms("/revoke")


@pytest.mark.parametrize(
    ("signing_secret", "ok"), [("cs-right-0123456789", True), ("cs-wrong-0123456789", False)]
)
def test_a_confidential_client_accepts_hs256_with_its_own_secret_only(
    signing_secret: str,
    ok: bool,
    keys: tuple[RSAKey, RSAKey],
    clock: Clock,
    http_for: Callable[[FakeAS], httpx2.Client],
) -> None:
    op = FakeOP(keys[0])
    client = client_for(
        op,
        http_for(op),
        clock,
        client_secret="cs-right-0123456789",
        token_endpoint_auth_method="client_secret_basic",
    )
    params, pending = begin(client)
    claims = claims_for("alice", nonce=params["nonce"], now=clock.now)
    op.issue(sign(claims, OctKey.import_key(signing_secret.encode()), alg="HS256", kid=None))
    if ok:
        tokens = client.complete(pending, callback(pending))
        assert tokens.account is not None and tokens.account.name == "alice@example.com"
        assert not [r for r in op.requests if r.url.path == "/jwks"]  # no keys needed
    else:
        with pytest.raises(ConsentFailed, match="does not verify"):
            client.complete(pending, callback(pending))


def test_a_short_client_secret_is_no_signing_key(
    keys: tuple[RSAKey, RSAKey], clock: Clock, http_for: Callable[[FakeAS], httpx2.Client]
) -> None:
    op = FakeOP(keys[0])
    client = client_for(
        op,
        http_for(op),
        clock,
        client_secret="short",
        token_endpoint_auth_method="client_secret_post",
    )
    params, pending = begin(client)
    claims = claims_for("alice", nonce=params["nonce"], now=clock.now)
    op.issue(
        jwt.encode(
            {"alg": "HS256"},
            claims,
            OctKey.import_key(b"short-but-padded-to-16"),
            algorithms=["HS256"],
        )
    )
    with pytest.raises(ConsentFailed, match="unsupported_algorithm"):
        client.complete(pending, callback(pending))
