"""Every file in sql_examples/ runs against the project's loopback test API, and the way the
README runs them works: `remotetables demo --serve` serves that API, `remotetables shell` runs
each script and fails when a statement fails. A config shaped for a real service runs against
a loopback mock of that service (tests/servers/mockapi.py; POST search and GraphQL listings:
tests/servers/listings.py) instead."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

import remotetables
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.run import EXAMPLES_PORT
from tests.conftest import ROOT
from tests.servers import listings
from tests.servers.mockapi import GitHubIssues, LoopbackAPI
from tests.servers.querymocks import JiraSearch, ODataTickets, ServiceNowTable

EXAMPLES = sorted((ROOT / "sql_examples").glob("*.sql"))
PLACEHOLDER = "http://127.0.0.1:8766"
# example -> the mock of the real service it is shaped for (not served by `demo --serve`)
MOCKS: dict[str, Any] = {
    "github_repos": GitHubIssues,
    "servicenow_query": ServiceNowTable,
    "graph_odata": ODataTickets,
    "jira_jql": JiraSearch,
}
OWN_MOCKS: dict[str, Any] = {
    "jira_search": listings.JiraSearch,
    "github_graphql": listings.GitHubGraphQL,
}
DEMO_EXAMPLES = [p for p in EXAMPLES if p.stem not in MOCKS and p.stem not in OWN_MOCKS]


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
    if sql_file.stem in OWN_MOCKS:  # POST and GraphQL listings: mocks with their own server
        with listings.serve(OWN_MOCKS[sql_file.stem]()) as base:
            _run_example(sql_file, write_config(toml.replace(PLACEHOLDER, base)))
        return
    mock = LoopbackAPI(MOCKS[sql_file.stem]()) if sql_file.stem in MOCKS else None
    base = api.base_url if mock is None else mock.base_url
    config = write_config(toml.replace(PLACEHOLDER, base))
    try:
        _run_example(sql_file, config)
    finally:
        if mock is not None:
            mock.close()


def _run_example(sql_file: Path, config: Path) -> None:
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


def test_the_examples_point_where_demo_serve_serves_them() -> None:
    assert f"http://127.0.0.1:{EXAMPLES_PORT}" == PLACEHOLDER
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "remotetables demo --serve" in readme
    for sql in DEMO_EXAMPLES:  # the README says how to run each one
        command = f"remotetables shell {sql.stem}.db -c sql_examples/{sql.stem}.toml < sql_examples/{sql.name}"
        assert command in readme, f"README does not say how to run {sql.name}"


def test_demo_serve_serves_the_examples_api_and_the_shell_runs_them(tmp_path: Path) -> None:
    """The README's way, in real processes: `demo --serve` in one, `shell ... < file.sql` in
    others (on any free port here: 8766 may be taken on a shared machine)."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "remotetables", "demo", "--serve", "--dir",
         str(tmp_path / "demo"), "--examples-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        head = ""
        for line in serve.stdout:
            head += line
            if line.startswith("Tokens from"):
                break
        found = re.search(r"sql_examples API +(http://127\.0\.0\.1:\d+) ", head)
        assert found, head
        for sql in DEMO_EXAMPLES:
            toml = sql.with_suffix(".toml").read_text(encoding="utf-8")
            config = tmp_path / sql.with_suffix(".toml").name
            config.write_text(toml.replace(PLACEHOLDER, found.group(1)), encoding="utf-8")
            with sql.open(encoding="utf-8") as script:
                ran = subprocess.run(
                    [sys.executable, "-m", "remotetables", "shell", str(tmp_path / f"{sql.stem}.db"),
                     "-c", str(config)],
                    stdin=script, capture_output=True, text=True, timeout=120,
                    env={**os.environ, "REMOTETABLES_NO_KEYRING": "1"},
                )  # fmt: skip
            assert ran.returncode == 0, ran.stderr
            assert ran.stderr == "" and len(ran.stdout.splitlines()) >= 2
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
        if serve.stdout is not None:
            serve.stdout.close()
    assert serve.returncode == 0


def test_demo_serve_says_when_the_examples_port_is_taken(tmp_path: Path) -> None:
    from remotetables.demo.run import Demo

    with (
        IncidentsAPI(n_rows=1) as squatter,
        Demo(tmp_path, n_rows=5, examples_port=squatter.port) as demo,
    ):
        assert demo.examples_api is None
        assert demo.examples_problem is not None
        assert f"cannot listen on 127.0.0.1:{squatter.port}" in demo.examples_problem
        assert "another `remotetables demo --serve`" in demo.examples_problem
        # the demo itself still runs
        assert demo.api.base_url.startswith("http://127.0.0.1:")
