"""Listings that are not GET with query parameters: POST with a JSON body template (Jira's JQL
search) and GraphQL connections (GitHub v4), against the loopback mocks of
tests/servers/listings.py; and the config checks of config/listing.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import remotetables
from remotetables.config import BodySpec
from remotetables.pagination import fill_body
from tests.conftest import ROOT
from tests.servers.listings import GitHubGraphQL, JiraSearch, serve

PLACEHOLDER = "http://127.0.0.1:8766"


@pytest.fixture
def jira() -> Iterator[tuple[JiraSearch, str]]:
    mock = JiraSearch()
    with serve(mock) as base:
        yield mock, base


@pytest.fixture
def graphql() -> Iterator[tuple[GitHubGraphQL, str]]:
    mock = GitHubGraphQL()
    with serve(mock) as base:
        yield mock, base


def example(name: str, base: str, write_config: Callable[..., Path], **swap: str) -> Path:
    toml = (ROOT / "sql_examples" / f"{name}.toml").read_text(encoding="utf-8")
    for old, new in swap.items():
        assert old in toml
        toml = toml.replace(old, new)
    return write_config(toml.replace(PLACEHOLDER, base))


def test_fill_body_places_types_and_leaves_out() -> None:
    spec = BodySpec({"jql": "{jql}", "maxResults": "{maxResults}", "next": "{cursor}",
                     "fields": ["a", "{extra}"], "literal": "{not a placeholder"})  # fmt: skip
    body = fill_body(spec, [("jql", "project = A"), ("maxResults", "50"), ("other", "x")],
                     {"maxResults": "int"})  # fmt: skip
    assert body == {"jql": "project = A", "maxResults": 50, "fields": ["a"],
                    "literal": "{not a placeholder", "other": "x"}  # fmt: skip
    gql = BodySpec({"query": "q", "variables": {}}, params_at=("variables",), graphql=True)
    body = fill_body(gql, [("first", "5"), ("s", "A"), ("s", "B"), ("ok", "true")],
                     {"first": "int", "ok": "bool"})  # fmt: skip
    assert body == {"query": "q", "variables": {"first": 5, "s": ["A", "B"], "ok": True}}
    assert spec.template["next"] == "{cursor}"  # the template itself is never changed


def test_jira_post_search_pages_with_next_page_token(
    jira: tuple[JiraSearch, str], write_config: Callable[..., Path]
) -> None:
    mock, base = jira
    with remotetables.connect(":memory:", example("jira_search", base, write_config)) as conn:
        rows = conn.execute(
            "SELECT key, status FROM jira_issues WHERE jql = 'project = ABC' "
        ).fetchall()
    assert [k for k, _ in rows] == [i["key"] for i in mock.issues if i["key"].startswith("ABC")]
    assert len(mock.bodies) == 2  # 15 issues, 10 a page
    first, second = mock.bodies
    assert first == {"jql": "project = ABC", "maxResults": 10,
                     "fields": ["summary", "status", "assignee", "created"]}  # fmt: skip
    assert second["nextPageToken"] and {**second, "nextPageToken": None} == {**first,
                                                                           "nextPageToken": None}  # fmt: skip


def test_jira_limit_goes_into_the_body(
    jira: tuple[JiraSearch, str], write_config: Callable[..., Path]
) -> None:
    mock, base = jira
    with remotetables.connect(":memory:", example("jira_search", base, write_config)) as conn:
        rows = conn.execute("SELECT key FROM jira_issues WHERE jql = 'project = ABC' LIMIT 3")
        assert len(rows.fetchall()) == 3
    assert [b["maxResults"] for b in mock.bodies] == [3]


def test_jira_bad_jql_is_an_api_error_quoting_jira(
    jira: tuple[JiraSearch, str], write_config: Callable[..., Path]
) -> None:
    _, base = jira
    cfg = example("jira_search", base, write_config)
    with (
        remotetables.connect(":memory:", cfg) as conn,
        pytest.raises(remotetables.RemoteError) as info,
    ):
        conn.execute("SELECT key FROM jira_issues WHERE jql = 'summary ~ x'").fetchall()
    assert info.value.status_code == 400 and "Error in the JQL Query" in str(info.value)
    assert "table jira_issues" in str(info.value)


def test_jira_429_with_retry_after_is_retried_even_for_post(
    jira: tuple[JiraSearch, str], write_config: Callable[..., Path]
) -> None:
    mock, base = jira
    mock.throttle = 1
    slept: list[float] = []
    cfg = example("jira_search", base, write_config)
    with remotetables.connect(":memory:", cfg, sleep=slept.append) as conn:
        assert conn.execute(
            "SELECT count(*) FROM jira_issues WHERE jql = 'project = XYZ'"
        ).fetchone() == (8,)
    assert 1.9 < sum(slept) < 2.1 and len(mock.bodies) == 2


def test_a_post_that_is_not_idempotent_is_not_sent_twice_on_a_5xx(
    write_config: Callable[..., Path],
) -> None:
    """Without idempotent = true a POST listing fails on a 500 rather than send it again."""

    class Flaky(JiraSearch):
        def post(self, path: str, body: object) -> tuple[int, dict[str, str], object]:
            self.bodies.append(body)
            return 500, {}, {"errorMessages": ["Internal server error"], "errors": {}}

    mock = Flaky()
    with serve(mock) as base:
        cfg = example("jira_search", base, write_config, **{"idempotent = true\n": ""})
        with (
            remotetables.connect(":memory:", cfg, sleep=lambda s: None) as conn,
            pytest.raises(remotetables.RemoteError, match="500"),
        ):
            conn.execute("SELECT key FROM jira_issues WHERE jql = 'project = ABC'").fetchall()
    assert len(mock.bodies) == 1


def test_graphql_connection_pages_with_end_cursor(
    graphql: tuple[GitHubGraphQL, str], write_config: Callable[..., Path]
) -> None:
    mock, base = graphql
    with remotetables.connect(":memory:", example("github_graphql", base, write_config)) as conn:
        closed = conn.execute(
            "SELECT number FROM gh_graphql_issues WHERE state = 'CLOSED'"
        ).fetchall()
        rows = conn.execute("SELECT number, state FROM gh_graphql_issues").fetchall()
        assert [n for n, _ in rows] == list(range(1, 18))
    assert [n for (n,) in closed] == [i["number"] for i in mock.issues if i["state"] == "CLOSED"]
    variables = [b["variables"] for b in mock.bodies]
    assert len(variables) == 2 + 4  # 6 closed ones by 5; then 17 rows by 5
    assert variables[0] == {"owner": "acme", "name": "widgets", "first": 5, "states": "CLOSED"}
    assert variables[2] == {"owner": "acme", "name": "widgets", "first": 5}
    assert all(v["first"] == 5 and v.get("after") for v in (variables[1], *variables[3:]))
    assert all("pageInfo" in b["query"] for b in mock.bodies)


@pytest.mark.parametrize(
    ("swap", "expected"),
    [
        ({'name = "widgets"': 'name = "gadgets"'},
         "NOT_FOUND: Could not resolve to a Repository with the name 'acme/gadgets'"),
        ({"max_page_size = 5": "max_page_size = 500"},
         "MISSING_PAGINATION_BOUNDARIES: You must provide a `first`"),
    ],
    ids=["not-found", "bad-first"],
)  # fmt: skip
def test_graphql_errors_are_api_errors(
    graphql: tuple[GitHubGraphQL, str],
    write_config: Callable[..., Path],
    swap: dict[str, str],
    expected: str,
) -> None:
    _, base = graphql
    cfg = example("github_graphql", base, write_config, **swap)
    with (
        remotetables.connect(":memory:", cfg) as conn,
        pytest.raises(remotetables.RemoteError) as info,
    ):
        conn.execute("SELECT number FROM gh_graphql_issues").fetchall()
    message = str(info.value)
    assert expected in message and "table gh_graphql_issues" in message
    assert "answered with errors" in message
    assert not isinstance(info.value, remotetables.RemoteProtocolError)


@pytest.mark.parametrize(
    ("extra", "key", "said"),
    [
        ('body = { a = "1" }', "tables.t.body", 'only with method = "POST"'),
        ('method = "PUT"', "tables.t.method", "GET or POST"),
        ('graphql = "mutation { x }"', "tables.t.graphql", "must be a GraphQL query"),
        ('graphql = "{ x }"\nbody = {}', "tables.t.graphql", "not both"),
        ('method = "POST"\npagination = "link"', "tables.t.pagination", "a POST listing pages"),
        ("idempotent = true", "tables.t.idempotent", 'only for method = "POST"'),
    ],
)
def test_listing_config_errors(
    extra: str, key: str, said: str, write_config: Callable[..., Path]
) -> None:
    cfg = write_config(
        f'[tables.t]\nurl = "https://api.example.test/x"\n{extra}\n[tables.t.columns]\nid = "INTEGER"\n'
    )
    with pytest.raises(remotetables.ConfigError) as info:
        remotetables.connect(":memory:", cfg)
    assert info.value.key == key and said in str(info.value)


def test_check_probes_a_post_listing_with_its_body(
    jira: tuple[JiraSearch, str],
    graphql: tuple[GitHubGraphQL, str],
    write_config: Callable[..., Path],
) -> None:
    """`remotetables check` asks a POST listing with POST and its body (a page of one row),
    not with a GET its API would refuse."""
    from remotetables.cli.check import check_table

    for name, (mock, base) in (("jira_search", jira), ("github_graphql", graphql)):
        with remotetables.connect(":memory:", example(name, base, write_config)) as conn:
            (spec,) = conn.runtime.config.tables.values()
            ok, line = check_table(conn.runtime, spec)
        assert ok, line
        if name == "jira_search":  # JQL is required: its 400 shows the API is there
            assert "400 without the required jql" in line, line
        else:
            assert line.startswith("POST ") and "answered 200" in line, line
        sent = mock.bodies[-1]
        size = sent["variables"]["first"] if name == "github_graphql" else sent["maxResults"]
        assert size == 1
