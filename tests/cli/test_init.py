"""`remotetables init SERVICE`: every preset, written by the CLI, runs against a loopback mock
of its service built from the public docs (tests/servers/services.py): the README's example
query for it, and every table, with the service's paging quirks, rate limits and errors.

The test points the preset's API origin at the mock and stores a token for the user, as
`remotetables login` would; nothing else of the preset is changed (but a smaller page size
where a quirk shows only across pages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import remotetables
from remotetables.auth.service import SYSTEM_SUBJECT
from remotetables.auth.store import MemoryTokenStore, TokenSet
from remotetables.cli.init import PRESETS
from remotetables.cli.main import main
from tests.conftest import ROOT
from tests.servers import services


@dataclass
class Case:
    mock: Callable[[], services.Service]
    origin: str  # the preset's API origin, pointed at the mock
    example: str  # the README's example query
    expect: Callable[[list[tuple[Any, ...]]], bool]
    swap: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)


CASES = {
    "servicenow": Case(
        services.ServiceNow,
        "https://YOUR_INSTANCE.service-now.com",
        "SELECT number, short_description, priority FROM incident WHERE state = 1 AND active = 1",
        lambda rows: len(rows) > 0 and all(r[0].startswith("INC") for r in rows),
        swap={"max_page_size = 1000": "max_page_size = 5"},
    ),
    "github": Case(
        services.GitHub,
        "https://api.github.com",
        "SELECT full_name, stargazers_count FROM github_repos ORDER BY stargazers_count DESC LIMIT 5",
        lambda rows: [r[1] for r in rows] == [18, 15, 12, 9, 6],
        swap={"max_page_size = 100": "max_page_size = 10"},
    ),
    "jira": Case(
        services.Jira,
        "https://api.atlassian.com",
        "SELECT key, summary, status FROM jira_issues WHERE jql = 'project = ABC ORDER BY key'",
        lambda rows: len(rows) == 15 and all(r[0].startswith("ABC-") for r in rows),
        swap={"max_page_size = 100": "max_page_size = 10"},
    ),
    "msgraph": Case(
        services.Graph,
        "https://graph.microsoft.com",
        "SELECT display_name, mail FROM graph_users WHERE department = 'Sales'",
        lambda rows: len(rows) == 12,
        swap={"max_page_size = 999": "max_page_size = 10"},
    ),
    "google_calendar": Case(
        services.Calendar,
        "https://www.googleapis.com",
        "SELECT summary, start_time FROM calendar_events ORDER BY start_time",
        lambda rows: len(rows) == 9,
        swap={"max_page_size = 2500": "max_page_size = 4"},
    ),
    "slack": Case(
        services.Slack,
        "https://slack.com",
        "SELECT name, members FROM slack_conversations WHERE is_private = 0 ORDER BY members DESC",
        lambda rows: len(rows) == 8 and rows[0] == ("chan-9", 11),
        swap={"max_page_size = 200": "max_page_size = 4"},
    ),
    "stripe": Case(
        services.Stripe,
        "https://api.stripe.com",
        "SELECT id, amount, currency FROM stripe_charges WHERE customer = 'cus_00001'",
        lambda rows: [r[0] for r in rows] == ["ch_00001", "ch_00004", "ch_00007"],
        swap={"max_page_size = 100": "max_page_size = 3"},
        environ={"STRIPE_API_KEY": "sk_test_mock"},
    ),
}

# rows each table has in its mock (ServiceNow: 2 of 23 hidden by ACLs on the first page)
TABLE_ROWS = {
    "incident": 21, "problem": 21, "change_request": 21, "sys_user": 21, "task": 21,
    "github_repos": 7, "github_issues": 45, "github_pulls": 12, "github_commits": 9,
    "jira_projects": 60, "graph_users": 25, "graph_groups": 4, "graph_messages": 12,
    "graph_events": 7, "calendar_events": 9, "slack_conversations": 11, "slack_users": 6,
    "stripe_customers": 14, "stripe_charges": 8,
}  # fmt: skip


# what `remotetables login` would need in the environment (never written in a preset)
SECRETS = {f"{n}_CLIENT_SECRET": "not-a-real-secret" for n in
           ("SERVICENOW", "GITHUB", "JIRA", "GOOGLE", "SLACK")}  # fmt: skip


def test_every_preset_has_a_case() -> None:
    assert set(CASES) == set(PRESETS)


def test_init_list() -> None:
    result = CliRunner().invoke(main, ["init", "--list"])
    assert result.exit_code == 0
    for name in PRESETS:
        assert name in result.output


def test_init_refuses_to_overwrite_and_unknown_services(tmp_path: Path) -> None:
    out = tmp_path / "remotetables.toml"
    out.write_text("# mine\n")
    result = CliRunner().invoke(main, ["init", "github", "--out", str(out)])
    assert result.exit_code != 0 and "exists" in result.output and out.read_text() == "# mine\n"
    result = CliRunner().invoke(main, ["init", "myspace", "--out", str(out)])
    assert result.exit_code != 0 and "no preset for 'myspace'" in result.output


def test_presets_hold_no_secret_and_say_where_to_register() -> None:
    from remotetables.cli.init import preset_text

    for name in PRESETS:
        text = preset_text(name)
        assert "client_secret =" not in text and "token =" not in text
        assert "https://" in text.split("[providers.")[0]  # the comments link the docs/console


def test_readme_lists_every_preset_with_its_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "remotetables init --list" in readme
    for name, case in CASES.items():
        assert f"remotetables init {name}" in readme, name
        assert case.example in readme, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_preset_runs_against_its_mock(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    out = tmp_path / f"{name}.toml"
    result = CliRunner().invoke(main, ["init", name, "--out", str(out)])
    assert result.exit_code == 0, result.output
    mock = case.mock()
    slept: list[float] = []
    with services.serve(mock) as base:
        text = out.read_text(encoding="utf-8").replace(case.origin, base)
        for old, new in case.swap.items():
            assert old in text
            text = text.replace(old, new)
        out.write_text(text, encoding="utf-8")
        store = MemoryTokenStore()
        with remotetables.connect(
            ":memory:", out, user="alice", token_store=store, environ={**SECRETS, **case.environ},
            sleep=slept.append,
        ) as conn:  # fmt: skip
            cfg = conn.runtime.config
            for provider in cfg.providers.values():
                if provider.auth == "oauth":
                    who = SYSTEM_SUBJECT if provider.integration == "system" else "alice"
                    key = conn.runtime.oauth_service().key(provider, who)
                    token = "tok-system" if who == SYSTEM_SUBJECT else "tok-alice"
                    store.put(key, TokenSet(token, None, expires_at=conn.runtime.clock() + 3600),
                              now=conn.runtime.clock())  # fmt: skip
            rows = conn.execute(case.example).fetchall()
            assert case.expect(rows), rows
            for table, spec in cfg.tables.items():
                if any(c.required for c in spec.columns if not c.path_param):
                    continue  # needs a WHERE: the example covers it
                where = " AND ".join(f"{c.name} = 'acme'" if c.name == "owner" else
                                     f"{c.name} = 'widgets'" for c in spec.columns if c.path_param)  # fmt: skip
                got = conn.execute(
                    f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
                ).fetchall()
                assert len(got) == TABLE_ROWS[table], table
                keys = [r[spec.column_index(spec.key)] for r in got] if spec.key else []
                assert len(keys) == len(set(keys)), f"{table}: a row came twice"
    if name in ("msgraph", "slack"):  # throttled once: waited the Retry-After
        assert sum(slept) >= 1
    if name == "google_calendar":  # 403 rateLimitExceeded: backed off, not a permission error
        assert slept


@pytest.mark.parametrize(
    ("name", "query", "said"),
    [
        ("slack", "SELECT name FROM slack_users", 'says error: "invalid_auth"'),
        ("stripe", "SELECT id FROM stripe_customers", "HTTP 401: Invalid API Key provided"),
    ],
)
def test_preset_errors_quote_the_service(name: str, query: str, said: str, tmp_path: Path) -> None:
    """A refused token fails the query with the service's own words (Slack's are a 200 with
    ``ok: false``)."""
    case = CASES[name]
    out = tmp_path / f"{name}.toml"
    assert CliRunner().invoke(main, ["init", name, "--out", str(out)]).exit_code == 0
    mock = case.mock()
    mock.once.update({"ratelimited", "429", "throttle", "rate"})  # no rate limit this time
    with services.serve(mock) as base:
        out.write_text(out.read_text(encoding="utf-8").replace(case.origin, base), encoding="utf-8")
        store = MemoryTokenStore()
        environ = {**SECRETS, "STRIPE_API_KEY": "sk_test_wrong"}
        with remotetables.connect(":memory:", out, user="alice", token_store=store,
                                  environ=environ) as conn:  # fmt: skip
            for provider in conn.runtime.config.providers.values():
                if provider.auth == "oauth":
                    who = SYSTEM_SUBJECT if provider.integration == "system" else "alice"
                    key = conn.runtime.oauth_service().key(provider, who)
                    store.put(key, TokenSet("-", None, expires_at=conn.runtime.clock() + 3600),
                              now=conn.runtime.clock())  # fmt: skip
            with pytest.raises(remotetables.RemoteError) as info:
                conn.execute(query).fetchall()
    assert said in str(info.value), str(info.value)
