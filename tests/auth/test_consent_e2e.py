"""Consent against the demo authorization server on loopback: what a user or a web app sees
when something is off (wrong web session, denied access, a pasted non-URL, a server down)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import remotetables
from remotetables.auth.service import SYSTEM_SUBJECT, complete_consent
from remotetables.cli import main
from remotetables.demo.authserver import DemoClient
from remotetables.errors import ConsentFailed, ConsentRequired, ProviderError
from tests.servers.walk import walk_consent
from tests.test_oauth_e2e import Env, make_env, refuse, rows_of


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path) as e:
        yield e


def test_a_callback_from_another_web_session_does_not_use_up_the_consent(env: Env) -> None:
    conn = env.connect(user="alice", consent="raise")
    conn.session.web_session = "sess-1"
    with pytest.raises(ConsentRequired) as info:
        rows_of(conn)
    landed = walk_consent(info.value.authorization_url or "", username="alice", password="alice")
    with pytest.raises(ConsentFailed, match="started from another session"):
        complete_consent(conn.runtime, landed, web_session="sess-2", user="alice")
    assert env.srv.stats.code_exchanges == 0 and conn.runtime.oauth_service().tokens() == []
    # the rightful session still finishes it ...
    assert complete_consent(conn.runtime, landed, web_session="sess-1", user="alice") == (
        "demo",
        "alice",
    )
    assert env.srv.stats.code_exchanges == 1
    assert {r[1] for r in rows_of(conn)} == {"alice"}
    # ... once: a replay fails from either session, and redeems nothing
    for session in ("sess-1", "sess-2"):
        with pytest.raises(ConsentFailed, match="matches no pending authorization"):
            complete_consent(conn.runtime, landed, web_session=session, user="alice")
    assert env.srv.stats.code_exchanges == 1
    conn.close()


# ---------------------------------------------------------------- logout refused (RFC 7009)

SVC = "svc-client"
SVC_SECRET = "service-account-secret-for-tests"  # test-only


@pytest.fixture
def cc_env(tmp_path: Path) -> Iterator[Env]:
    clients = [DemoClient(SVC, SVC_SECRET, [], client_name="service account")]
    with make_env(tmp_path, clients=clients, users=("alice", SVC)) as e:
        e.environ["SVC_SECRET"] = SVC_SECRET
        yield e


CC = 'integration = "system"\ngrant = "client_credentials"\nclient_secret_env = "SVC_SECRET"\n'


def test_logout_refused_for_a_wrong_client_secret_is_not_an_outage(cc_env: Env) -> None:
    env = cc_env
    cfg = env.toml(client_id=SVC, provider=CC)
    conn = env.connect(cfg, user="alice", consent=refuse)
    rows = rows_of(conn)
    assert {r[1] for r in rows} == {SVC}
    key = env.key(SYSTEM_SUBJECT, SVC)
    store = env.store()
    rec = store.get(key)
    assert rec is not None and rec.tokens is not None
    token = rec.tokens.access_token

    wrong = remotetables.Runtime(
        remotetables.load_config(cfg), environ={**env.environ, "SVC_SECRET": "wrong"}
    )
    svc = wrong.oauth_service()
    with pytest.raises(ProviderError) as info:
        svc.logout(wrong.provider("demo"), SYSTEM_SUBJECT)
    message = str(info.value)
    assert info.value.error_code == "invalid_client" and "invalid_client" in message
    assert "NOT revoked at demo" in message and "$SVC_SECRET" in message
    assert "right now" not in message and "wrong" not in message  # no secret, no "outage"
    revocations = len(env.cap.forms("/revoke"))
    assert revocations >= 1 and env.srv.validate_token(token) == SVC  # still valid there
    # unusable here at once: the next query needs a new grant (here: client credentials)
    rec = store.get(key)
    assert rec is not None and rec.status == "revoked"
    assert (rec.last_error or "").startswith("revocation refused")
    # a permanent refusal is not retried on its own (login, tokens and queries retry outages)
    assert svc.retry_revocations() == 0 and svc.retry_revocations(wrong.provider("demo")) == 0
    assert len(env.cap.forms("/revoke")) == revocations
    wrong.close()

    # with the secret fixed, logging out again revokes it there and deletes it here
    right = remotetables.Runtime(remotetables.load_config(cfg), environ=env.environ)
    assert right.oauth_service().logout(right.provider("demo"), SYSTEM_SUBJECT) is True
    assert store.get(key) is None and env.srv.validate_token(token) is None
    right.close()
    store.close()
    conn.close()


def test_cli_logout_with_a_wrong_client_secret_names_the_refusal(cc_env: Env) -> None:
    env = cc_env
    cfg = env.toml(client_id=SVC, provider=CC)
    conn = env.connect(cfg, user="alice", consent=refuse)
    rows_of(conn)
    conn.close()
    result = CliRunner().invoke(
        main,
        ["logout", "demo", "--system", "-c", str(cfg)],
        env={**env.environ, "SVC_SECRET": "wrong"},
        catch_exceptions=False,
    )
    assert result.exit_code == 1, result.output
    assert "invalid_client" in result.output and "NOT revoked" in result.output
    assert "could not confirm" not in result.output and "will retry" not in result.output
    # `tokens` does not ask the provider again
    revocations = len(env.cap.forms("/revoke"))
    result = CliRunner().invoke(main, ["tokens", "-c", str(cfg)], env=env.environ)
    assert result.exit_code == 0 and "revoked" in result.output
    assert len(env.cap.forms("/revoke")) == revocations
