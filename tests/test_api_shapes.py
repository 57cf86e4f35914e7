"""API shapes the loopback test API does not serve: pagination through response headers and a
``has_more`` flag, rows nested two levels deep. httpx2.MockTransport plays the API (allowed for
unit tests); the rest of the stack is real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

import remotetables

ROWS = [{"id": i, "name": f"n{i}", "meta": {"team": ["red", "blue"][i % 2]}} for i in range(23)]
PAGE = 5


class ShapeAPI:
    """Cursor in ``X-Next-Cursor``; next URL in ``X-Next-Page``; ``has_more`` in the body."""

    def __init__(self) -> None:
        self.requests: list[httpx2.URL] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request.url)
        q = request.url.params
        start = int(q.get("after", q.get("offset", "0")))
        page = ROWS[start : start + PAGE]
        more = start + PAGE < len(ROWS)
        headers = {}
        if request.url.path == "/header-cursor" and more:
            headers["X-Next-Cursor"] = str(start + PAGE)
        if request.url.path == "/header-next" and more:
            headers["X-Next-Page"] = f"/header-next?after={start + PAGE}"
        body = {"data": {"items": page}, "has_more": more}
        return httpx2.Response(200, json=body, headers=headers)


TABLE = """
[tables.t]
url = "https://api.example.test{path}"
rows = "data.items"
pagination = {pagination}
cache_ttl = 0
[tables.t.columns]
id = "INTEGER"
name = "TEXT"
team = {{ type = "TEXT", path = "meta.team" }}
"""


@pytest.mark.parametrize(
    ("path", "pagination"),
    [
        (
            "/header-cursor",
            '{ style = "cursor", cursor_header = "X-Next-Cursor", cursor_param = "after" }',
        ),
        ("/header-next", '{ style = "next_url", next_header = "X-Next-Page" }'),
        ("/has-more", '{ style = "offset", has_more_path = "has_more" }'),
    ],
)
def test_shape(path: str, pagination: str, write_config: Callable[..., Path]) -> None:
    api = ShapeAPI()
    cfg = write_config(TABLE.format(path=path, pagination=pagination))
    with remotetables.connect(":memory:", cfg, transport=httpx2.MockTransport(api)) as conn:
        rows = conn.execute("SELECT id, name, team FROM t").fetchall()
    assert rows == [(r["id"], r["name"], r["meta"]["team"]) for r in ROWS]
    # every page once, and no extra request for an empty page: the API said where it ends
    assert len(api.requests) == -(-len(ROWS) // PAGE)


def test_stripe_style_cursor_is_the_last_rows_id(write_config: Callable[..., Path]) -> None:
    """Stripe: ``{"object": "list", "data": [...], "has_more": true}``, the next page asked with
    ``starting_after=<id of the page's last row>``: a cursor path that indexes from the end."""
    seen: list[str | None] = []

    def stripe(request: httpx2.Request) -> httpx2.Response:
        after = request.url.params.get("starting_after")
        seen.append(after)
        start = (
            0
            if after is None
            else next(i for i, r in enumerate(ROWS) if f"cus_{r['id']}" == after) + 1
        )
        page = [{"id": f"cus_{r['id']}", "name": r["name"]} for r in ROWS[start : start + PAGE]]
        body = {"object": "list", "data": page, "has_more": start + PAGE < len(ROWS)}
        return httpx2.Response(200, json=body)

    cfg = write_config(
        """
[tables.customers]
url = "https://api.example.test/v1/customers"
rows = "data"
pagination = { style = "cursor", cursor_path = "data[-1].id", cursor_param = "starting_after", has_more_path = "has_more" }
page_size_param = "limit"
max_page_size = 5
cache_ttl = 0
[tables.customers.columns]
id = "TEXT"
name = "TEXT"
"""
    )
    with remotetables.connect(":memory:", cfg, transport=httpx2.MockTransport(stripe)) as conn:
        rows = conn.execute("SELECT id, name FROM customers").fetchall()
    assert rows == [(f"cus_{r['id']}", r["name"]) for r in ROWS]
    assert seen == [None] + [f"cus_{ROWS[i]['id']}" for i in range(PAGE - 1, len(ROWS) - 1, PAGE)]


def test_token_requests_carry_extra_token_params(write_config: Callable[..., Path]) -> None:
    """A system provider whose token endpoint needs an `audience` (client credentials), through SQL."""
    from urllib.parse import parse_qs

    token_forms: list[dict[str, list[str]]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/oauth/token":
            token_forms.append(parse_qs(request.content.decode()))
            return httpx2.Response(
                200, json={"access_token": "sys-token", "token_type": "Bearer", "expires_in": 600}
            )
        assert request.headers["Authorization"] == "Bearer sys-token"
        return httpx2.Response(200, json={"data": {"items": ROWS[:3]}, "has_more": False})

    cfg = write_config(
        """
        [settings]
        token_store = "{tmp}/tokens.db"
        key_file = "{tmp}/token.key"
        [providers.api]
        integration = "system"
        grant = "client_credentials"
        client_id = "svc"
        client_secret_env = "SVC_SECRET"
        token_endpoint = "https://auth.example.test/oauth/token"
        extra_token_params = { audience = "https://api.example.test/" }
        [tables.t]
        url = "https://api.example.test/has-more"
        rows = "data.items"
        pagination = { style = "offset", has_more_path = "has_more" }
        [tables.t.columns]
        id = "INTEGER"
        """,
        tmp=write_config("").parent,
    )
    with remotetables.connect(
        ":memory:",
        cfg,
        transport=httpx2.MockTransport(handler),
        environ={"SVC_SECRET": "s3cret", "REMOTETABLES_NO_KEYRING": "1"},
    ) as conn:
        assert conn.execute("SELECT id FROM t").fetchall() == [(0,), (1,), (2,)]
    (form,) = token_forms
    assert form["grant_type"] == ["client_credentials"]
    assert form["audience"] == ["https://api.example.test/"]


def test_api_key_header_goes_only_to_the_providers_origin(
    write_config: Callable[..., Path],
) -> None:
    """A static API key in `X-API-Key` (token_header): sent to the API, dropped on a redirect
    to another origin (httpx drops only Authorization by itself)."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append((request.url.host, request.headers.get("X-API-Key")))
        if request.url.host == "api.example.test" and request.url.path == "/moved":
            return httpx2.Response(302, headers={"Location": "https://cdn.example.test/rows"})
        return httpx2.Response(200, json={"data": {"items": ROWS[:2]}, "has_more": False})

    cfg = write_config(
        """
        [providers.keyed]
        token_env = "API_KEY"
        token_header = "X-API-Key"
        integration = "system"
        [tables.direct]
        url = "https://api.example.test/rows"
        rows = "data.items"
        [tables.direct.columns]
        id = "INTEGER"
        [tables.moved]
        url = "https://api.example.test/moved"
        rows = "data.items"
        [tables.moved.columns]
        id = "INTEGER"
        """
    )
    with remotetables.connect(
        ":memory:", cfg, transport=httpx2.MockTransport(handler), environ={"API_KEY": "k-123"}
    ) as conn:
        assert conn.execute("SELECT id FROM direct").fetchall() == [(0,), (1,)]
        assert conn.execute("SELECT id FROM moved").fetchall() == [(0,), (1,)]
    assert seen == [
        ("api.example.test", "k-123"),  # no "Bearer " prefix by default for a custom header
        ("api.example.test", "k-123"),
        ("cdn.example.test", None),  # the redirect target never gets the key
    ]


def test_api_key_in_a_query_parameter(write_config: Callable[..., Path]) -> None:
    """`token_param`: the key goes in the query (OpenWeather's `appid`), once even when a next
    link echoes it, never to another origin, and never shown: not in errors nor in logs."""
    seen: list[tuple[str, list[str]]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append((f"{request.url.host}{request.url.path}", request.url.params.get_list("appid")))
        if request.url.path == "/moved":  # a careless API that echoes the key, to another host
            return httpx2.Response(
                302, headers={"Location": "https://cdn.example.test/rows?appid=k-123"}
            )
        if request.url.path == "/denied":
            return httpx2.Response(403, json={"message": "plan does not allow this"})
        if request.url.params.get("page") == "2":
            return httpx2.Response(200, json={"data": {"items": ROWS[2:3]}, "next": None})
        echo = f"https://api.example.test{request.url.path}?page=2&appid=k-123"
        return httpx2.Response(200, json={"data": {"items": ROWS[:2]}, "next": echo})

    cfg = write_config(
        """
        [providers.weather]
        token_env = "API_KEY"
        token_param = "appid"
        [tables.direct]
        url = "https://api.example.test/rows"
        rows = "data.items"
        pagination = { style = "next_url", next_path = "next" }
        [tables.direct.columns]
        id = "INTEGER"
        [tables.moved]
        url = "https://api.example.test/moved"
        rows = "data.items"
        [tables.moved.columns]
        id = "INTEGER"
        [tables.denied]
        url = "https://api.example.test/denied"
        [tables.denied.columns]
        id = "INTEGER"
        """
    )
    with remotetables.connect(
        ":memory:", cfg, transport=httpx2.MockTransport(handler), environ={"API_KEY": "k-123"}
    ) as conn:
        assert conn.execute("SELECT id FROM direct").fetchall() == [(0,), (1,), (2,)]
        assert conn.execute("SELECT id FROM moved").fetchall() == [(0,), (1,)]
        with pytest.raises(remotetables.RemoteError) as info:
            conn.execute("SELECT id FROM denied").fetchall()
    assert "403" in str(info.value) and "plan does not allow this" in str(info.value)
    assert "k-123" not in str(info.value) and "k-123" not in str(info.value.url)
    assert seen == [
        ("api.example.test/rows", ["k-123"]),
        ("api.example.test/rows", ["k-123"]),  # the echoed key is replaced, not repeated
        ("api.example.test/moved", ["k-123"]),
        ("cdn.example.test/rows", []),  # the other origin never gets the key
        ("api.example.test/denied", ["k-123"]),
    ]
    bad = write_config(
        '[providers.w]\ntoken_env = "K"\ntoken_param = "appid"\ntoken_header = "X"\n'
    )
    with pytest.raises(remotetables.ConfigError, match="token_param"):
        remotetables.connect(":memory:", bad)


def test_a_redirect_to_plain_http_is_refused(write_config: Callable[..., Path]) -> None:
    """The configured URL is https; a hop to plain http (off loopback) would bring the rows
    back unencrypted: refused, with the (redacted) target named."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "api.example.test":
            return httpx2.Response(302, headers={"Location": "http://cdn.example.test/rows?sig=s3"})
        return httpx2.Response(200, json={"data": {"items": ROWS[:2]}})

    cfg = write_config(TABLE.format(path="/moved", pagination='"none"'))
    with (
        remotetables.connect(":memory:", cfg, transport=httpx2.MockTransport(handler)) as conn,
        pytest.raises(remotetables.RemoteError) as info,
    ):
        conn.execute("SELECT id FROM t").fetchall()
    message = str(info.value)
    assert "refusing to follow a redirect to http://cdn.example.test/rows?sig=***" in message
    assert "s3" not in message
