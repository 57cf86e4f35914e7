"""Multi-user isolation (fault scenario F18): tokens, rows and cached rows never cross users.

Each user reads through a table of its own pagination style, so the API path of a request
says whose statement sent it; the API's request log says whose token it carried (user and
token fingerprint). Every request must carry the token the authorization server issued to
the user whose statement sent it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.demo.api.server import token_fingerprint
from tests.auth.test_oauth_e2e import Env, make_env, walker

USERS = ("alice", "bob", "carol")
TABLE_OF = {"alice": "inc_link", "bob": "inc_cursor", "carol": "inc_offset"}
USER_OF_PATH = {
    "/styles/link/incidents": "alice",
    "/styles/cursor/incidents": "bob",
    "/styles/offset/incidents": "carol",
}
TABLES = (("inc_link", "link"), ("inc_cursor", "cursor"), ("inc_offset", "offset"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path, n_rows=120) as e:
        yield e


def issued(env: Env) -> dict[str, str]:
    """Token fingerprint -> the user the authorization server issued it to (server side)."""
    store = env.srv._store  # the demo server's own records
    with store.lock:
        return {token_fingerprint(t): rec.user for t, rec in store.by_access.items()}


def check_log(env: Env) -> int:
    """Every API request carried a token issued to the user whose statement sent it."""
    owner = issued(env)
    records = env.api.requests
    assert records
    for r in records:
        expected = USER_OF_PATH[r.path]
        assert r.token_fp is not None and owner.get(r.token_fp) == expected, r
        assert r.user == expected and r.status == 200, r
    return len(records)


def owners(rows: list[tuple[Any, ...]]) -> set[str]:
    return {r[1] for r in rows}


def sql(table: str) -> str:
    return f"SELECT number, assigned_to FROM {table}"


def test_interleaved_users_on_one_connection(env: Env) -> None:
    conn = env.connect(env.toml(tables=TABLES, page_size=4), user=None, consent=walker())
    reference: dict[str, list[tuple[Any, ...]]] = {}
    for user in USERS:
        conn.execute("SELECT set_user(?)", (user,))
        reference[user] = sorted(conn.execute(sql(TABLE_OF[user])).fetchall())
        assert owners(reference[user]) == {user} and len(reference[user]) > 8
    for _ in range(3):
        cursors = {}
        for user in USERS:  # three statements open at once, each started by another user
            conn.execute("SELECT set_user(?)", (user,))
            cur = conn.cursor().execute(sql(TABLE_OF[user]))
            cursors[user] = [cur.fetchone(), cur]
        for user in reversed(USERS):  # finish them under whoever is the session user now
            first, cur = cursors[user]
            rows = sorted([first, *cur.fetchall()])
            assert rows == reference[user]
    assert check_log(env) > 30
    assert env.srv.stats.code_exchanges == 3
    conn.close()


def test_concurrent_connections_sharing_one_runtime(env: Env) -> None:
    cfg = env.toml(tables=TABLES, page_size=4)
    first = env.connect(cfg, user=None, consent=refuse_all)
    runtime = first.runtime
    rounds, refresh_after = 6, 2
    barrier = threading.Barrier(len(USERS) + 1, timeout=60)
    errors: list[BaseException] = []
    seen: dict[str, list[set[str]]] = {u: [] for u in USERS}

    def work(user: str) -> None:
        try:
            conn = remotetables.connect(":memory:", runtime=runtime, user=user, consent=walker())
            for _ in range(rounds):
                barrier.wait()
                rows = conn.execute(sql(TABLE_OF[user])).fetchall()
                seen[user].append(owners(rows))
                barrier.wait()
            conn.close()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(u,)) for u in USERS]
    for t in threads:
        t.start()
    try:
        for i in range(rounds):
            barrier.wait()  # the users query in parallel
            barrier.wait()
            if i == refresh_after:
                env.clock.advance(3600)  # every token is due: three refreshes, in parallel
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(60)
    assert errors == []
    assert seen == {u: [{u}] * rounds for u in USERS}
    assert env.srv.stats.code_exchanges == 3 and env.srv.stats.refreshes == 3
    check_log(env)
    per_user_fps: dict[str, set[str | None]] = {u: set() for u in USERS}
    for r in env.api.requests:
        per_user_fps[USER_OF_PATH[r.path]].add(r.token_fp)
    assert all(len(fps) == 2 for fps in per_user_fps.values())  # before and after refresh
    all_fps = [fp for fps in per_user_fps.values() for fp in fps]
    assert len(all_fps) == len(set(all_fps))  # no token used for two users
    first.close()


def refuse_all(req: Any) -> str:
    raise AssertionError("the first connection never queries")


def test_cached_rows_are_never_served_across_users(env: Env) -> None:
    cfg = env.toml(table="cache_ttl = 600\n", page_size=10)
    conn = env.connect(cfg, user="alice", consent=walker())
    alice = sorted(conn.execute(sql("incidents")).fetchall())
    assert owners(alice) == {"alice"}
    n = len(env.api.requests)
    assert sorted(conn.execute(sql("incidents")).fetchall()) == alice
    assert len(env.api.requests) == n and conn.last_stats["cache_hits"] == 1  # alice: cached

    conn.execute("SELECT set_user('bob')")
    bob = sorted(conn.execute(sql("incidents")).fetchall())
    assert owners(bob) == {"bob"} and len(env.api.requests) > n  # bob: from the API
    assert conn.last_stats["cache_hits"] == 0
    cache = conn.execute("SELECT remotetables_cache()").fetchone()[0]
    assert "user:bob" in cache and "user:alice" not in cache

    # another connection of the same runtime (a pool): the cache is shared, rows are not
    other = remotetables.connect(":memory:", runtime=conn.runtime, user="carol", consent=walker())
    n = len(env.api.requests)
    carol = sorted(other.execute(sql("incidents")).fetchall())
    assert owners(carol) == {"carol"} and len(env.api.requests) > n
    other.execute("SELECT set_user('alice')")
    n = len(env.api.requests)
    assert sorted(other.execute(sql("incidents")).fetchall()) == alice
    assert len(env.api.requests) == n  # alice's own cached rows
    # a narrower query of bob is answered from bob's cached scan, never alice's
    conn.execute("SELECT set_user('bob')")
    rows = conn.execute(sql("incidents") + " WHERE assigned_to = 'bob'").fetchall()
    assert sorted(rows) == bob
    for r in env.api.requests:
        assert issued(env)[r.token_fp or ""] == r.user
    # clearing the cache clears the session user's entries only: alice's stay
    assert conn.execute("SELECT remotetables_cache_clear()").fetchone() == (1,)
    n = len(env.api.requests)
    assert sorted(other.execute(sql("incidents")).fetchall()) == alice
    assert len(env.api.requests) == n and other.last_stats["cache_hits"] == 1
    other.close()
    conn.close()
