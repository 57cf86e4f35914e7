"""Consent against the demo authorization server on loopback: what a user or a web app sees
when something is off (wrong web session, denied access, a pasted non-URL, a server down)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remotetables.auth.service import complete_consent
from remotetables.errors import ConsentFailed, ConsentRequired
from tests.servers.walk import walk_consent
from tests.test_oauth_e2e import Env, make_env, rows_of


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
