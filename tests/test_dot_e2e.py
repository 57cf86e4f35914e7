"""End to end against a third-party authorization server: django-oauth-toolkit (DOT).

The test API validates every bearer token by RFC 7662 introspection at DOT. Two users
consent (walking DOT's login and consent forms), query, have their tokens expire at the
server, are refreshed on the 401, then one logs out (revocation) and is asked again.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.auth.consent import ConsentRequest
from remotetables.demo.api.server import IncidentsAPI, token_fingerprint
from tests.conftest import incidents_table
from tests.servers.dot_server import DOT_USERS, DotServer
from tests.servers.walk import walk_consent


@pytest.fixture
def api(dot: DotServer) -> Iterator[IncidentsAPI]:
    with IncidentsAPI(n_rows=60, token_validator=dot.introspection_validator()) as server:
        yield server


def expire_at_server(*users: str) -> int:
    """Make the users' access tokens expired in DOT's own database (as time would)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model

    try:
        model = get_access_token_model()
        past = timezone.now() - timedelta(seconds=5)
        return int(model.objects.filter(user__username__in=users).update(expires=past))
    finally:
        connection.close()


def test_dot_consent_query_expiry_refresh_logout(
    dot: DotServer, api: IncidentsAPI, tmp_path: Path
) -> None:
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
            scopes = ["incidents.read"]
            """
        )
        + incidents_table(
            "incidents", "link", api.base_url, max_page_size=10, extra="cache_ttl = 0\n"
        )
    )
    calls: list[ConsentRequest] = []

    def consent(req: ConsentRequest) -> str:
        calls.append(req)
        return walk_consent(req.authorization_url, username=req.user, password=DOT_USERS[req.user])

    conn = remotetables.connect(
        ":memory:",
        config=cfg,
        user="alice",
        consent=consent,
        environ={"REMOTETABLES_NO_KEYRING": "1"},
    )
    svc = conn.runtime.oauth_service()
    provider = conn.runtime.provider("dot")

    def rows(user: str) -> list[tuple[Any, ...]]:
        conn.execute("SELECT set_user(?)", (user,))
        got = conn.execute("SELECT number, assigned_to FROM incidents ORDER BY number").fetchall()
        assert got and {r[1] for r in got} == {user}
        return got

    def access_token(user: str) -> str:
        record = svc.store.get(svc.key(provider, user))
        assert record is not None and record.tokens is not None
        return str(record.tokens.access_token)

    first = {u: rows(u) for u in ("alice", "bob")}
    assert [c.user for c in calls] == ["alice", "bob"]
    old = {u: access_token(u) for u in ("alice", "bob")}
    assert dot.introspect(old["alice"])["active"] is True

    # the tokens expire at the server: the API answers 401, each user refreshes once
    assert expire_at_server("alice", "bob") >= 2  # the shared server may hold older tokens too
    tokens_before = dot.stats.token_requests
    api.clear_requests()
    assert {u: rows(u) for u in ("alice", "bob")} == first
    assert dot.stats.token_requests == tokens_before + 2
    assert [r.status for r in api.requests].count(401) == 2
    new = {u: access_token(u) for u in ("alice", "bob")}
    assert new["alice"] != old["alice"] and new["bob"] != old["bob"]
    for r in api.requests:
        if r.status == 200:
            assert r.token_fp == token_fingerprint(new[r.user or ""])
    assert len(calls) == 2  # refreshing asked nobody

    # logout revokes at DOT and forgets locally; the next query asks alice again
    revocations = dot.stats.revocations
    assert svc.logout(provider, "alice") is True
    assert dot.stats.revocations == revocations + 1
    assert dot.introspect(new["alice"])["active"] is False
    assert svc.store.get(svc.key(provider, "alice")) is None
    assert rows("alice") == first["alice"]
    assert [c.user for c in calls] == ["alice", "bob", "alice"]
    assert access_token("alice") not in (old["alice"], new["alice"])
    assert rows("bob") == first["bob"] and len(calls) == 3  # bob is untouched
    conn.close()
