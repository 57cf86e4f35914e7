"""What an API's error answer says reaches the error message: the common JSON error shapes,
an error answered with status 200, through SQL against the loopback test API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from remotetables.demo.api.server import Fault, IncidentsAPI
from remotetables.errors import RemoteError, RemoteProtocolError
from tests.conftest import incidents_table
from tests.faults.env import DemoEnv, rows_of

PATH = "/styles/link/incidents"


def open_table(open_conn: Callable[..., Any], api: IncidentsAPI, rows: str = "") -> Any:
    """A connection with table `inc` (link pagination) on ``api``, rows at ``rows``."""
    table = incidents_table("inc", "link", api.base_url, extra="cache_ttl = 0\n")
    table = table.replace('rows = ""', f'rows = "{rows}"', 1)
    return open_conn('[providers.open]\nauth = "none"\nmax_retries = 0\n' + table)


def test_an_error_answered_with_200_says_what_the_body_holds(
    fresh_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    """Slack answers 200 {"ok": false, "error": "invalid_auth"}: no rows there, and the error
    says which keys the body has and what its error field says."""
    conn = open_table(open_conn, fresh_api, rows="channels")
    body = '{"ok": false, "error": "invalid_auth"}'
    fresh_api.faults.add(Fault("status", path=PATH, status=200, body=body))
    with pytest.raises(RemoteProtocolError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    message = str(info.value)
    assert "expected a list of rows at channels of the answer from" in message
    assert (
        'found nothing; the answer has the top-level keys ok, error and says error: "invalid_auth"'
        " (check the table's 'rows' setting)"
    ) in message


def test_a_missing_rows_path_quotes_a_bounded_redacted_message(
    fresh_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    conn = open_table(open_conn, fresh_api, rows="data")
    long = "see https://api.example.test/help?token=s3cr3t-in-a-message " + "x" * 400
    body = {"message": long, **{f"k{i}": i for i in range(14)}}
    fresh_api.faults.add(Fault("status", path=PATH, status=200, body=orjson.dumps(body)))
    with pytest.raises(RemoteProtocolError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    message = str(info.value)
    assert "top-level keys message, k0, k1, k2, k3, k4, k5, k6, k7, k8 and 5 more" in message
    assert 'says message: "see https://api.example.test/help?token=*** xxx' in message
    assert "s3cr3t" not in message and "x" * 120 not in message and '..."' in message


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (  # JSON:API
            403,
            {"errors": [{"status": "403", "title": "Forbidden", "detail": "not your project"}]},
            "Forbidden: not your project",
        ),
        (400, {"errors": [{"message": "Field 'x' doesn't exist"}]}, "Field 'x' doesn't exist"),
        (  # RFC 9457 problem details
            403,
            {"type": "about:blank", "title": "Forbidden", "detail": "scope repo needed"},
            "Forbidden: scope repo needed",
        ),
        (401, {"detail": "Not authenticated"}, "Not authenticated"),
        (404, {"title": "Not Found"}, "Not Found"),
        (  # Google APIs
            403,
            {"error": {"code": 403, "message": "Caller lacks permission", "status": "DENIED"}},
            "Caller lacks permission",
        ),
        (  # ServiceNow
            401,
            {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth"}},
            "User Not Authenticated: Required to provide Auth",
        ),
        (400, {"error": "invalid_request", "error_description": "bad scope"}, "bad scope"),
        (400, {"error": "bad_filter"}, "bad_filter"),
        (
            422,
            {"message": "Validation Failed", "errors": [{"code": "missing"}]},
            "Validation Failed",
        ),
    ],
)
def test_an_http_error_quotes_the_apis_message(
    status: int,
    body: dict[str, Any],
    said: str,
    fresh_api: IncidentsAPI,
    open_conn: Callable[..., Any],
) -> None:
    conn = open_table(open_conn, fresh_api)
    fresh_api.faults.add(Fault("status", path=PATH, status=status, body=orjson.dumps(body)))
    with pytest.raises(RemoteError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    assert info.value.status_code == status
    assert f"answered HTTP {status}: {said}" in str(info.value)


def test_a_plain_text_error_is_quoted_bounded_and_redacted(
    fresh_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    conn = open_table(open_conn, fresh_api)
    text = "Invalid value for 'state'.\nSee /docs?api_key=k-999 " + "y" * 300
    fresh_api.faults.add(
        Fault(
            "status",
            path=PATH,
            status=400,
            body=text,
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    )
    with pytest.raises(RemoteError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    message = str(info.value)
    assert "answered HTTP 400: Invalid value for 'state'. See /docs?api_key=*** yyy" in message
    assert "k-999" not in message and "y" * 250 not in message


# ----------------------------------------------------------------------------- 401 wording


@pytest.fixture
def keyed_api() -> Iterator[IncidentsAPI]:
    """The test API behind one static bearer token."""
    with IncidentsAPI(n_rows=20, static_tokens={"tok-current-1234": "alice"}) as server:
        yield server


def test_a_refused_static_token_is_not_said_to_be_refreshed(
    keyed_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    table = incidents_table("inc", "link", keyed_api.base_url, extra="cache_ttl = 0\n")
    toml = '[providers.key]\nauth = "bearer"\ntoken_env = "API_TOKEN"\n' + table
    good = open_conn(toml, environ={"API_TOKEN": "tok-current-1234"})
    assert len(good.execute("SELECT * FROM inc").fetchall()) > 0
    conn = open_conn(toml, environ={"API_TOKEN": "tok-revoked-5678"})
    with pytest.raises(RemoteError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    message = str(info.value)
    assert info.value.status_code == 401 and "refresh" not in message.replace("never refreshed", "")
    assert (
        "answered HTTP 401: invalid bearer token (the static token from environment variable "
        "API_TOKEN was refused; it is never refreshed: check that it is current"
    ) in message
    assert "tok-revoked" not in message


def test_a_401_without_credentials_says_none_were_sent(
    keyed_api: IncidentsAPI, open_conn: Callable[..., Any]
) -> None:
    conn = open_table(open_conn, keyed_api)
    with pytest.raises(RemoteError) as info:
        conn.execute("SELECT * FROM inc").fetchall()
    message = str(info.value)
    assert (
        'answered HTTP 401: missing bearer token (no token was sent: provider open has auth = "none")'
        in message
    )
    assert "refused" not in message


def test_a_refused_oauth_token_was_refreshed_first(tmp_path: Path) -> None:
    env = DemoEnv(tmp_path)
    try:
        conn = env.connect("alice", config=env.config(provider_extra="max_retries = 0"))
        assert rows_of(conn)
        env.api.faults.add(Fault("status", path="/styles/", status=401, times=None))
        with pytest.raises(RemoteError) as info:
            rows_of(conn)
        assert (
            "answered HTTP 401: injected 401 (the token was refused, even after a refresh)"
            in str(info.value)
        )
    finally:
        env.close()
