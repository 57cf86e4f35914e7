"""The hostile-server suite: every behaviour of tests/servers/hostile/ against queries, login,
refresh, logout and discovery (issue 16).

Each case runs in a forked child (tests/faults/hostile_run.py) and must: end within its
deadline plus a margin, grow peak RSS by less than a fixed bound, end (if it fails) with a
``remotetables.Error``, and show no secret in any message, traceback or log line: neither the
ones the test configured nor any credential the server received. With ``HOSTILE_TABLE=path``
set, each case appends its figures to that file (the table in the issue's closing note).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.hostile_run import (
    DEADLINE,
    ENDPOINT,
    KNOWN_SECRETS,
    MARGIN,
    OPS,
    RSS_BOUND,
    Outcome,
    run_case,
)
from tests.servers.hostile import CATALOG, HostileServer

# a call that may end without an exception: logout reports an unconfirmed revocation by
# returning False (the grant is kept only to retry it); a token answer whose expires_in is
# "²" is still a usable token (no expiry, as when expires_in is absent)
MAY_RETURN = {("expires_in_superscript", "login"), ("expires_in_superscript", "refresh")}

CASES = [
    (name, op)
    for name, behaviour in CATALOG.items()
    for op in OPS
    if ENDPOINT[op] in behaviour.endpoints
]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[HostileServer, HostileServer]]:
    a = HostileServer().start()
    b = HostileServer().start()
    a.other, b.other = b, a
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def received_secrets(*servers: HostileServer) -> list[str]:
    return [s for server in servers for s in server.received if len(s) >= 6]


def check(outcome: Outcome, servers: tuple[HostileServer, ...], deadline: float) -> None:
    assert outcome.crash is None, outcome.crash
    assert outcome.elapsed is not None
    secrets = [*KNOWN_SECRETS, *received_secrets(*servers)]
    leaks = outcome.leaks(secrets)
    table = os.environ.get("HOSTILE_TABLE")
    if table:
        with open(table, "a", encoding="utf-8") as f:
            row = {
                "behaviour": outcome.behaviour,
                "op": outcome.op,
                "time": round(outcome.elapsed, 2),
                "rss_mib": round(outcome.rss_growth / 2**20, 1),
                "error": outcome.error or "(returned)",
                "message": (outcome.texts[-3] if outcome.error else "")[:160],
            }
            f.write(json.dumps(row) + "\n")
    assert outcome.elapsed <= deadline + MARGIN, f"took {outcome.elapsed:.1f} s"
    assert outcome.rss_growth < RSS_BOUND, f"peak RSS grew {outcome.rss_growth / 2**20:.0f} MiB"
    if outcome.error is not None:
        assert outcome.is_library_error, f"{outcome.error} is not a remotetables.Error"
        message = outcome.texts[-3]  # str(exc): what the CLI prints
        assert message.isprintable(), f"non-printable characters in {message!r}"
    else:
        assert (outcome.behaviour, outcome.op) in MAY_RETURN or outcome.op == "logout"
    assert not leaks, f"secrets in messages or logs: {leaks}"


@pytest.mark.parametrize(("behaviour", "op"), CASES, ids=[f"{b}-{o}" for b, o in CASES])
def test_hostile(
    servers: tuple[HostileServer, HostileServer], tmp_path: Path, behaviour: str, op: str
) -> None:
    a, _ = servers
    table = CATALOG[behaviour].table
    outcome = run_case(behaviour, op, a, tmp_path, table=table)
    check(outcome, servers, DEADLINE[op])


@pytest.mark.parametrize("op", OPS)
def test_the_same_calls_work_against_a_server_that_behaves(
    servers: tuple[HostileServer, HostileServer], tmp_path: Path, op: str
) -> None:
    """The harness reaches the server and each operation can succeed: a failure above is the
    behaviour's doing."""
    a, _ = servers
    outcome = run_case("ok", op, a, tmp_path)
    assert outcome.crash is None, outcome.crash
    assert outcome.error is None, outcome.texts[-3:]
    expected = {
        "query": "[(1, 'one'), (2, 'two')]",
        "login": "TokenSet(access_token='***'",
        "refresh": "[(1, 'one'), (2, 'two')]",
        "logout": "True",
        "discovery": "/m/ok/token",
    }[op]
    assert expected in outcome.returned
    assert outcome.leaks([*KNOWN_SECRETS, *received_secrets(a)]) == []
