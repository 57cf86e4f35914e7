"""Every file in sql_examples/ runs against the project's loopback test API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

import remotetables
from remotetables.demo.api.server import IncidentsAPI
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "sql_examples").glob("*.sql"))
PLACEHOLDER = "http://127.0.0.1:8766"


def statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if apsw.complete(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    assert not buf.strip(), "trailing incomplete statement"
    return out


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3
    for sql in EXAMPLES:
        assert sql.with_suffix(".toml").exists(), f"{sql.name} has no config beside it"


@pytest.mark.parametrize("sql_file", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(sql_file: Path, api: IncidentsAPI, write_config: Callable[..., Path]) -> None:
    toml = sql_file.with_suffix(".toml").read_text(encoding="utf-8")
    assert PLACEHOLDER in toml
    config = write_config(toml.replace(PLACEHOLDER, api.base_url))
    with remotetables.connect(":memory:", config) as conn:
        selects = 0
        for stmt in statements(sql_file.read_text(encoding="utf-8")):
            cur = conn.execute(stmt)
            rows = cur.fetchall()
            if stmt.lstrip().upper().startswith(("SELECT", "WITH")) or "\nSELECT" in stmt:
                selects += 1
                assert rows, f"no rows from:\n{stmt}"
                for i, col in enumerate(cur.description or ()):
                    assert any(r[i] is not None for r in rows), (
                        f"column {col[0]} is always NULL in:\n{stmt}"
                    )
        assert selects >= 1
