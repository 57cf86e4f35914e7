"""Query languages against loopback mocks that parse them strictly (tests/servers/querymocks.py):
the exact expression sent, answers equal to a native copy, and values that hold the language's
own operators and quotes never change the expression's structure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import remotetables
from tests.conftest import ROOT
from tests.servers.mockapi import LoopbackAPI
from tests.servers.querymocks import ServiceNowTable

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
    for conditions in mock.parsed:  # every condition the API saw is one the statement has
        for field, _op, sent in conditions:
            assert "^" not in sent and field in ("number", "short_description", "caller_id")
            assert value not in sent or "," not in value
