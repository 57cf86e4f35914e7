"""Fault scenarios F14 (consent callback), F16 (device grant), F18 (multi-user isolation)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from remotetables.errors import ConsentDenied, ConsentFailed
from tests.faults.env import DemoEnv, rows_of


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnv]:
    e = DemoEnv(tmp_path)
    yield e
    e.close()


# ----------------------------------------------------------------------------- F14
# Listener edge cases (wrong state -> 400 and keep waiting, timeout closes the port, second
# callback ignored, bound on 127.0.0.1 only) are in tests/auth/test_consent.py:
# test_wrong_state_gets_400_and_listener_keeps_waiting, test_timeout_raises_and_closes_port,
# test_second_callback_after_success_is_ignored, test_listener_binds_loopback_only.


def _redirect(req: Any, **params: str) -> str:
    return f"{req.redirect_uri}?{urlencode(params)}"


def _state(req: Any) -> str:
    return dict(parse_qsl(urlsplit(req.authorization_url).query))["state"]


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (lambda req: _redirect(req, code="abc", state="not-the-state"), ConsentFailed, "state"),
        (lambda req: _redirect(req, code="abc"), ConsentFailed, "state"),
        (
            lambda req: _redirect(req, error="access_denied", state=_state(req)),
            ConsentDenied,
            "denied",
        ),
    ],
    ids=["wrong-state", "missing-state", "access-denied"],
)
def test_f14_bad_callbacks_make_no_token_request(
    env: DemoEnv, answer: Any, error: type, words: str
) -> None:
    conn = env.connect("alice", consent=answer)
    with pytest.raises(error, match=words):
        rows_of(conn)
    assert env.auth.stats.token_requests == 0
    assert env.record(conn, "alice") is None


# ----------------------------------------------------------------------------- F16
# The device grant state machine (authorization_pending, slow_down +5 s, access_denied,
# expired_token, deadline) is tested in tests/auth/test_oauth.py::test_device_poll_state_machine,
# ::test_device_poll_stops, ::test_device_poll_deadline, end to end against the demo AS in
# tests/auth/test_consent.py::test_e2e_demo_device_grant. Here: through SQL.


def test_f16_device_grant_through_sql(env: DemoEnv, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.servers.walk import walk_consent

    approved: list[str] = []

    def sleep(seconds: float) -> None:  # the user approves on another device while we poll
        assert seconds >= 1
        if not approved:
            text = capsys.readouterr().err
            words = [w.strip("()") for w in text.split()]
            url = next(w for w in words if w.startswith(env.auth.issuer) and "user_code" in w)
            approved.append(walk_consent(url, username="carol", password="carol"))

    conn = env.connect("carol", consent="device", sleep=sleep)
    rows = rows_of(conn)
    assert rows and all(r[1] in ("carol", None) for r in rows)
    assert approved


# ----------------------------------------------------------------------------- F18


def test_f18_set_user_switch_with_interleaved_cursors(env: DemoEnv) -> None:
    conn = env.connect("alice")
    c1 = iter(conn.execute("SELECT sys_id, assigned_to FROM inc"))
    first = [next(c1) for _ in range(3)]
    conn.execute("SELECT set_user('bob')")
    c2 = iter(conn.cursor().execute("SELECT sys_id, assigned_to FROM inc"))
    a_rows, b_rows = list(first), []
    for a, b in zip(c1, c2, strict=False):  # interleave page fetches of both users
        a_rows.append(a)
        b_rows.append(b)
    a_rows.extend(c1)
    b_rows.extend(c2)
    assert a_rows and all(r[1] == "alice" for r in a_rows)
    assert b_rows and all(r[1] == "bob" for r in b_rows)
    by_user = {}
    for rec in env.api.requests:
        by_user.setdefault(rec.user, set()).add(rec.token_fp)
    assert set(by_user) == {"alice", "bob"} and not (by_user["alice"] & by_user["bob"])


def test_f18_concurrent_connections_never_mix_tokens(env: DemoEnv) -> None:
    first = env.connect("alice")
    rows_of(first)
    users = ["alice", "bob", "carol"]
    expected = {}
    for u in users:
        first.execute("SELECT set_user(?)", (u,))
        expected[u] = rows_of(first)
    wrong: list[Any] = []

    def work(i: int) -> None:
        conn = env.connect(users[i % 3], runtime=first.runtime)
        for n in range(6):
            user = users[(i + n) % 3]
            conn.execute("SELECT set_user(?)", (user,))
            got = rows_of(conn)
            if got != expected[user]:
                wrong.append((user, len(got)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == []
    fps: dict[str | None, set[str | None]] = {}
    for rec in env.api.requests:
        fps.setdefault(rec.user, set()).add(rec.token_fp)
    assert set(fps) == set(users)
    assert len(set().union(*fps.values())) == sum(len(v) for v in fps.values())  # disjoint
