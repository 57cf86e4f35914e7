"""Conditional requests (tests/servers/conditional.py): pages kept with their ETag /
Last-Modified, revalidated after cache_ttl with If-None-Match / If-Modified-Since; a 304 reuses
the rows; per principal, like the row cache. The cache's clock is injected: nothing waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import remotetables
from tests.servers.conditional import Connections, State, Ticks, serve


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def connect(
    write_config: Callable[..., Path], ticks: Ticks
) -> Iterator[Callable[..., remotetables.Connection]]:
    connections = Connections(write_config, ticks)
    yield connections
    connections.close()


def rows(conn: remotetables.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, name FROM items").fetchall()


def stats(conn: remotetables.Connection) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(conn.execute("SELECT remotetables_stats()").fetchone()[0])
    return result


def test_warm_after_ttl_makes_only_conditional_requests_and_reuses_the_rows(
    connect: Callable[..., remotetables.Connection], ticks: Ticks
) -> None:
    state = State(n_rows=12, per_page=5)
    with serve(state) as base:
        conn = connect(base)
        fast = conn.session.runtime.fast_path  # REMOTETABLES_FAST_PATH=off: the general path
        first = rows(conn)
        # the fast path (msgspec) decodes the pages it keeps too: it keeps the bytes as sent
        assert conn.session.last_stats.fast_pages == (3 if fast else 0)
        assert [r[0] for r in first] == list(range(12))
        assert len(state.log) == 3 and all(r.if_none_match is None for r in state.log)
        rows(conn)  # within the TTL: the row cache answers, nothing is sent
        assert len(state.log) == 3 and stats(conn)["cache_hits"] == 1
        ticks.t += 31  # the rows expired
        del state.log[:]
        again = rows(conn)
    assert again == first
    assert [r.status for r in state.log] == [304, 304, 304]
    assert conn.session.last_stats.fast_pages == 0  # kept pages go the general way
    assert all(r.if_none_match and r.if_none_match.startswith('W/"') for r in state.log)
    s = stats(conn)
    assert s["requests"] == 3 and s["revalidated"] == 3 and s["pages"] == 3


def test_a_changed_page_is_fetched_again_and_its_rows_refreshed(
    connect: Callable[..., remotetables.Connection], ticks: Ticks
) -> None:
    state = State(n_rows=12, per_page=5)
    with serve(state) as base:
        conn = connect(base)
        fast = conn.session.runtime.fast_path
        first = rows(conn)
        state.change(7, "renamed", at=state.modified + 60)  # on page 2
        ticks.t += 31
        del state.log[:]
        again = rows(conn)
    assert [r.status for r in state.log] == [304, 200, 304]
    assert again[7] == (7, "renamed") and again[:7] == first[:7] and again[8:] == first[8:]
    assert stats(conn)["revalidated"] == 2
    assert conn.session.last_stats.fast_pages == (1 if fast else 0)  # the page sent again


def test_last_modified_alone_revalidates_with_if_modified_since(
    connect: Callable[..., remotetables.Connection], ticks: Ticks
) -> None:
    state = State(n_rows=8, per_page=5, etags=False)
    with serve(state) as base:
        conn = connect(base)
        first = rows(conn)
        ticks.t += 31
        del state.log[:]
        assert rows(conn) == first
    assert [r.status for r in state.log] == [304, 304]
    assert all(r.if_modified_since and r.if_none_match is None for r in state.log)


def test_a_validator_never_crosses_users(
    connect: Callable[..., remotetables.Connection], ticks: Ticks
) -> None:
    state = State(n_rows=8, per_page=5)
    with serve(state) as base:
        alice = connect(base, user="alice")
        alice_rows = rows(alice)
        ticks.t += 31
        bob = connect(base, user="bob")
        del state.log[:]
        bob_rows = rows(bob)
    assert all(r.token == "tok-bob" and r.if_none_match is None for r in state.log)
    assert [r.status for r in state.log] == [200, 200]
    assert {n.split()[0] for _, n in bob_rows} == {"tok-bob"}
    assert {n.split()[0] for _, n in alice_rows} == {"tok-alice"}


def test_no_conditional_requests_without_a_cache(
    connect: Callable[..., remotetables.Connection],
) -> None:
    state = State(n_rows=8, per_page=5)
    with serve(state) as base:
        conn = connect(base, ttl=0)
        rows(conn)
        rows(conn)
    assert [r.status for r in state.log] == [200, 200, 200, 200]
    assert all(r.if_none_match is None and r.if_modified_since is None for r in state.log)


def test_clearing_the_cache_drops_the_validators(
    connect: Callable[..., remotetables.Connection],
) -> None:
    state = State(n_rows=8, per_page=5)
    with serve(state) as base:
        conn = connect(base)
        rows(conn)
        conn.execute("SELECT remotetables_cache_clear()").fetchall()
        del state.log[:]
        rows(conn)
    assert [r.status for r in state.log] == [200, 200]
    assert all(r.if_none_match is None for r in state.log)
