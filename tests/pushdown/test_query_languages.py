"""Query languages against loopback mocks that parse them strictly (tests/servers/querymocks.py):
the exact expression sent, answers equal to a native copy, and values that hold the language's
own operators and quotes never change the expression's structure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

import remotetables
from tests.conftest import ROOT
from tests.servers.mockapi import LoopbackAPI
from tests.servers.querymocks import JiraSearch, ODataTickets, ServiceNowTable

SN_CONFIG = (ROOT / "sql_examples" / "servicenow_query.toml").read_text(encoding="utf-8")


def _query(target: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))


@pytest.fixture
def sn(write_config: Callable[..., Path]) -> Iterator[tuple[Any, LoopbackAPI, ServiceNowTable]]:
    mock = ServiceNowTable()
    with LoopbackAPI(mock) as api:
        cfg = write_config(SN_CONFIG.replace("http://127.0.0.1:8766", api.base_url))
        with remotetables.connect(":memory:", cfg) as conn:
            conn.execute(
                "CREATE TABLE native(sys_id TEXT, number TEXT, short_description TEXT, "
                "state INTEGER, priority INTEGER, caller TEXT, opened_at TEXT)"
            )
            conn.executemany(
                "INSERT INTO native VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r["sys_id"], r["number"], r["short_description"], int(r["state"]),
                     int(r["priority"]), r["caller_id"]["value"] if r["caller_id"] else None,
                     r["opened_at"])
                    for r in mock.rows
                ],
            )  # fmt: skip
            yield conn, api, mock


def _both(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[Any], list[Any]]:
    remote = conn.execute(sql.replace("{t}", "sn_incidents"), params).fetchall()
    native = conn.execute(sql.replace("{t}", "native"), params).fetchall()
    return remote, native


def test_servicenow_encoded_query_fields_and_order(sn: Any) -> None:
    conn, api, _ = sn
    remote, native = _both(
        conn,
        "SELECT number, short_description, priority FROM {t} WHERE state = 1 AND priority <= 2 "
        "AND short_description LIKE '%disk%' ORDER BY opened_at DESC",
    )
    assert remote == native and remote
    assert len(api.targets) == 1
    q = _query(api.targets[0])
    assert q == {
        "sysparm_display_value": "false",
        "sysparm_query": "state=1^priority<=2^short_descriptionLIKEdisk^ORDERBYDESCopened_at",
        "sysparm_fields": "sys_id,number,short_description,state,priority,opened_at",
        "sysparm_limit": "100",
    }


@pytest.mark.parametrize(
    ("where", "terms"),
    [
        ("state IN (1, 2) AND priority > 3", "stateIN1,2^priority>3"),
        ("caller IS NULL", "caller_idISEMPTY"),
        ("priority > 2.5", "priority>=2"),  # no exact form: the inclusive term, re-checked
        ("number = 'INC0000007'", "number=INC0000007"),
        ("short_description LIKE 'disk%'", None),  # not a contains: SQLite applies it
    ],
)
def test_servicenow_terms(sn: Any, where: str, terms: str | None) -> None:
    conn, api, _ = sn
    remote, native = _both(conn, f"SELECT number FROM {{t}} WHERE {where} ORDER BY number")
    assert remote == native
    assert _query(api.targets[0]).get("sysparm_query") == terms


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("number = ?", "INC0000001^NQstate=7"),  # a new OR-ed query group
        ("number = ?", "INC0000001^ORDERBYnumber"),
        ("short_description LIKE ?", "%DISK^error%"),  # a real row holds a caret
        ("number IN (?, 'INC0000002')", "INC0000001,INC0000003"),  # the IN list separator
        ("number = ?", "INC0000001^^"),
        ("caller = ?", "x^sys_idISNOTEMPTY"),
    ],
)
def test_servicenow_values_never_change_the_query(sn: Any, where: str, value: str) -> None:
    conn, _, mock = sn
    remote, native = _both(
        conn, f"SELECT number FROM {{t}} WHERE {where} ORDER BY number", (value,)
    )
    assert remote == native
    assert mock.dropped == []  # an invalid part is dropped silently by ServiceNow: none here
    for conditions in mock.parsed:  # every condition the API saw is one the statement has
        for field, _op, sent in conditions:
            assert "^" not in sent and field in ("number", "short_description", "caller_id")
            assert value not in sent or "," not in value


def test_servicenow_mock_drops_an_invalid_condition_as_documented() -> None:
    """ServiceNow runs the rest of an encoded query without a part it cannot read (an unknown
    field): more rows, not an error and not fewer rows; unless the instance is set to answer
    none (glide.invalid_query.returns_no_rows)."""
    for strict, count in ((False, 8), (True, 0)):
        mock = ServiceNowTable(invalid_returns_no_rows=strict)
        with LoopbackAPI(mock) as api, httpx2.Client() as client:
            url = f"{api.base_url}/api/now/table/incident"
            got = client.get(url, params={"sysparm_query": "no_such_field=1^state=1"})
            assert got.status_code == 200
            assert len(got.json()["result"]) == count
            assert mock.dropped == ["no_such_field=1"]


# ---------------------------------------------------------------- OData


@pytest.fixture
def od(write_config: Callable[..., Path]) -> Iterator[tuple[Any, LoopbackAPI, ODataTickets]]:
    mock = ODataTickets()
    toml = (ROOT / "sql_examples" / "graph_odata.toml").read_text(encoding="utf-8")
    with LoopbackAPI(mock) as api:
        cfg = write_config(toml.replace("http://127.0.0.1:8766", api.base_url))
        with remotetables.connect(":memory:", cfg) as conn:
            conn.execute(
                "CREATE TABLE native(id TEXT, subject TEXT, status TEXT, priority INTEGER, "
                "assigned_to TEXT, created TEXT)"
            )
            conn.executemany(
                "INSERT INTO native VALUES (?, ?, ?, ?, ?, ?)",
                [(r["id"], r["subject"], r["status"], r["priority"], r["assignedTo"],
                  r["createdDateTime"]) for r in mock.rows],
            )  # fmt: skip
            yield conn, api, mock


def _remote_native(conn: Any, table: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    remote = conn.execute(sql.replace("{t}", table), params).fetchall()
    native = conn.execute(sql.replace("{t}", "native"), params).fetchall()
    assert remote == native


def test_odata_filter_select_top_orderby_and_next_links(od: Any) -> None:
    conn, api, _ = od
    _remote_native(
        conn,
        "tickets",
        "SELECT subject, priority, created FROM {t} WHERE status = 'open' AND priority <= 2 "
        "ORDER BY created DESC",
    )
    first = _query(api.targets[0])
    assert first == {
        "$filter": "status eq 'open' and priority le 2",
        "$orderby": "createdDateTime desc",
        "$select": "id,subject,status,priority,createdDateTime",
        "$top": "10",
    }
    assert all("$skiptoken" in _query(t) for t in api.targets[1:])  # the nextLinks, whole


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("subject LIKE '%VPN%'", "contains(subject,'VPN')"),
        ("assigned_to IS NULL AND created >= '2024-06-10'",
         "assignedTo eq null and createdDateTime ge 2024-06-10T00:00:00Z"),
        ("status IN ('open', 'waiting')", "status in ('open','waiting')"),
        ("priority > 1.5 AND priority != 4", "priority ge 1 and priority ne 4"),
    ],
)  # fmt: skip
def test_odata_terms(od: Any, where: str, expected: str) -> None:
    conn, api, _ = od
    _remote_native(conn, "tickets", f"SELECT id FROM {{t}} WHERE {where} ORDER BY id")
    assert _query(api.targets[0])["$filter"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "x' or priority gt 0 or subject eq 'y",  # a real row holds this subject
        "It's broken",
        "'') or (1 eq 1",
        "a' and status eq 'open",
        "mail (urgent)",
    ],
)
def test_odata_values_never_change_the_filter(od: Any, value: str) -> None:
    conn, _, mock = od
    for sql in (
        "SELECT id FROM {t} WHERE subject = ? ORDER BY id",
        "SELECT id FROM {t} WHERE subject LIKE '%' || ? || '%' ORDER BY id",
        "SELECT id FROM {t} WHERE status IN ('open', ?) ORDER BY id",
    ):
        mock.parsed.clear()
        _remote_native(conn, "tickets", sql, (value,))
        # the API parsed the statement's terms only, the value whole
        for terms in mock.parsed:
            assert [f for f, _, _ in terms] in (["subject"], ["status"], [])
            assert all(v == value or value in v or v == "open" for _, _, v in terms)


def test_odata_mock_null_semantics_and_error_shape() -> None:
    """OData: ``null ne 'x'`` is true (a row without an assignee is not 'adele'); Graph's
    error body carries ``innerError``."""
    mock = ODataTickets()
    with LoopbackAPI(mock) as api, httpx2.Client() as client:
        url = f"{api.base_url}/v1.0/tickets"
        got = client.get(url, params={"$filter": "assignedTo ne 'adele'", "$top": "999"})
        want = [r["id"] for r in mock.rows if r["assignedTo"] != "adele"]
        assert [r["id"] for r in got.json()["value"]] == want
        assert any(r["assignedTo"] is None for r in got.json()["value"])
        bad = client.get(url, params={"$filter": "status eq 'a' or status eq 'b'"})
        assert bad.status_code == 400
        assert set(bad.json()["error"]) == {"code", "message", "innerError"}


# ---------------------------------------------------------------- JQL


@pytest.fixture
def jira(write_config: Callable[..., Path]) -> Iterator[tuple[Any, LoopbackAPI, JiraSearch]]:
    mock = JiraSearch()
    toml = (ROOT / "sql_examples" / "jira_jql.toml").read_text(encoding="utf-8")
    with LoopbackAPI(mock) as api:
        cfg = write_config(toml.replace("http://127.0.0.1:8766", api.base_url))
        with remotetables.connect(":memory:", cfg) as conn:
            conn.execute(
                "CREATE TABLE native(id TEXT, issue_key TEXT, summary TEXT, status TEXT, "
                "assignee TEXT, updated TEXT)"
            )
            conn.executemany(
                "INSERT INTO native VALUES (?, ?, ?, ?, ?, ?)",
                [(r["id"], r["key"], r["fields"]["summary"], r["fields"]["status"]["name"],
                  (r["fields"]["assignee"] or {}).get("displayName"), r["fields"]["updated"])
                 for r in mock.rows if r["fields"]["project"]["key"] == "ACME"],
            )  # fmt: skip
            yield conn, api, mock


def test_jql_terms_order_and_fields(jira: Any) -> None:
    conn, api, _ = jira
    _remote_native(
        conn,
        "jira_issues",
        "SELECT issue_key, status, updated FROM {t} WHERE status IN ('In Progress', 'To Do') "
        "AND updated >= '2024-03-01T12:00:00Z' ORDER BY updated DESC",
    )
    assert _query(api.targets[0]) == {
        "jql": 'project = ACME AND status in ("In Progress", "To Do") AND updated >= 2024-03-01 '
        "ORDER BY updated DESC",
        "fields": "id,key,status,updated",
        "maxResults": "10",
    }


@pytest.mark.parametrize(
    "value",
    [
        'x" OR project = OTHER OR summary ~ "y',
        'Login "fails"',
        "Backslash \\ in path",
        '\\" OR project = OTHER ORDER BY key',
        "In Progress",
    ],
)
def test_jql_values_never_change_the_query(jira: Any, value: str) -> None:
    conn, _, mock = jira
    for sql in (
        "SELECT id FROM {t} WHERE status = ? ORDER BY id",
        "SELECT id FROM {t} WHERE issue_key IN ('ACME-2', ?) ORDER BY id",
    ):
        mock.parsed.clear()
        _remote_native(conn, "jira_issues", sql, (value,))
        for terms in mock.parsed:
            assert terms[0] == ("project", "=", "ACME")
            _field, op, sent = terms[1]
            assert len(terms) == 2
            assert (sent == value) if op == "=" else (op == "in" and value in sent)


def test_remotetables_columns_shows_query_language_terms(sn: Any) -> None:
    conn, _, _ = sn
    rows = conn.execute(
        "SELECT column_name, operator, parameter FROM remotetables_columns "
        "WHERE table_name = 'sn_incidents' AND column_name IN ('caller', 'opened_at') "
        "ORDER BY column_name, operator"
    ).fetchall()
    assert rows == [
        ("caller", "=", "sysparm_query: caller_id={value}"),
        ("caller", "IS NOT NULL", "sysparm_query: caller_idISNOTEMPTY"),
        ("caller", "IS NULL", "sysparm_query: caller_idISEMPTY"),
        ("opened_at", "ORDER BY", "sysparm_query: ORDERBYopened_at (consumed)"),
    ]


@pytest.mark.parametrize(
    ("where", "sent"),
    [
        # JQL reads a date as its midnight: '> 2024-02-08' would drop the row updated at 00:00
        # that SQLite keeps ('2024-02-08T00:00:00.000+0000' > '2024-02-08'), so >= goes
        ("updated > '2024-02-08'", "updated >= 2024-02-08"),
        ("updated <= '2024-02-08'", "updated <= 2024-02-08"),
        ("updated >= '2024-02-08'", "updated >= 2024-02-08"),
        ("updated < '2024-02-09'", "updated <= 2024-02-09"),
    ],
)
def test_jql_date_literal_is_midnight(jira: Any, where: str, sent: str) -> None:
    conn, api, _ = jira
    _remote_native(conn, "jira_issues", f"SELECT id, updated FROM {{t}} WHERE {where} ORDER BY id")
    assert _query(api.targets[0])["jql"] == f"project = ACME AND {sent}"
