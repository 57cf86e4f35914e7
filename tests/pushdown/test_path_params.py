"""Path parameters (``/repos/{owner}/{repo}/issues``) against a loopback mock of GitHub's REST
shapes (tests/servers/mockapi.py), with sql_examples/github_repos.toml: the exact requests made,
and answers equal to a native SQLite copy of the same rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from tests.conftest import ROOT
from tests.servers.mockapi import GitHubIssues, LoopbackAPI

CONFIG = (ROOT / "sql_examples" / "github_repos.toml").read_text(encoding="utf-8")
Q = "state=all&per_page=100"  # what every issues request carries (static state, page size)

NATIVE = """
CREATE TABLE n_repos(org TEXT, name TEXT, full_name TEXT, owner TEXT);
CREATE TABLE n_issues(owner TEXT, repo TEXT, id INTEGER, number INTEGER, title TEXT, state TEXT,
    author TEXT, assignee TEXT, comments INTEGER, created_at TEXT, updated_at TEXT);
"""


@pytest.fixture
def gh(write_config: Callable[..., Path]) -> Iterator[tuple[Any, LoopbackAPI]]:
    github = GitHubIssues()
    with LoopbackAPI(github) as api:
        cfg = write_config(CONFIG.replace("http://127.0.0.1:8766", api.base_url))
        with remotetables.connect(":memory:", cfg) as conn:
            for stmt in NATIVE.strip().split(";")[:-1]:
                conn.execute(stmt)
            for (owner, repo), issues in github.issues.items():
                conn.execute(
                    "INSERT INTO n_repos VALUES (?, ?, ?, ?)",
                    (owner, repo, f"{owner}/{repo}", owner),
                )
                for i in issues:
                    a = i["assignee"]
                    conn.execute(
                        "INSERT INTO n_issues VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (owner, repo, i["id"], i["number"], i["title"], i["state"],
                         i["user"]["login"], a and a["login"], i["comments"], i["created_at"],
                         i["updated_at"]),
                    )  # fmt: skip
            yield conn, api


def both(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[Any], list[Any]]:
    remote = conn.execute(sql, params).fetchall()
    native = conn.execute(
        sql.replace("gh_issues", "n_issues").replace("gh_repos", "n_repos"), params
    ).fetchall()
    return remote, native


def test_path_parameters_fill_the_url_and_the_columns_echo_them(gh: Any) -> None:
    conn, api = gh
    sql = "SELECT owner, repo, number, title FROM gh_issues WHERE owner = 'acme' AND repo = 'widgets' ORDER BY number"
    remote, native = both(conn, sql)
    assert remote == native and len(remote) == 7
    assert api.targets == [f"/repos/acme/widgets/issues?{Q}"]


def test_in_makes_one_request_chain_per_value(gh: Any) -> None:
    conn, api = gh
    sql = (
        "SELECT owner, repo, number FROM gh_issues WHERE owner = 'acme' "
        "AND repo IN ('widgets', 'gadgets') ORDER BY owner, repo, number"
    )
    remote, native = both(conn, sql)
    assert remote == native and len(remote) == 7 + 12
    assert sorted(api.targets) == [
        f"/repos/acme/gadgets/issues?{Q}",
        f"/repos/acme/widgets/issues?{Q}",
    ]


def test_a_missing_path_parameter_names_the_columns(gh: Any) -> None:
    conn, api = gh
    with pytest.raises(remotetables.MissingParameterError, match=r"gh_issues.*repo = \.\.\."):
        conn.execute("SELECT * FROM gh_issues WHERE owner = 'acme'").fetchall()
    with pytest.raises(remotetables.MissingParameterError, match=r"owner, repo") as info:
        conn.execute("SELECT count(*) FROM gh_issues").fetchall()
    assert "owner = ... AND repo = ..." in str(info.value)
    assert api.targets == []


@pytest.mark.parametrize(
    ("repo", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("x?state=closed", "x%3Fstate%3Dclosed"),
        ("x#y", "x%23y"),
        ("%2F", "%252F"),
        ("../../orgs/acme/repos", "..%2F..%2Forgs%2Facme%2Frepos"),
        ("wid gets", "wid%20gets"),
        ("ü", "%C3%BC"),
    ],
)
def test_a_value_never_changes_the_path(gh: Any, repo: str, segment: str) -> None:
    conn, api = gh
    sql = "SELECT number FROM gh_issues WHERE owner = 'acme' AND repo = ?"
    if repo == "a/b":  # a repository the mock has: the encoded / reaches it as one segment
        remote, native = both(conn, sql + " ORDER BY number", (repo,))
        assert remote == native and remote
    else:
        with pytest.raises(remotetables.RemoteError) as info:
            conn.execute(sql, (repo,)).fetchall()
        assert info.value.status_code == 404
    assert api.targets == [f"/repos/acme/{segment}/issues?{Q}"]


def test_an_empty_path_value_matches_nothing_without_a_request(gh: Any) -> None:
    conn, api = gh
    assert (
        conn.execute("SELECT * FROM gh_issues WHERE owner = 'acme' AND repo = ''").fetchall() == []
    )
    assert (
        conn.execute("SELECT * FROM gh_issues WHERE owner = 'acme' AND repo = NULL").fetchall()
        == []
    )
    assert api.targets == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT r.full_name, i.number, i.title FROM gh_repos r JOIN gh_issues i "
        "ON i.owner = r.owner AND i.repo = r.name WHERE r.org = 'acme'",
        # the remote issues table first: BestIndex's costs still make it the inner loop
        "SELECT r.full_name, i.number, i.title FROM gh_issues i JOIN gh_repos r "
        "ON i.owner = r.owner AND i.repo = r.name WHERE r.org = 'acme'",
        "SELECT r.full_name, i.number, i.title FROM gh_issues i, gh_repos r "
        "WHERE r.name = i.repo AND r.org = 'acme' AND r.owner = i.owner",
    ],
)
def test_a_join_calls_filter_once_per_repository(gh: Any, sql: str) -> None:
    conn, api = gh
    remote, native = both(conn, sql)
    assert sorted(remote) == sorted(native) and len(remote) == 7 + 12 + 17
    assert sorted(api.targets) == sorted(
        [
            "/orgs/acme/repos?per_page=100",
            f"/repos/acme/widgets/issues?{Q}",
            f"/repos/acme/gadgets/issues?{Q}",
            f"/repos/acme/a%2Fb/issues?{Q}",
        ]
    )
    plan = [r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()]
    assert [p.split()[1] for p in plan] == ["r", "i"], plan  # repos outer, issues inner


def test_order_by_goes_to_the_api_and_a_limit_with_it(gh: Any) -> None:
    conn, api = gh
    sql = (
        "SELECT number, updated_at FROM gh_issues WHERE owner = 'acme' AND repo = 'gadgets' "
        "ORDER BY updated_at DESC LIMIT 3"
    )
    remote, native = both(conn, sql)
    assert remote == native and len(remote) == 3
    assert api.targets == [
        "/repos/acme/gadgets/issues?state=all&sort=updated&direction=desc&per_page=3"
    ]
    plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
    assert "TEMP B-TREE" not in plan


def test_order_by_over_several_repositories_is_sorted_by_sqlite(gh: Any) -> None:
    """One Filter call per repository gives sorted runs: the order is not consumed (SQLite
    also sorts again on its own when it hands out an IN value by value)."""
    conn, api = gh
    sql = (
        "SELECT repo, number, updated_at FROM gh_issues WHERE owner = 'acme' "
        "AND repo IN ('widgets', 'gadgets') ORDER BY updated_at DESC LIMIT 5"
    )
    remote, native = both(conn, sql)
    assert [r[2] for r in remote] == [r[2] for r in native]
    assert sorted(api.targets) == [
        f"/repos/acme/{r}/issues?state=all&sort=updated&direction=desc&per_page=100"
        for r in ("gadgets", "widgets")
    ]


def test_an_order_the_api_does_not_share_is_sorted_again(gh: Any) -> None:
    conn, api = gh
    sql = (
        "SELECT number, comments FROM gh_issues WHERE owner = 'acme' AND repo = 'gadgets' "
        "ORDER BY comments LIMIT 4"
    )
    remote, native = both(conn, sql)
    assert [r[1] for r in remote] == [r[1] for r in native]
    # the API sorts, SQLite sorts again, and the LIMIT stays with SQLite
    assert api.targets == [
        "/repos/acme/gadgets/issues?state=all&sort=comments&direction=asc&per_page=100"
    ]


def test_remotetables_columns_shows_what_each_column_pushes(gh: Any) -> None:
    conn, _ = gh
    rows = conn.execute(
        "SELECT column_name, operator, parameter, required, exact FROM remotetables_columns "
        "WHERE table_name = 'gh_issues' AND operator IS NOT NULL ORDER BY column_name, operator"
    ).fetchall()
    assert rows == [
        ("assignee", "IS NOT NULL", "assignee=*", 0, 0),
        ("assignee", "IS NULL", "assignee=none", 0, 0),
        ("comments", "ORDER BY", "sort=comments (SQLite sorts again)", 0, 0),
        ("created_at", "ORDER BY", "sort=created (consumed)", 0, 0),
        ("owner", "=", "{owner} in the path", 1, 0),
        ("owner", "IN", "{owner} in the path, one request per value", 1, 0),
        ("repo", "=", "{repo} in the path", 1, 0),
        ("repo", "IN", "{repo} in the path, one request per value", 1, 0),
        ("state", "=", "state", 0, 0),
        ("state", "IN", "state (one request per value)", 0, 0),
        ("updated_at", ">=", "since (datetime)", 0, 0),
        ("updated_at", "ORDER BY", "sort=updated (consumed)", 0, 0),
    ]
    # a column that pushes nothing has one row, with a NULL operator
    assert conn.execute(
        "SELECT operator FROM remotetables_columns WHERE table_name = 'gh_issues' "
        "AND column_name = 'title'"
    ).fetchall() == [(None,)]


def test_remotetables_stats_shows_the_requests_of_the_last_statement(gh: Any) -> None:
    import json

    conn, api = gh
    conn.execute(
        "SELECT count(*) FROM gh_repos r JOIN gh_issues i ON i.owner = r.owner AND i.repo = r.name "
        "WHERE r.org = 'acme' AND i.updated_at >= '2024-06-20'"
    ).fetchall()
    stats = json.loads(conn.execute("SELECT remotetables_stats()").fetchone()[0])
    since = "since=2024-06-20T00%3A00%3A00Z"
    assert sorted(stats["urls"]) == sorted(
        [
            f"{api.base_url}/orgs/acme/repos?per_page=100",
            f"{api.base_url}/repos/acme/widgets/issues?state=all&{since}&per_page=100",
            f"{api.base_url}/repos/acme/gadgets/issues?state=all&{since}&per_page=100",
            f"{api.base_url}/repos/acme/a%2Fb/issues?state=all&{since}&per_page=100",
        ]
    )
    assert stats["requests"] == 4
