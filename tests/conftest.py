"""Shared fixtures: loopback servers (the project's test API, the demo authorization server,
django-oauth-toolkit) and small helpers to write configs."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remotetables.demo.api.server import IncidentsAPI

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def api() -> Iterator[IncidentsAPI]:
    """The project's test API, no auth, 250 incidents; shared: do not add faults here."""
    with IncidentsAPI(n_rows=250, seed=7) as server:
        yield server


@pytest.fixture
def fresh_api() -> Iterator[IncidentsAPI]:
    """A private test API for tests that inject faults or read the request log."""
    with IncidentsAPI(n_rows=250, seed=7) as server:
        yield server


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(text, **fmt)`` writes a dedented TOML file and returns its path."""
    counter = iter(range(10_000))

    def write(text: str, **fmt: Any) -> Path:
        path = tmp_path / f"remotetables-{next(counter)}.toml"
        body = textwrap.dedent(text)
        for key, value in fmt.items():
            body = body.replace("{" + key + "}", str(value))
        path.write_text(body, encoding="utf-8")
        return path

    return write


INCIDENT_COLUMNS = """
    [tables.{name}.columns]
    sys_id = "TEXT"
    number = "TEXT"
    short_description = "TEXT"
    state = { type = "TEXT", param = "state" }
    priority = { type = "INTEGER", param = "priority" }
    assigned_to = { type = "TEXT", param = "assigned_to" }
    opened_at = "TEXT"
    reopen_count = "INTEGER"
    active = "BOOLEAN"
    caller_name = { type = "TEXT", path = "caller.name" }
    tags = "JSON"
    score = "REAL"
"""

STYLE_TABLES = {
    "link": 'url = "{base}/styles/link/incidents"\nrows = ""\npagination = "link"\npage_size_param = "limit"',
    "next_url": 'url = "{base}/styles/next_url/incidents"\nrows = "data"\npagination = { style = "next_url", next_path = "links.next" }\npage_size_param = "limit"',
    "cursor": 'url = "{base}/styles/cursor/incidents"\nrows = "items"\npagination = { style = "cursor", cursor_path = "next_cursor", cursor_param = "cursor" }\npage_size_param = "limit"',
    "offset": 'url = "{base}/styles/offset/incidents"\nrows = "results"\npagination = { style = "offset", offset_param = "offset", total_path = "total" }\npage_size_param = "limit"',
    "page": 'url = "{base}/styles/page/incidents"\nrows = "rows"\npagination = { style = "page", page_param = "page", total_pages_path = "total_pages" }\npage_size_param = "per_page"',
}


def incidents_table(
    name: str, style: str, base: str, *, max_page_size: int = 40, extra: str = ""
) -> str:
    """TOML for one incidents table in ``style`` against the API at ``base``."""
    head = f"[tables.{name}]\n" + STYLE_TABLES[style].replace("{base}", base)
    head += f"\nmax_page_size = {max_page_size}\n" + extra
    return head + textwrap.dedent(INCIDENT_COLUMNS).replace("{name}", name)


@pytest.fixture
def open_conn(write_config: Callable[..., Path]) -> Iterator[Callable[..., Any]]:
    """``open_conn(toml, db=":memory:", **connect_kwargs)``: a connection closed at teardown."""
    import remotetables

    conns: list[remotetables.Connection] = []

    def make(toml: str, db: str = ":memory:", **kw: Any) -> remotetables.Connection:
        kw.setdefault("sleep", lambda s: None)
        conn = remotetables.connect(db, write_config(toml), **kw)
        conns.append(conn)
        return conn

    yield make
    for conn in conns:
        conn.close()


@pytest.fixture(scope="session")
def dot() -> Iterator[Any]:
    """django-oauth-toolkit on loopback: one per test process (Django settings are global)."""
    from tests.servers.dot_server import DotServer

    with DotServer(access_token_ttl=300) as server:
        yield server


# Hypothesis profiles: "ci" (the default: reproducible, bounded) and "long" (many more random
# examples, run with `pytest --hypothesis-profile=long tests/oracle`).
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=1500,
    derandomize=False,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=12)
settings.load_profile("ci")
