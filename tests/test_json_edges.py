"""Answers at the edges of JSON (numbers beyond a double's range, lone surrogates, -0.0), read
fresh and from pages kept for revalidation, the same on the fast and the general path
(tests/servers/conditional.py, its pages sent as given)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.errors import RemoteProtocolError
from remotetables.http.response import loads_json
from tests.servers.conditional import Connections, State, Ticks, serve


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture(params=["on", "off"])
def connect(
    request: pytest.FixtureRequest, write_config: Callable[..., Path], ticks: Ticks
) -> Iterator[Callable[..., remotetables.Connection]]:
    columns = 'score = "REAL"\ntags = "JSON"'
    environ = {"REMOTETABLES_FAST_PATH": request.param}
    connections = Connections(write_config, ticks, columns=columns, environ=environ)
    yield connections
    connections.close()


def rows(conn: remotetables.Connection, sql: str = "SELECT id, name, score FROM items") -> Any:
    return conn.execute(sql).fetchall()


INF = float("inf")


@pytest.mark.parametrize(
    "sql", ["SELECT id, name, score FROM items", "SELECT id, score FROM items"]
)
def test_a_kept_page_with_a_number_beyond_a_double_reads_the_same_after_a_304(
    connect: Callable[..., remotetables.Connection], ticks: Ticks, sql: str
) -> None:
    """1e999 reads as Inf (as SQLite reads it) from the 200; the page kept for revalidation
    must give Inf again after a 304, not NULL (orjson.dumps writes inf as null)."""
    state = State(n_rows=2, per_page=5)
    state.raw[1] = (
        b'[{"id": 1, "name": "a", "score": 1e999}, {"id": 2, "name": "b", "score": -1e400}]'
    )
    with serve(state) as base:
        conn = connect(base)
        first = rows(conn, sql)
        assert [r[-1] for r in first] == [INF, -INF]
        ticks.t += 31
        del state.log[:]
        again = rows(conn, sql)
        assert [r.status for r in state.log] == [304]
    assert again == first


def test_a_lone_surrogate_is_refused_after_a_number_beyond_a_double_too(
    connect: Callable[..., remotetables.Connection],
) -> None:
    """orjson refuses an escaped lone surrogate (as the fast path does); the standard library
    reads it. A page with 1e999 before it was read again by the standard library, and the
    lone surrogate got through (a str SQLite cannot take) instead of the page's refusal."""
    state = State(n_rows=2, per_page=5)
    body = b'[{"id": 1, "name": "a", "score": 1e999}, {"id": 2, "name": "\\ud800", "score": 1}]'
    state.raw[1] = body
    with serve(state) as base:
        conn = connect(base, ttl=0)
        with pytest.raises(RemoteProtocolError, match="not valid JSON"):
            rows(conn)
        with pytest.raises(RemoteProtocolError, match="not valid JSON"):
            rows(conn, "SELECT id FROM items")


@pytest.mark.parametrize(
    "doc",
    [b'[1e999, "\\ud800"]', b'[1e999, {"\\udfff": 1}]', b'[1e999, "\\udc00\\ud800"]'],
)
def test_loads_json_refuses_lone_surrogates_after_a_number_beyond_a_double(doc: bytes) -> None:
    import orjson

    with pytest.raises(orjson.JSONDecodeError):
        loads_json(doc)


@pytest.mark.parametrize(
    "sql", ["SELECT tags FROM items", "SELECT id, name, score, tags FROM items"]
)
def test_a_json_column_keeps_a_number_beyond_a_double(
    connect: Callable[..., remotetables.Connection], sql: str
) -> None:
    """A JSON column holding 1e999: native SQLite keeps it (json_extract reads Inf, json()
    writes 9.0e+999 for Inf); orjson.dumps wrote the Inf loads_json read as null."""
    state = State(n_rows=2, per_page=5)
    state.raw[1] = b'[{"id": 1, "tags": {"x": 1e999, "y": [-1e400, 2]}}, {"id": 2, "tags": 1e999}]'
    with serve(state) as base:
        conn = connect(base, ttl=0)
        got = [r[-1] for r in rows(conn, sql)]
        assert got == ['{"x":9.0e+999,"y":[-9.0e+999,2]}', "9.0e+999"]
        extracted = rows(
            conn, "SELECT json_extract(tags, '$.x'), json_extract(tags, '$.y[0]') FROM items"
        )
        assert extracted[0] == (INF, -INF)
        native = conn.execute("SELECT json(?)", ('{"x": 1e999, "y": [-1e400, 2]}',)).fetchone()[0]
        assert conn.execute("SELECT json(?)", (got[0],)).fetchone()[0] == native.replace(
            "1e999", "9.0e+999"
        ).replace("-1e400", "-9.0e+999")


@pytest.mark.parametrize("ttl", [0, 30])
@pytest.mark.parametrize(
    "sql", ["SELECT score FROM items", "SELECT id, name, score, tags FROM items"]
)
def test_a_real_column_holds_0_for_negative_zero(
    connect: Callable[..., remotetables.Connection], sql: str, ttl: int
) -> None:
    """SQLite stores -0.0 in a REAL column as 0 (it reads back 0.0); the general builder adds
    0.0. msgspec kept the sign: the fast path gave -0.0 (-0.0, -0e5, -1e-999 underflowing)."""
    state = State(n_rows=4, per_page=5)
    state.raw[1] = (
        b'[{"id": 1, "score": -0.0}, {"id": 2, "score": -0e5}, {"id": 3, "score": -1e-999}, {"id": 4, "score": -0}]'
    )
    with serve(state) as base:
        conn = connect(base, ttl=ttl)
        got = [r[-1] if "tags" not in sql else r[2] for r in rows(conn, sql)]
    assert [math.copysign(1.0, v) for v in got] == [1.0, 1.0, 1.0, 1.0]
