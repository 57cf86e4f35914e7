"""connect(access_tokens=...): an access token a BI server obtained itself (Superset's OAuth2
flow) is used for its user only, never stored, never refreshed; a 401 fails the query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import remotetables
from remotetables.auth.store import MemoryTokenStore
from remotetables.demo.api.server import IncidentsAPI
from tests.test_writes import make_rows, table_toml

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


@pytest.fixture
def api() -> Iterator[IncidentsAPI]:
    with IncidentsAPI({"incidents": make_rows()}, static_tokens=TOKENS) as server:
        yield server


@pytest.fixture
def config(api: IncidentsAPI, write_config: Callable[..., Path]) -> Path:
    # endpoints on a closed loopback port: a handed-in token needs no authorization server
    text = (
        '[providers.demo]\nclient_id = "c"\nauthorization_endpoint = "http://127.0.0.1:9/a"\n'
        'token_endpoint = "http://127.0.0.1:9/t"\n[providers.key]\nauth = "bearer"\n'
        'token_env = "KEY"\n'
    )
    return write_config(text + table_toml("inc", api.base_url, None))


def _ids(conn: remotetables.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT sys_id FROM inc ORDER BY sys_id")]


def test_the_handed_token_is_used_for_its_user_only(api: IncidentsAPI, config: Path) -> None:
    store = MemoryTokenStore()
    with remotetables.connect(
        ":memory:",
        config,
        user="alice",
        access_tokens={"demo": "tok-alice"},
        consent="raise",
        token_store=store,
    ) as conn:
        assert _ids(conn) == ["a1", "a2", "a3", "a4", "s1"]
        assert {r.user for r in api.requests} == {"alice"}
        # another user on the same connection does not get alice's token: no grant, consent
        conn.set_user("bob")
        with pytest.raises(remotetables.ConsentRequired) as info:
            _ids(conn)
        assert info.value.user == "bob"
        # and alice's cached rows are not bob's either
        assert {r.user for r in api.requests} == {"alice"}
    assert store.list() == []  # never stored


def test_a_refused_handed_token_fails_the_query(api: IncidentsAPI, config: Path) -> None:
    with (
        remotetables.connect(
            ":memory:", config, user="alice", access_tokens={"demo": "stale"}, consent="raise"
        ) as conn,
        pytest.raises(remotetables.RemoteError) as info,
    ):
        _ids(conn)
    assert info.value.status_code == 401
    assert "the access token the application handed in for user alice was refused" in str(
        info.value
    )
    assert "stale" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"access_tokens": {"demo": "t"}}, "needs user="),
        ({"user": "a", "access_tokens": {"nope": "t"}}, "'nope' is not a provider"),
        ({"user": "a", "access_tokens": {"key": "t"}}, "'key' is not a provider with personal"),
        ({"user": "a", "access_tokens": {"demo": ""}}, "the token for demo is empty"),
    ],
)
def test_bad_access_tokens_are_refused(
    config: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(remotetables.ProgrammingError, match=message):
        remotetables.connect(":memory:", config, **kwargs)  # type: ignore[arg-type]


def test_a_bad_handed_token_never_reads_rows_cached_with_another_token(
    api: IncidentsAPI, config: Path
) -> None:
    """Two connections of one runtime (a pool) for alice: rows cached with the good token must
    not answer the one whose handed-in token the API refuses (its query fails with the 401),
    and the good one's cached rows stay its own."""
    good = remotetables.connect(
        ":memory:", config, user="alice", access_tokens={"demo": "tok-alice"}, consent="raise"
    )
    try:
        assert _ids(good) == ["a1", "a2", "a3", "a4", "s1"]
        bad = remotetables.connect(
            ":memory:",
            config,
            user="alice",
            access_tokens={"demo": "BAD-TOKEN"},
            consent="raise",
            runtime=good.runtime,
        )
        try:
            with pytest.raises(remotetables.RemoteError) as info:
                _ids(bad)
            assert info.value.status_code == 401
            assert "BAD-TOKEN" not in str(info.value)
            cache = bad.execute("SELECT remotetables_cache()").fetchone()[0]
            assert "BAD-TOKEN" not in cache and "tok-alice" not in cache
        finally:
            bad.close()
        api.clear_requests()
        assert _ids(good) == ["a1", "a2", "a3", "a4", "s1"]  # still from the cache
        assert api.requests == []
        entries = good.execute("SELECT remotetables_cache()").fetchone()[0]
        assert "user:alice#handed:" in entries and "tok-alice" not in entries
    finally:
        good.close()
