"""The shell shows no secret and no way into the token store (issue 15 §2, outside review):
``.exceptions on`` never prints frames' local variables (a refresh token, a token request's
form), and ``.connection`` lists only the shell's own connections, never the store's."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

import remotetables
from remotetables.shell import RemoteShell
from tests.auth.test_oauth_e2e import Env, make_env, walker


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path) as e:
        yield e


def run_shell(conn: remotetables.Connection, script: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    shell = RemoteShell(conn, stdin=io.StringIO(script), stdout=out, stderr=err)
    with contextlib.suppress(SystemExit):
        shell.cmdloop()
    return out.getvalue(), err.getvalue()


def test_exceptions_on_never_prints_a_refresh_token(env: Env, tmp_path: Path) -> None:
    """bob's access token has expired and the refresh fails (the server went away): with
    ``.exceptions on`` the shell shows where, and none of the values the frames held."""
    cfg = env.toml()
    first = env.connect(cfg, user="bob", consent=walker())
    first.execute("SELECT count(*) FROM incidents").fetchall()
    first.close()
    store = env.store()
    record = store.get(env.key("bob"))
    store.close()
    assert record is not None and record.tokens is not None and record.tokens.refresh_token
    secrets = [record.tokens.refresh_token, record.tokens.access_token]
    env.clock.advance(7 * 24 * 3600)  # the access token expired
    env.srv.stop()  # the refresh request cannot reach the token endpoint
    conn = env.connect(cfg, user="bob", consent="raise", lock_user=True)
    try:
        _, err = run_shell(conn, ".exceptions on\nSELECT count(*) FROM incidents;\n")
    finally:
        conn.close()
    assert "Frame " in err  # the frames are shown ...
    assert "refresh" in err  # ... down to the refresh that failed
    for secret in secrets:
        assert secret not in err
    assert " = " not in err  # no local variable at all


def test_connection_lists_only_the_shells_own_connections(env: Env, tmp_path: Path) -> None:
    """The token store is an APSW connection of the same process; ``.connection`` must never
    list it nor switch to it (the README: the store is never reachable from SQL)."""
    cfg = env.toml()
    conn = env.connect(cfg, user="alice", consent=walker())
    conn.execute("SELECT count(*) FROM incidents").fetchall()  # the store is open now
    try:
        out, err = run_shell(
            conn,
            ".connection\n.connection 1\nSELECT name FROM sqlite_schema WHERE name = 'oauth_token';"
            "\nSELECT current_user();\n",
        )
    finally:
        conn.close()
    assert "tokens.db" not in out
    assert out.splitlines()[0].startswith("*  0")
    assert len(out.splitlines()) == 2 and out.splitlines()[-1] == "alice", out
    assert "no connection 1" in err
