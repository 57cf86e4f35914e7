"""Unit tests for remotetables.auth.oauth against a fake AS behind httpx2.MockTransport."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx2
import pytest

from remotetables.auth.oauth import (
    DEVICE_CODE_GRANT,
    DeviceAuthorization,
    OAuthClient,
    OAuthSettings,
    is_loopback_host,
    s256_challenge,
)
from remotetables.errors import (
    AuthError,
    ConfigError,
    ConsentDenied,
    ConsentFailed,
    ProviderError,
    ProviderUnavailable,
)

ISSUER = "https://as.example"
RT = "rt-SECRET-refresh-0123456789"
AT = "at-SECRET-access-0123456789"
CODE = "code-SECRET-0123456789"
CLIENT_SECRET = "cs-SECRET-0123456789"
REDIRECT = "http://127.0.0.1:8765/callback"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Reply = Callable[[httpx2.Request], httpx2.Response]


class FakeAS:
    """Routes by path; records every request; each route is a reply function or a queue."""

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self.requests: list[httpx2.Request] = []
        self.routes: dict[str, list[Reply]] = {}
        self.metadata = metadata

    def on(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if (
            path.startswith("/.well-known/")
            and self.metadata is not None
            and path not in self.routes
        ):
            if path == "/.well-known/oauth-authorization-server":
                return httpx2.Response(200, json=self.metadata)
            return httpx2.Response(404)
        replies = self.routes.get(path)
        if not replies:
            return httpx2.Response(404, text="no route")
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request)

    def forms(self, path: str) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.content.decode())) for r in self.requests if r.url.path == path]


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return lambda _req: httpx2.Response(status, json=body, headers=headers)


def token_ok(**extra: Any) -> Reply:
    body = {"access_token": AT, "token_type": "Bearer", "expires_in": 3600, "refresh_token": RT}
    body.update(extra)
    return json_reply(200, {k: v for k, v in body.items() if v is not None})


def settings(**kw: Any) -> OAuthSettings:
    base: dict[str, Any] = {
        "name": "demo",
        "client_id": "cli",
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "device_authorization_endpoint": f"{ISSUER}/device",
        "scopes": ("read", "write"),
    }
    base.update(kw)
    return OAuthSettings(**base)


@pytest.fixture
def fake() -> FakeAS:
    return FakeAS()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def http(fake: FakeAS) -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as client:
        yield client


def make(http: httpx2.Client, clock: Clock, **kw: Any) -> OAuthClient:
    return OAuthClient(settings(**kw), http, clock=clock)


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    texts = [str(exc), repr(exc), str(exc.__cause__), repr(exc.__cause__)]
    for secret in (RT, AT, CODE, CLIENT_SECRET, *secrets):
        for text in texts:
            assert secret not in text


# ---------------------------------------------------------------- PKCE, state


def test_pkce_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_begin_builds_authorization_url(http: httpx2.Client, clock: Clock) -> None:
    client = make(
        http,
        clock,
        authorization_endpoint=f"{ISSUER}/authorize?tenant=t1",
        extra_authorize_params={"prompt": "consent"},
    )
    url, pending = client.begin(subject="alice", redirect_uri=REDIRECT, ttl=60, web_session="w1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "as.example", "/authorize")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["response_type"] == "code"
    assert q["client_id"] == "cli"
    assert q["redirect_uri"] == REDIRECT
    assert q["scope"] == "read write"
    assert q["state"] == pending.state
    assert q["code_challenge_method"] == "S256"
    assert q["tenant"] == "t1"
    assert q["prompt"] == "consent"
    digest = hashlib.sha256(pending.code_verifier.encode("ascii")).digest()
    assert q["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pending.code_verifier not in url
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", pending.code_verifier)
    assert len(pending.state) >= 22  # >= 128 bits in base64url
    assert (pending.subject, pending.provider, pending.client_id) == ("alice", "demo", "cli")
    assert (pending.redirect_uri, pending.issuer, pending.web_session) == (REDIRECT, ISSUER, "w1")
    assert (pending.created_at, pending.expires_at) == (clock.now, clock.now + 60)


def test_state_and_verifier_are_fresh_per_transaction(http: httpx2.Client, clock: Clock) -> None:
    client = make(http, clock)
    pendings = [client.begin(subject="alice", redirect_uri=REDIRECT)[1] for _ in range(50)]
    assert len({p.state for p in pendings}) == 50
    assert len({p.code_verifier for p in pendings}) == 50


@pytest.mark.parametrize("param", ["state", "code_challenge", "redirect_uri", "response_type"])
def test_extra_params_cannot_override_protocol_params(param: str) -> None:
    with pytest.raises(ConfigError):
        OAuthClient(settings(extra_authorize_params={param: "x"}), httpx2.Client())


# ---------------------------------------------------------------- transport security


@pytest.mark.parametrize(
    "field",
    ["issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint"],
)
def test_http_to_non_loopback_is_refused(field: str) -> None:
    with pytest.raises(ConfigError):
        OAuthClient(settings(**{field: "http://as.example/x"}), httpx2.Client())


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "[::1]", "localhost"])
def test_http_to_loopback_is_allowed(host: str) -> None:
    OAuthClient(settings(issuer=f"http://{host}:9000", token_endpoint=f"http://{host}/t"), None)  # type: ignore[arg-type]


def test_is_loopback_host() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert not is_loopback_host("10.0.0.1") and not is_loopback_host("localhost.evil.example")


def test_redirect_uri_must_be_https_or_loopback(http: httpx2.Client, clock: Clock) -> None:
    with pytest.raises(ConfigError):
        make(http, clock).begin(subject="a", redirect_uri="http://app.example/callback")


# ---------------------------------------------------------------- discovery


def discovery_settings(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "authorization_endpoint": None,
        "token_endpoint": None,
        "revocation_endpoint": None,
        "device_authorization_endpoint": None,
    }
    base.update(kw)
    return base


def good_metadata(issuer: str = ISSUER, **kw: Any) -> dict[str, Any]:
    md = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }
    md.update(kw)
    return md


def test_discovery_inserts_path_after_host_and_caches(clock: Clock) -> None:
    issuer = "https://as.example/tenant1"
    fake = FakeAS()
    fake.on(
        "/.well-known/oauth-authorization-server/tenant1", json_reply(200, good_metadata(issuer))
    )
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as http:
        client = OAuthClient(settings(issuer=issuer, **discovery_settings()), http, clock=clock)
        md = client.metadata()
        client.metadata()
    assert md.token_endpoint == f"{issuer}/token"
    assert md.authorization_response_iss_parameter_supported
    assert [r.url.path for r in fake.requests] == [
        "/.well-known/oauth-authorization-server/tenant1"
    ]


def test_discovery_falls_back_to_openid_configuration(clock: Clock) -> None:
    fake = FakeAS()
    fake.on("/.well-known/openid-configuration", json_reply(200, good_metadata()))
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as http:
        md = OAuthClient(settings(**discovery_settings()), http, clock=clock).metadata()
    assert md.authorization_endpoint == f"{ISSUER}/authorize"
    assert len(fake.requests) == 2


def test_configured_endpoints_win_over_discovered(clock: Clock) -> None:
    fake = FakeAS(metadata=good_metadata())
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as http:
        md = OAuthClient(
            settings(**discovery_settings(token_endpoint=f"{ISSUER}/mytoken")), http, clock=clock
        ).metadata()
    assert md.token_endpoint == f"{ISSUER}/mytoken"
    assert md.authorization_endpoint == f"{ISSUER}/authorize"


@pytest.mark.parametrize(
    "metadata",
    [
        good_metadata(issuer="https://evil.example"),
        good_metadata(issuer=ISSUER + "/"),
        good_metadata(code_challenge_methods_supported=["plain"]),
        good_metadata(token_endpoint="http://as.example/token"),
        good_metadata(token_endpoint=None),
    ],
    ids=["other-issuer", "trailing-slash", "no-S256", "http-endpoint", "no-token-endpoint"],
)
def test_discovery_refuses_bad_metadata(metadata: dict[str, Any], clock: Clock) -> None:
    fake = FakeAS(metadata={k: v for k, v in metadata.items() if v is not None})
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as http:
        client = OAuthClient(settings(**discovery_settings()), http, clock=clock)
        with pytest.raises(ProviderError):
            client.begin(subject="alice", redirect_uri=REDIRECT)
    assert all(r.url.path.startswith("/.well-known/") for r in fake.requests)


def test_discovery_outage_is_provider_unavailable(clock: Clock) -> None:
    fake = FakeAS()
    fake.on("/.well-known/oauth-authorization-server", json_reply(503, {}))
    with httpx2.Client(transport=httpx2.MockTransport(fake)) as http:
        client = OAuthClient(settings(**discovery_settings()), http, clock=clock)
        with pytest.raises(ProviderUnavailable):
            client.metadata()


# ---------------------------------------------------------------- complete()


def callback(pending_state: str, **params: str) -> str:
    from urllib.parse import urlencode

    return f"{REDIRECT}?{urlencode({'state': pending_state, **params})}"


def test_complete_exchanges_code_with_verifier_and_same_redirect_uri(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", token_ok(scope="read"))
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    clock.now += 5
    tokens = client.complete(pending, callback(pending.state, code=CODE, iss=ISSUER))
    assert (tokens.access_token, tokens.refresh_token, tokens.scope) == (AT, RT, "read")
    assert tokens.expires_at == clock.now + 3600
    (form,) = fake.forms("/token")
    assert form == {
        "grant_type": "authorization_code",
        "code": CODE,
        "redirect_uri": REDIRECT,
        "code_verifier": pending.code_verifier,
        "client_id": "cli",
    }
    assert "authorization" not in fake.requests[0].headers


def test_complete_scope_defaults_to_requested(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", token_ok(expires_in=None))
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    tokens = client.complete(pending, callback(pending.state, code=CODE))
    assert tokens.scope == "read write" and tokens.expires_at is None


@pytest.mark.parametrize(
    "bad",
    [
        {"state": "wrong"},
        {"state": ""},
        {},
    ],
    ids=["mismatch", "empty", "missing"],
)
def test_state_mismatch_fails_without_token_request(
    bad: dict[str, str], fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", token_ok())
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    from urllib.parse import urlencode

    with pytest.raises(ConsentFailed) as info:
        client.complete(pending, f"{REDIRECT}?{urlencode({'code': CODE, **bad})}")
    assert fake.requests == []
    assert_no_secret(info.value, pending.code_verifier)


def test_repeated_state_parameter_is_rejected(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    with pytest.raises(ConsentFailed):
        client.complete(pending, callback(pending.state, code=CODE) + "&state=x")
    assert fake.requests == []


def test_access_denied_raises_consent_denied_without_token_request(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", token_ok())
    client = make(
        http, clock, token_endpoint_auth_method="client_secret_basic", client_secret=CLIENT_SECRET
    )
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    url = callback(pending.state, error="access_denied", error_description="User said no")
    with pytest.raises(ConsentDenied) as info:
        client.complete(pending, url)
    assert info.value.error_code == "access_denied" and info.value.provider == "demo"
    assert "User said no" in str(info.value)
    assert fake.requests == []  # in particular no client_credentials grant


def test_other_error_callback_raises_consent_failed_with_code(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    url = callback(pending.state, error="invalid_scope", error_description="bad\nscope")
    with pytest.raises(ConsentFailed) as info:
        client.complete(pending, url)
    assert info.value.error_code == "invalid_scope"
    assert "bad scope" in str(info.value)
    assert fake.requests == []


def iss_client(clock: Clock) -> tuple[FakeAS, OAuthClient]:
    fake = FakeAS(metadata=good_metadata())
    fake.on("/token", token_ok())
    http = httpx2.Client(transport=httpx2.MockTransport(fake))
    return fake, OAuthClient(settings(**discovery_settings()), http, clock=clock)


@pytest.mark.parametrize(
    "iss", ["https://evil.example", None], ids=["mismatch", "missing-but-advertised"]
)
def test_iss_is_checked(iss: str | None, clock: Clock) -> None:
    fake, client = iss_client(clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    params = {"code": CODE} | ({"iss": iss} if iss else {})
    with pytest.raises(ConsentFailed):
        client.complete(pending, callback(pending.state, **params))
    assert fake.forms("/token") == []


def test_iss_match_succeeds(clock: Clock) -> None:
    fake, client = iss_client(clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    assert (
        client.complete(pending, callback(pending.state, code=CODE, iss=ISSUER)).access_token == AT
    )
    assert len(fake.forms("/token")) == 1


def test_iss_mismatch_on_configured_issuer_even_without_advertising(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    with pytest.raises(ConsentFailed):
        client.complete(pending, callback(pending.state, code=CODE, iss="https://evil.example"))
    assert fake.requests == []


def test_expired_or_foreign_pending_is_refused(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT, ttl=10)
    clock.now += 11
    with pytest.raises(ConsentFailed):
        client.complete(pending, callback(pending.state, code=CODE))
    other = OAuthClient(settings(name="other"), http, clock=clock)
    _, pending2 = client.begin(subject="alice", redirect_uri=REDIRECT)
    with pytest.raises(ConsentFailed):
        other.complete(pending2, callback(pending2.state, code=CODE))
    assert fake.requests == []


@pytest.mark.parametrize(
    ("reply", "exc_type", "code"),
    [
        (json_reply(400, {"error": "invalid_grant"}), ConsentFailed, "invalid_grant"),
        (json_reply(401, {"error": "invalid_client"}), ProviderError, "invalid_client"),
        (json_reply(502, {}), ProviderUnavailable, None),
    ],
)
def test_code_exchange_errors(
    reply: Reply,
    exc_type: type[Exception],
    code: str | None,
    fake: FakeAS,
    http: httpx2.Client,
    clock: Clock,
) -> None:
    fake.on("/token", reply)
    client = make(http, clock)
    _, pending = client.begin(subject="alice", redirect_uri=REDIRECT)
    with pytest.raises(exc_type) as info:
        client.complete(pending, callback(pending.state, code=CODE))
    assert getattr(info.value, "error_code", None) == code
    assert len(fake.requests) == 1  # the code is never re-sent
    assert_no_secret(info.value, pending.code_verifier)


# ---------------------------------------------------------------- client authentication


def test_client_secret_basic(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", token_ok())
    client = make(
        http,
        clock,
        client_id="my app",
        client_secret="p@ss:w/rd",
        token_endpoint_auth_method="client_secret_basic",
    )
    client.refresh(RT)
    auth = fake.requests[0].headers["authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == "my%20app:p%40ss%3Aw%2Frd"
    assert "client_secret" not in fake.forms("/token")[0]


def test_client_secret_post(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", token_ok())
    client = make(
        http, clock, client_secret=CLIENT_SECRET, token_endpoint_auth_method="client_secret_post"
    )
    client.refresh(RT)
    form = fake.forms("/token")[0]
    assert (form["client_id"], form["client_secret"]) == ("cli", CLIENT_SECRET)


def test_secret_is_hidden_in_reprs(http: httpx2.Client, clock: Clock) -> None:
    s = settings(client_secret=CLIENT_SECRET, token_endpoint_auth_method="client_secret_post")
    assert CLIENT_SECRET not in repr(s)
    assert CLIENT_SECRET not in repr(OAuthClient(s, http, clock=clock))


def test_confidential_method_needs_secret() -> None:
    with pytest.raises(ConfigError):
        OAuthClient(settings(token_endpoint_auth_method="client_secret_basic"), httpx2.Client())


# ---------------------------------------------------------------- refresh


def test_refresh_sends_no_scope_by_default(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", token_ok(refresh_token="rt-new-0123456789"))
    tokens = make(http, clock).refresh(RT)
    assert fake.forms("/token") == [
        {"grant_type": "refresh_token", "refresh_token": RT, "client_id": "cli"}
    ]
    assert tokens.refresh_token == "rt-new-0123456789"
    assert tokens.scope is None  # unknown: the store keeps the old scope


def test_refresh_sends_scope_when_configured(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", token_ok())
    make(http, clock, send_scope_on_refresh=True).refresh(RT)
    assert fake.forms("/token")[0]["scope"] == "read write"


def test_refresh_without_new_refresh_token_returns_none(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", token_ok(refresh_token=None, token_type="bEaReR", expires_in="60"))
    tokens = make(http, clock).refresh(RT)
    assert tokens.refresh_token is None
    assert tokens.token_type == "Bearer"
    assert tokens.expires_at == clock.now + 60


def raise_(exc: Exception) -> Reply:
    def reply(request: httpx2.Request) -> httpx2.Response:
        raise exc

    return reply


def text_reply(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return lambda _req: httpx2.Response(status, text=text, headers=headers)


TRUNCATED = '{"access_token": "' + AT + '", "token_ty'

REFRESH_CASES = [
    ("invalid_grant", json_reply(400, {"error": "invalid_grant"}), AuthError, "invalid_grant"),
    (
        "invalid_client",
        json_reply(401, {"error": "invalid_client"}),
        ProviderError,
        "invalid_client",
    ),
    (
        "unauthorized_client",
        json_reply(400, {"error": "unauthorized_client"}),
        ProviderError,
        "unauthorized_client",
    ),
    (
        "unsupported_grant_type",
        json_reply(400, {"error": "unsupported_grant_type"}),
        ProviderError,
        "unsupported_grant_type",
    ),
    ("invalid_scope", json_reply(400, {"error": "invalid_scope"}), ProviderError, "invalid_scope"),
    # GitHub answers token errors with 200 and its own codes
    (
        "200-bad_refresh_token",
        json_reply(200, {"error": "bad_refresh_token", "error_description": "expired"}),
        AuthError,
        "invalid_grant",
    ),
    (
        "200-incorrect_client_credentials",
        json_reply(200, {"error": "incorrect_client_credentials"}),
        ProviderError,
        "invalid_client",
    ),
    ("503", json_reply(503, {"error": "temporarily_unavailable"}), ProviderUnavailable, None),
    ("500-html", text_reply(500, "<html>oops</html>"), ProviderUnavailable, None),
    ("502-text", text_reply(502, "Bad Gateway"), ProviderUnavailable, None),
    ("400-html", text_reply(400, "<html>proxy</html>"), ProviderUnavailable, None),
    ("200-non-json", text_reply(200, "<html>login</html>"), ProviderUnavailable, None),
    ("200-json-array", json_reply(200, [AT]), ProviderUnavailable, None),
    ("200-truncated", text_reply(200, TRUNCATED), ProviderUnavailable, None),
    ("no-access-token", json_reply(200, {"token_type": "Bearer"}), ProviderUnavailable, None),
    ("token-type-mac", token_ok(token_type="mac"), ProviderError, None),
    ("connect-error", raise_(httpx2.ConnectError("refused")), ProviderUnavailable, None),
    ("timeout", raise_(httpx2.ReadTimeout("timed out")), ProviderUnavailable, None),
    ("short-body", raise_(httpx2.RemoteProtocolError("peer closed")), ProviderUnavailable, None),
]


@pytest.mark.parametrize(
    ("reply", "exc_type", "code"),
    [case[1:] for case in REFRESH_CASES],
    ids=[case[0] for case in REFRESH_CASES],
)
def test_refresh_error_mapping(
    reply: Reply,
    exc_type: type[AuthError],
    code: str | None,
    fake: FakeAS,
    http: httpx2.Client,
    clock: Clock,
) -> None:
    fake.on("/token", reply)
    client = make(
        http, clock, client_secret=CLIENT_SECRET, token_endpoint_auth_method="client_secret_post"
    )
    with pytest.raises(AuthError) as info:
        client.refresh(RT)
    assert type(info.value) is exc_type
    assert info.value.error_code == code
    assert info.value.provider == "demo" and "demo" in str(info.value)
    assert len(fake.requests) == 1
    assert_no_secret(info.value)


def test_missing_token_type_means_bearer(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", token_ok(token_type=None), token_ok(token_type="DPoP"))
    client = make(http, clock)
    tokens = client.refresh(RT)
    assert tokens is not None and tokens.access_token == AT and tokens.token_type == "Bearer"
    with pytest.raises(ProviderError, match="unsupported token_type 'DPoP'"):
        client.refresh(RT)


def test_refresh_retry_after_is_reported(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", text_reply(429, "slow down", headers={"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailable) as info:
        make(http, clock).refresh(RT)
    assert getattr(info.value, "retry_after", None) == 7


def test_retry_after_http_date(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    clock.now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:50 GMT"  # clock.now + 30
    fake.on("/token", text_reply(503, "down", headers={"Retry-After": date}))
    with pytest.raises(ProviderUnavailable) as info:
        make(http, clock).refresh(RT)
    assert getattr(info.value, "retry_after", None) == 30


def test_error_description_echoing_the_token_is_redacted(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/token", json_reply(400, {"error": "invalid_grant", "error_description": f"bad {RT}"}))
    with pytest.raises(AuthError) as info:
        make(http, clock).refresh(RT)
    assert "bad ***" in str(info.value)
    assert_no_secret(info.value)


def test_truncated_body_on_a_real_socket(clock: Clock) -> None:
    """Content-Length larger than the body: httpx raises, we map to ProviderUnavailable."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            body = TRUNCATED.encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body) + 50}\r\nConnection: close\r\n\r\n".encode()
                + body
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with httpx2.Client() as http:
            s = settings(issuer=None, token_endpoint=f"http://127.0.0.1:{port}/token", timeout=5)
            with pytest.raises(ProviderUnavailable) as info:
                OAuthClient(s, http, clock=clock).refresh(RT)
        assert_no_secret(info.value)
    finally:
        thread.join(timeout=5)
        server.close()


# ---------------------------------------------------------------- client credentials, revoke


def test_client_credentials(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", token_ok(refresh_token=None))
    client = make(
        http, clock, client_secret=CLIENT_SECRET, token_endpoint_auth_method="client_secret_basic"
    )
    assert client.client_credentials().access_token == AT
    assert fake.forms("/token") == [{"grant_type": "client_credentials", "scope": "read write"}]
    with pytest.raises(ConfigError):
        make(http, clock).client_credentials()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (text_reply(200, ""), True),
        (json_reply(503, {}), False),
        (json_reply(400, {"error": "unsupported_token_type"}), False),
        (raise_(httpx2.ConnectError("refused")), False),
    ],
    ids=["200", "503", "unsupported_token_type", "down"],
)
def test_revoke(
    reply: Reply, expected: bool, fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/revoke", reply)
    assert make(http, clock).revoke(RT) is expected
    assert fake.forms("/revoke") == [
        {"token": RT, "token_type_hint": "refresh_token", "client_id": "cli"}
    ]


def test_revoke_without_endpoint_and_invalid_client(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    assert make(http, clock, revocation_endpoint=None).revoke(RT) is False
    fake.on("/revoke", json_reply(401, {"error": "invalid_client"}))
    with pytest.raises(ProviderError) as info:
        make(http, clock).revoke(AT, hint="access_token")
    assert_no_secret(info.value)
    assert fake.requests == fake.requests[:1]


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (json_reply(400, {"error": "invalid_request"}), "invalid_request"),
        (text_reply(400, ""), "http_400"),
        (text_reply(403, "forbidden"), "http_403"),
        (json_reply(400, {"error": "unsupported_token_type"}), False),  # the caller falls back
        (text_reply(429, "slow down"), False),
        (text_reply(503, "down"), False),
    ],
)
def test_revoke_other_refusals_are_final_and_outages_are_retried(
    reply: Reply, outcome: str | bool, fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/revoke", reply)
    if outcome is False:
        assert make(http, clock).revoke(RT) is False
        return
    with pytest.raises(ProviderError) as info:
        make(http, clock).revoke(RT)
    assert info.value.error_code == outcome
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    "reply",
    [text_reply(401, ""), text_reply(401, "<html>Unauthorized</html>")],
    ids=["empty", "html"],
)
def test_revoke_answered_401_without_an_oauth_error_is_invalid_client(
    reply: Reply, fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    """RFC 7009 §2.2.1: a 401 from the revocation endpoint is the client's authentication
    failing; it is not an outage to retry later."""
    fake.on("/revoke", reply)
    with pytest.raises(ProviderError, match="invalid_client") as info:
        make(http, clock).revoke(RT)
    assert info.value.error_code == "invalid_client"


# ---------------------------------------------------------------- device grant


def device_reply(**extra: Any) -> Reply:
    body = {
        "device_code": "dc-SECRET-0123456789",
        "user_code": "WDJB-MJHT",
        "verification_uri": "https://as.example/device",
        "verification_uri_complete": "https://as.example/device?user_code=WDJB-MJHT",
        "expires_in": 60,
        "interval": 5,
    }
    body.update(extra)
    return json_reply(200, body)


class FakeSleep:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.now += seconds


def pending_reply(error: str) -> Reply:
    return json_reply(400, {"error": error})


def test_device_start(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/device", device_reply())
    dev = make(http, clock).device_start()
    assert (dev.user_code, dev.interval, dev.expires_at) == ("WDJB-MJHT", 5, clock.now + 60)
    assert dev.verification_uri == "https://as.example/device"
    assert "dc-SECRET" not in repr(dev)
    assert fake.forms("/device") == [{"scope": "read write", "client_id": "cli"}]


def test_device_poll_state_machine(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/device", device_reply())
    fake.on(
        "/token",
        pending_reply("authorization_pending"),
        pending_reply("authorization_pending"),
        pending_reply("slow_down"),
        pending_reply("authorization_pending"),
        token_ok(),
    )
    client = make(http, clock)
    dev = client.device_start()
    sleep = FakeSleep(clock)
    tokens = client.device_poll(dev, sleep=sleep)
    assert tokens.access_token == AT
    assert sleep.calls == [5, 5, 5, 10, 10]
    forms = fake.forms("/token")
    assert len(forms) == 5
    assert forms[0] == {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": "dc-SECRET-0123456789",
        "client_id": "cli",
    }


@pytest.mark.parametrize(
    ("error", "exc_type"),
    [("access_denied", ConsentDenied), ("expired_token", ConsentFailed)],
)
def test_device_poll_stops(
    error: str, exc_type: type[Exception], fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/device", device_reply())
    fake.on("/token", pending_reply("authorization_pending"), pending_reply(error))
    client = make(http, clock)
    with pytest.raises(exc_type) as info:
        client.device_poll(client.device_start(), sleep=FakeSleep(clock))
    assert len(fake.forms("/token")) == 2
    assert_no_secret(info.value, "dc-SECRET-0123456789")


@pytest.mark.parametrize("advance_clock", [True, False])
def test_device_poll_deadline(
    advance_clock: bool, fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/device", device_reply(expires_in=30))
    fake.on("/token", pending_reply("authorization_pending"))
    client = make(http, clock)
    dev = client.device_start()
    calls: list[float] = []
    sleep = FakeSleep(clock) if advance_clock else calls.append
    with pytest.raises(ConsentFailed) as info:
        client.device_poll(dev, sleep=sleep)
    assert info.value.error_code == "expired_token"
    assert len(fake.forms("/token")) == 6  # 6 x 5 s = the 30 s lifetime, then stop


def test_device_authorization_repr_hides_device_code() -> None:
    dev = DeviceAuthorization("dc-SECRET", "ABCD", "https://as.example/d", None, 5, 0)
    assert "dc-SECRET" not in repr(dev)


def test_device_start_refuses_http_verification_uri(
    fake: FakeAS, http: httpx2.Client, clock: Clock
) -> None:
    fake.on("/device", device_reply(verification_uri="http://phish.example/device"))
    with pytest.raises(ProviderError):
        make(http, clock).device_start()


def test_json_error_bodies_are_not_chained(fake: FakeAS, http: httpx2.Client, clock: Clock) -> None:
    fake.on("/token", text_reply(200, TRUNCATED))
    with pytest.raises(ProviderUnavailable) as info:
        make(http, clock).refresh(RT)
    assert info.value.__cause__ is None and info.value.__context__ is None
    json.dumps(str(info.value))  # plain text
