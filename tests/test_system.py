"""System integration: one token shared by every user (client credentials, or an admin's login)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import remotetables
from remotetables.auth.service import SYSTEM_SUBJECT
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DemoClient
from remotetables.errors import ConfigError, ConsentRequired
from tests.auth.test_oauth_e2e import Env, make_env, refuse, rows_of, walker

SVC_SECRET = "service-account-secret-for-tests"  # test-only
SVC = "svc-client"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clients = [
        DemoClient(DEFAULT_CLIENT_ID, None, ["http://127.0.0.1/callback"]),
        DemoClient(SVC, SVC_SECRET, [], client_name="service account"),
    ]
    users = ("alice", "bob", "carol", SVC)  # the API has rows for the service account too
    with make_env(tmp_path, clients=clients, users=users) as e:
        e.environ["SVC_SECRET"] = SVC_SECRET
        yield e


CC = """
integration = "system"
grant = "client_credentials"
client_secret_env = "SVC_SECRET"
"""


def test_client_credentials_token_shared_by_every_user(env: Env) -> None:
    cfg = env.toml(client_id=SVC, provider=CC)
    conn = env.connect(cfg, user="alice", consent=refuse)
    rows = rows_of(conn)
    assert rows and {r[1] for r in rows} == {SVC}
    conn.execute("SELECT set_user('bob')")
    assert rows_of(conn) == rows
    other = env.connect(cfg, user=None, consent=refuse)  # no session user is needed
    assert rows_of(other) == rows
    (grant,) = env.cap.forms(grant="client_credentials")
    assert "client_secret" not in grant
    auths = [a for p, _, a in env.cap.calls if p == "/token"]
    assert auths and all(a is not None and a.startswith("Basic ") for a in auths)
    # the two runtimes share the token through the store: one grant, one token at the API
    assert {r.token_fp for r in env.api.requests} == {env.api.requests[0].token_fp}
    assert {r.user for r in env.api.requests} == {SVC}
    (info,) = conn.runtime.oauth_service().tokens()
    assert info.subject == SYSTEM_SUBJECT
    env.clock.advance(3600)  # expired, and no refresh token: a new client-credentials grant
    assert rows_of(conn) == rows
    assert len(env.cap.forms(grant="client_credentials")) == 2
    other.close()
    conn.close()


def test_client_credentials_without_the_secret_is_a_config_error(env: Env) -> None:
    cfg = env.toml(client_id=SVC, provider=CC)
    env.environ.pop("SVC_SECRET")
    conn = env.connect(cfg, consent=refuse)
    with pytest.raises(ConfigError, match="SVC_SECRET"):
        rows_of(conn)
    assert env.srv.stats.token_requests == 0
    conn.close()


def test_system_login_by_an_admin_is_used_by_every_user(env: Env) -> None:
    cfg = env.toml(provider='integration = "system"')
    conn = env.connect(cfg, user="alice", consent=refuse)
    with pytest.raises(ConsentRequired, match=r"remotetables login demo --system") as info:
        rows_of(conn)
    assert info.value.provider == "demo" and env.srv.stats.token_requests == 0

    # what `remotetables login demo --system` does, in its own runtime (another process)
    admin = remotetables.Runtime(
        remotetables.load_config(cfg), environ=env.environ, clock=env.clock
    )
    svc = admin.oauth_service()
    svc.login(admin.provider("demo"), SYSTEM_SUBJECT, consent=walker(as_user="carol"))
    admin.close()

    rows = rows_of(conn)
    assert rows and {r[1] for r in rows} == {"carol"}  # the admin's grant
    conn.execute("SELECT set_user('bob')")
    assert rows_of(conn) == rows
    assert len({r.token_fp for r in env.api.requests}) == 1
    assert env.srv.stats.code_exchanges == 1
    env.clock.advance(3600)  # the shared token is refreshed once, for everybody
    assert rows_of(conn) == rows and env.srv.stats.refreshes == 1
    conn.close()
