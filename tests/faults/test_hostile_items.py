"""Issue 16, item by item (item 5 belongs to the token store's work): each test fails on the
code before the fix. The slow and memory-hungry ones run in a forked child
(tests/faults/hostile_run.py) with the keys the old code knew (``new_keys=False``) where the
point does not need a new key, so that the old code fails on the behaviour, not on the config.
"""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.auth.discovery import OAuthSettings
from remotetables.auth.oauth import OAuthClient
from remotetables.config import parse_config
from remotetables.errors import (
    ConfigError,
    NoSessionUser,
    ProviderUnavailable,
    RemoteError,
    TokenStoreError,
)
from remotetables.http.client import HttpClient, RequestContext, RetryPolicy
from tests.faults.hostile_run import (
    DEADLINE,
    KNOWN_SECRETS,
    MARGIN,
    RSS_BOUND,
    STATIC_KEY,
    run_case,
)
from tests.servers.hostile import HostileServer


@pytest.fixture(scope="module")
def servers() -> Any:
    a = HostileServer().start()
    b = HostileServer().start()
    a.other, b.other = b, a
    yield a, b
    a.stop()
    b.stop()


def _ended_as_library_error(outcome: Any, deadline: float, rss: int = RSS_BOUND) -> None:
    assert outcome.crash is None, outcome.crash
    assert outcome.elapsed is not None and outcome.elapsed <= deadline + MARGIN, outcome.elapsed
    assert outcome.rss_growth < rss, f"peak RSS grew {outcome.rss_growth / 2**20:.0f} MiB"
    assert outcome.error is not None and outcome.is_library_error, outcome.error


# ---------------------------------------------------------------- 1. page totals


def test_1_a_huge_page_total_builds_nothing_before_max_pages(servers: Any, tmp_path: Path) -> None:
    # total_pages = 10**12 with max_pages = 100: the old scan built every page request first
    outcome = run_case("page_total_huge", "query", servers[0], tmp_path, new_keys=False)
    _ended_as_library_error(outcome, DEADLINE["query"])
    assert outcome.error == "PaginationError"
    assert "more than 100 pages" in outcome.texts[-3]


def test_1_pending_pages_never_exceed_concurrency() -> None:
    from remotetables.config import PaginationSpec
    from remotetables.pagination import make_paginator

    pager = make_paginator(
        PaginationSpec(style="page", total_pages_path=("pages",)), "https://a.example/x", []
    )
    pager.first()
    # (a moderate total: on the old code this test must fail, not run away in-process)
    rest = pager.parallel_rest({"pages": 10_000}, {}, 10)
    assert rest is not None and not isinstance(rest, list | tuple)  # nothing built up front
    assert rest.count == 9_999
    pending = iter(rest)
    assert next(pending).url == "https://a.example/x?page=2"  # built on demand
    assert next(pending).url == "https://a.example/x?page=3"


# ---------------------------------------------------------------- 2. size limits, depth


def test_2_a_gzip_bomb_stops_at_max_response_bytes(servers: Any, tmp_path: Path) -> None:
    # 260 KB of gzip inflating to 256 MiB; the default limit (64 MiB) stops it while decoding
    outcome = run_case("gzip_bomb", "query", servers[0], tmp_path, new_keys=False)
    _ended_as_library_error(outcome, DEADLINE["query"], rss=200 * 2**20)
    assert outcome.error == "RemoteProtocolError"
    message = outcome.texts[-3]
    assert "max_response_bytes = 67108864" in message and "t_page" in message


@pytest.mark.parametrize("op", ["login", "discovery"])
def test_2_deep_json_from_the_authorization_server(servers: Any, tmp_path: Path, op: str) -> None:
    # json.loads raised RecursionError on a 200 000-deep token or metadata document
    outcome = run_case("deep_json_object", op, servers[0], tmp_path, new_keys=False)
    _ended_as_library_error(outcome, DEADLINE[op])
    assert outcome.error == "ProviderUnavailable"


def test_2_limit_on_token_answers(servers: Any, tmp_path: Path) -> None:
    outcome = run_case("big_identity", "login", servers[0], tmp_path)
    _ended_as_library_error(outcome, DEADLINE["login"])
    assert "max_response_bytes = 1048576" in outcome.texts[-3]


# ---------------------------------------------------------------- 3. request_timeout


def test_3_trickled_headers_end_at_request_timeout(servers: Any, tmp_path: Path) -> None:
    # one header line every 0.25 s: each read is quick, only a deadline over the headers ends it
    outcome = run_case("slow_headers", "query", servers[0], tmp_path, new_keys=False)
    _ended_as_library_error(outcome, DEADLINE["query"])
    assert outcome.error == "TransportError"
    assert "longer than 1.5 s (request_timeout" in outcome.texts[-3]


def test_3_the_deadline_covers_connect_headers_and_body_in_process(servers: Any) -> None:
    client = HttpClient()
    policy = RetryPolicy(max_retries=0, request_timeout=1.0, read_timeout=5.0)
    try:
        for mode in ("slow_headers", "slowloris_body", "huge_content_length"):
            start = time.monotonic()
            # a Content-Length of 2 GB fails at once, over max_response_bytes
            slow = r"longer than 1 s \(request_timeout|max_response_bytes = 67108864"
            with pytest.raises(RemoteError, match=slow):
                client.request_json(
                    "GET",
                    f"{servers[0].base_url}/m/{mode}/api",
                    ctx=RequestContext(table="t"),
                    policy=policy,
                )
            assert time.monotonic() - start < 1.0 + MARGIN
    finally:
        client.close()


# ---------------------------------------------------------------- 4. OAuth deadlines


def test_4_logout_against_a_trickling_revocation_endpoint(servers: Any, tmp_path: Path) -> None:
    # read_timeout = 1 never fires (a byte every 0.2 s); oauth_timeout = 1.5 bounds each call
    outcome = run_case("slowloris_body", "logout", servers[0], tmp_path)
    assert outcome.crash is None, outcome.crash
    assert outcome.elapsed is not None and outcome.elapsed <= DEADLINE["logout"] + MARGIN
    assert outcome.error is None and outcome.returned == "False"  # not confirmed: retried later


@pytest.mark.parametrize("mode", ["slow_headers", "slowloris_body", "huge_content_length"])
def test_4_every_oauth_call_has_a_total_deadline(servers: Any, mode: str) -> None:
    base = f"{servers[0].base_url}/m/{mode}"
    settings = OAuthSettings(
        name="slow", client_id="c", token_endpoint=f"{base}/token",
        authorization_endpoint=f"{base}/authorize", revocation_endpoint=f"{base}/revoke",
        device_authorization_endpoint=f"{base}/device", timeout=5.0, deadline=1.0,
    )  # fmt: skip
    http = HttpClient()
    client = OAuthClient(settings, http.raw)
    calls = {
        "refresh": lambda: client.refresh("r" * 20),
        "device": client.device_start,
        "client_credentials": lambda: OAuthClient(
            OAuthSettings(**{**settings.__dict__, "client_secret": "s" * 20,
                             "token_endpoint_auth_method": "client_secret_post"}),
            http.raw,
        ).client_credentials(),
    }  # fmt: skip
    try:
        for what, call in calls.items():
            start = time.monotonic()
            # a Content-Length of 2 GB fails at once, over max_response_bytes
            slow = "oauth_timeout = 1 s|max_response_bytes = 67108864"
            with pytest.raises(ProviderUnavailable, match=slow):
                call()
            assert time.monotonic() - start < 1.0 + MARGIN, what
        start = time.monotonic()
        assert client.revoke("t" * 20) is False  # not confirmed: the caller retries later
        assert time.monotonic() - start < 1.0 + MARGIN
    finally:
        http.close()


# ---------------------------------------------------------------- 6. secrets echoed


def test_6_a_token_echoed_by_the_api_is_not_in_the_error(servers: Any, tmp_path: Path) -> None:
    outcome = run_case("echo_secret", "query", servers[0], tmp_path, new_keys=False)
    _ended_as_library_error(outcome, DEADLINE["query"])
    assert STATIC_KEY in servers[0].received  # it was sent, and echoed
    assert "bad key ***" in outcome.texts[-3]
    assert outcome.leaks([*KNOWN_SECRETS, *servers[0].received]) == []


@pytest.mark.parametrize("op", ["login", "refresh"])
def test_6_codes_and_tokens_echoed_by_the_token_endpoint(
    servers: Any, tmp_path: Path, op: str
) -> None:
    outcome = run_case("echo_secret_plain", op, servers[0], tmp_path, new_keys=False)
    _ended_as_library_error(outcome, DEADLINE[op])
    assert outcome.leaks([*KNOWN_SECRETS, *servers[0].received]) == []


# ---------------------------------------------------------------- 7. only library errors


@pytest.mark.parametrize(
    ("mode", "op"),
    [
        ("retry_after_superscript", "query"),
        ("retry_after_superscript", "login"),
        ("expires_in_superscript", "login"),
        ("deep_json_object", "discovery"),
        ("huge_numbers", "query"),
    ],
)
def test_7_what_a_server_sends_ends_as_a_library_error(
    servers: Any, tmp_path: Path, mode: str, op: str
) -> None:
    outcome = run_case(mode, op, servers[0], tmp_path, new_keys=False)
    assert outcome.crash is None, outcome.crash
    assert outcome.error is None or outcome.is_library_error, outcome.texts[-1:]
    if mode == "expires_in_superscript":  # a usable token without a known lifetime
        assert outcome.error is None


# ---------------------------------------------------------------- 8. smaller ones


def test_8_relative_next_link_after_a_redirect_to_another_origin(
    servers: Any, tmp_path: Path
) -> None:
    a, b = servers
    before = len(a.hits)
    outcome = run_case(
        "redirect_then_relative_next", "query", a, tmp_path, table="t_link", new_keys=False
    )
    _ended_as_library_error(outcome, DEADLINE["query"])
    assert outcome.error == "PaginationError"
    assert b.base_url.replace("http://", "") in outcome.texts[-3]  # the link's real origin
    # resolved against the original URL, page 2 went back to the table's origin with the token
    assert a.hits[before:] == [("redirect_then_relative_next", "api")]


@pytest.mark.parametrize(
    "name",
    ["al\x85ice", "al\x7fice", "al\u200bice", "al\u200dice", "al\u202eice", "al\u2028ice",
     "al\x00ice", b"alice"],
    ids=["C1-NEL", "DEL", "zero-width-space", "zwj", "bidi-override", "line-separator",
         "NUL", "blob"],
)  # fmt: skip
def test_8_set_user_refuses_what_is_not_printable(name: Any, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("", encoding="utf-8")
    with remotetables.connect(":memory:", config=config) as conn:
        with pytest.raises(NoSessionUser):
            conn.execute("SELECT set_user(?)", (name,))
        conn.execute("SELECT set_user(?)", ("Zoë O'Brien-山田",))
        assert conn.execute("SELECT current_user()").fetchone()[0] == "Zoë O'Brien-山田"


@pytest.mark.parametrize(
    "text",
    [
        '[providers."p\\n"]\nauth = "none"\n',
        '[tables."t\\n"]\nurl = "https://a.example/x"\n[tables."t\\n".columns]\nid = "TEXT"\n',
        '[tables.t]\nurl = "https://a.example/x"\n[tables.t.columns]\n"id\\n" = "TEXT"\n',
    ],
    ids=["provider", "table", "column"],
)
def test_8_config_names_refuse_a_trailing_newline(text: str) -> None:
    data = tomllib.loads(text)
    assert any(name.endswith("\n") for section in data.values() for name in section) or (
        "id\n" in data["tables"]["t"]["columns"]
    )
    with pytest.raises(ConfigError, match="name"):
        parse_config(data)


def test_8_an_empty_token_store_file_is_refused(tmp_path: Path) -> None:
    from remotetables.auth.store import SQLiteTokenStore
    from remotetables.auth.store.crypto import TokenCipher

    path = tmp_path / "store" / "tokens.db"
    path.parent.mkdir(mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)  # truncated: 0 bytes
    os.close(fd)
    cipher = TokenCipher({"k1": os.urandom(32)}, "k1")
    with pytest.raises(TokenStoreError, match=r"tokens\.db is an empty file"):
        SQLiteTokenStore(path, cipher)
    # a store it creates itself is fine, and so is reopening it
    fresh = tmp_path / "store" / "new.db"
    SQLiteTokenStore(fresh, cipher).close()
    SQLiteTokenStore(fresh, cipher).close()


@pytest.mark.parametrize("mode", ["deep_json_object", "gzip_bomb", "slow_headers"])
def test_2_4_jwks_and_userinfo_answers_are_bounded(servers: Any, mode: str) -> None:
    # the account check reads the provider's JWKS, userinfo and OpenID configuration: the same
    # deadline (oauth_timeout) and size limit as every other OAuth call; a failure reads as
    # "could not be read" (None), never RecursionError, a 256 MiB body or a 150 s wait
    from remotetables.auth.account import AccountResolver

    base = f"{servers[0].base_url}/m/{mode}"
    settings = OAuthSettings(
        name="acct", client_id="c", token_endpoint=f"{base}/token",
        authorization_endpoint=f"{base}/authorize", timeout=5.0, deadline=1.0,
        max_response_bytes=1 << 20,
    )  # fmt: skip
    http = HttpClient()
    try:
        resolver = AccountResolver(OAuthClient(settings, http.raw))
        start = time.monotonic()
        assert resolver._get_json(f"{base}/jwks", headers={}) is None
        assert time.monotonic() - start < 1.0 + MARGIN
    finally:
        http.close()
    # the same call against a server that behaves returns its document
    http = HttpClient()
    try:
        good = AccountResolver(OAuthClient(settings, http.raw))
        doc = good._get_json(
            f"{servers[0].base_url}/m/ok/.well-known/openid-configuration", headers={}
        )
        assert doc is not None and doc["issuer"].endswith("/m/ok")
    finally:
        http.close()
