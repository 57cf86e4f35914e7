"""`remotetables check` reaches every table's API: one cheap request each, reported per table,
a token only where the config holds one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click.testing
import pytest
from click.testing import CliRunner

from remotetables.cli import main
from remotetables.demo.api.server import IncidentsAPI, token_fingerprint
from remotetables.demo.authserver.server import DemoAuthServer
from tests.conftest import incidents_table

TOKEN = "check-token-0123456789"


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., click.testing.Result]:
    env = {
        "REMOTETABLES_NO_KEYRING": "1",
        "REMOTETABLES_TOKEN_STORE": str(tmp_path / "env-tokens.db"),
        "REMOTETABLES_KEY_FILE": str(tmp_path / "env-token.key"),
        "REMOTETABLES_CONFIG": "",
        "CHECK_TOKEN": TOKEN,
        "WRONG_TOKEN": "not-a-token-of-this-api",
    }

    def invoke(*args: str) -> click.testing.Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def _gone_base() -> str:
    with IncidentsAPI(n_rows=1) as api:
        return api.base_url  # nothing listens there once stopped


def _line(output: str, prefix: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(prefix))


def test_a_public_table_whose_api_is_down_is_a_problem(
    run: Callable[..., click.testing.Result],
    write_config: Callable[..., Path],
    fresh_api: IncidentsAPI,
) -> None:
    config = write_config(
        incidents_table("up", "link", fresh_api.base_url)
        + incidents_table("down", "cursor", _gone_base())
    )
    result = run("check", "-c", str(config))
    assert result.exit_code == 1, result.output
    up = _line(result.output, "table up: ")
    assert up.startswith("table up: ok: GET http://127.0.0.1:") and up.endswith("answered 200")
    down = _line(result.output, "table down: ")
    assert down.startswith("table down: PROBLEM: cannot reach the API: no answer from")
    assert "connection failed" in down and "attempt" not in down  # asked once, no retries
    assert "1 table with a problem" in result.output and "all good" not in result.output
    # one cheap request: a page of one row, no token (none is configured), no retries
    (seen,) = fresh_api.requests
    assert seen.query.get("limit") == ["1"]
    assert seen.token_fp is None and "authorization" not in seen.header_names


def test_all_good_only_when_every_table_answers(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path], api: IncidentsAPI
) -> None:
    config = write_config(incidents_table("incidents", "offset", api.base_url))
    result = run("check", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "table incidents: ok" in result.output and result.output.endswith("all good\n")


def test_a_bearer_table_is_asked_with_its_token_and_a_refusal_is_a_problem(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path]
) -> None:
    with IncidentsAPI(n_rows=5, static_tokens={TOKEN: "alice"}) as api:
        provider = '[providers.key]\nauth = "bearer"\ntoken_env = "{env}"\n'
        table = incidents_table("incidents", "link", api.base_url).replace(
            "[tables.incidents]\n", '[tables.incidents]\nprovider = "key"\n'
        )
        good = run("check", "-c", str(write_config(provider + table, env="CHECK_TOKEN")))
        assert good.exit_code == 0, good.output
        line = _line(good.output, "table incidents: ")
        assert "with the token from $CHECK_TOKEN answered 200" in line
        assert api.requests[-1].token_fp == token_fingerprint(TOKEN)

        wrong = write_config(provider + table, env="WRONG_TOKEN")
        bad = run("check", "-c", str(wrong))
        assert bad.exit_code == 1
        line = _line(bad.output, "table incidents: ")
        assert line.startswith("table incidents: PROBLEM: GET http://127.0.0.1:")
        assert "HTTP 401" in line
        assert "the static token from environment variable WRONG_TOKEN was refused" in line
    assert TOKEN not in good.output + bad.output and "not-a-token" not in bad.output


def test_an_oauth_table_is_asked_without_a_token(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    with (
        DemoAuthServer() as srv,
        IncidentsAPI(n_rows=5, token_validator=srv.validate_token) as api,
    ):
        up = incidents_table("incidents", "link", api.base_url)
        down = incidents_table("gone", "link", _gone_base())
        config = write_config(
            f'[settings]\ntoken_store = "{tmp_path}/t.db"\nkey_file = "{tmp_path}/t.key"\n'
            f'[providers.demo]\nissuer = "{srv.issuer}"\nclient_id = "remotetables-demo"\n'
            + up
            + down
        )
        result = run("check", "-c", str(config))
        (seen,) = api.requests
    assert result.exit_code == 1, result.output
    assert "provider demo: ok" in result.output
    line = _line(result.output, "table incidents: ")
    assert line == (
        "table incidents: ok: the API answers (401 without a token, as expected: queries send "
        "each user's token)"
    )
    assert seen.token_fp is None and seen.status == 401
    assert _line(result.output, "table gone: ").startswith("table gone: PROBLEM: cannot reach")


@pytest.mark.parametrize("required", [False, True])
def test_a_4xx_is_a_problem_unless_the_table_needs_a_where(
    run: Callable[..., click.testing.Result],
    write_config: Callable[..., Path],
    api: IncidentsAPI,
    required: bool,
) -> None:
    """The GitHub-shaped list answers 422 to a state it does not know (as GitHub does)."""
    number = '{ type = "INTEGER", param = "number", required = true }' if required else '"INTEGER"'
    config = write_config(
        f"""
        [tables.issues]
        url = "{api.base_url}/repos/acme/widgets/issues"
        rows = ""
        pagination = "link"
        page_size_param = "per_page"
        params = {{ state = "bogus" }}
        [tables.issues.columns]
        number = {number}
        title = "TEXT"
        """
    )
    result = run("check", "-c", str(config))
    line = _line(result.output, "table issues: ")
    if required:
        assert result.exit_code == 0, result.output
        assert line == (
            "table issues: ok: the API answers (422 without the required number: queries "
            "must give WHERE number = ...)"
        )
    else:
        assert result.exit_code == 1
        assert line.startswith("table issues: PROBLEM: GET ") and "HTTP 422" in line
        assert "state must be open, closed or all" in line  # the API's own message


def test_a_table_with_path_parameters_is_not_probed_with_its_placeholders(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path]
) -> None:
    from tests.conftest import ROOT
    from tests.servers.mockapi import GitHubIssues, LoopbackAPI

    toml = (ROOT / "sql_examples" / "github_repos.toml").read_text(encoding="utf-8")
    with LoopbackAPI(GitHubIssues()) as api:
        config = write_config(toml.replace("http://127.0.0.1:8766", api.base_url))
        result = run("check", "-c", str(config))
        targets = list(api.targets)
    assert result.exit_code == 0, result.output
    line = _line(result.output, "table gh_issues: ")
    assert line == (
        "table gh_issues: ok: not probed: its URL needs owner, repo (queries must give "
        "WHERE owner = ... AND repo = ...)"
    )
    assert all("{" not in t and "%7B" not in t for t in targets)  # no request with a placeholder
