"""End-to-end tests of the loopback incidents API (remotetables.demo.api.server) over real sockets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import orjson
import pytest

from remotetables.demo.api.routes import decode_cursor
from remotetables.demo.api.server import Fault, IncidentsAPI, token_fingerprint

TOKENS = {"tok-alice-123": "alice", "tok-bob-456": "bob", "tok-carol-789": "carol"}
MAX_PAGES = 500  # every paging loop is bounded


@pytest.fixture
def api() -> Iterator[IncidentsAPI]:
    with IncidentsAPI(n_rows=250, seed=7) as server:
        yield server


@pytest.fixture
def auth_api() -> Iterator[IncidentsAPI]:
    with IncidentsAPI(n_rows=250, seed=7, static_tokens=TOKENS) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=5) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ paging helpers


def page_through(
    client: httpx2.Client, base: str, style: str, params: dict[str, Any], **kw: Any
) -> list[dict[str, Any]]:
    """Read every page of one style; returns the rows in order."""
    rows: list[dict[str, Any]] = []
    path = f"{base}/styles/{style}/incidents"
    if style == "servicenow":
        path = f"{base}/api/now/table/incident"
    url: str | None = path
    query = dict(params)
    for _ in range(MAX_PAGES):
        assert url is not None
        r = client.get(url, params=query if url == path else None, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        if style == "link":
            rows += body
            url = r.links.get("next", {}).get("url")
        elif style == "servicenow":
            rows += body["result"]
            url = r.links.get("next", {}).get("url")
        elif style == "next_url":
            rows += body["data"]
            url = body["links"]["next"]
        elif style == "cursor":
            rows += body["items"]
            if body["next_cursor"] is None:
                return rows
            query["cursor"] = body["next_cursor"]
        elif style == "offset":
            rows += body["results"]
            query["offset"] = int(query.get("offset", 0)) + int(query["limit"])
            if query["offset"] >= body["total"]:
                return rows
        elif style == "page":
            rows += body["rows"]
            if body["page"] >= body["total_pages"]:
                return rows
            query["page"] = body["page"] + 1
        if url is None:
            return rows
    raise AssertionError("pagination did not end")


def size_params(style: str, n: int) -> dict[str, Any]:
    return {"page": {"per_page": n}, "servicenow": {"sysparm_limit": n}}.get(style, {"limit": n})


STYLES = ["link", "next_url", "cursor", "offset", "page", "servicenow"]

FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"state": "open"}, lambda r: r["state"] == "open"),
    ({"priority": ["2", "3"]}, lambda r: r["priority"] in (2, 3)),
    ({"active": "true", "state": "new"}, lambda r: r["active"] is True and r["state"] == "new"),
    ({"assigned_to": "null"}, lambda r: r["assigned_to"] is None),
    ({"reopen_count": "null"}, lambda r: r.get("reopen_count") is None),
]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("filt", range(len(FILTERS)), ids=lambda i: f"filter{i}")
def test_each_style_pages_through_all_rows_once(
    api: IncidentsAPI, client: httpx2.Client, style: str, filt: int
) -> None:
    params, keep = FILTERS[filt]
    expected = [r["number"] for r in api.dataset("incidents").snapshot.rows if keep(r)]
    assert expected, "the filter should select some rows"
    got = page_through(client, api.base_url, style, {**params, **size_params(style, 7)})
    assert [r["number"] for r in got] == expected


def test_styles_share_row_shape(api: IncidentsAPI, client: httpx2.Client) -> None:
    rows = client.get(f"{api.base_url}/styles/link/incidents?limit=250").json()
    assert len(rows) == 250
    first = rows[0]
    assert first["number"] == "INC0000001"
    assert len(first["sys_id"]) == 32
    assert first["state"] in ("new", "open", "in_progress", "closed")
    assert set(first["caller"]) == {"name", "email"}
    assert isinstance(first["tags"], list)
    assert any("reopen_count" not in r for r in rows)
    assert any(r.get("reopen_count", 0) is None for r in rows)
    assert {type(r["score"]) for r in rows} == {float}


def test_generation_is_deterministic() -> None:
    a = IncidentsAPI(n_rows=50, seed=3).dataset("incidents").snapshot.rows
    b = IncidentsAPI(n_rows=50, seed=3).dataset("incidents").snapshot.rows
    c = IncidentsAPI(n_rows=50, seed=4).dataset("incidents").snapshot.rows
    assert a == b
    assert a != c


def test_bulk_dataset_is_flat_with_eight_fields() -> None:
    rows = IncidentsAPI(n_rows=1000).dataset("bulk").snapshot.rows
    assert len(rows) == 1000
    assert all(len(r) == 8 for r in rows)
    assert all(not isinstance(v, dict | list) for r in rows for v in r.values())


def test_warm_fills_cache_with_identical_pages(client: httpx2.Client) -> None:
    with IncidentsAPI(n_rows=250, static_tokens=TOKENS) as api:
        cold = client.get(
            f"{api.base_url}/styles/link/bulk?limit=100&offset=200", headers=bearer("tok-bob-456")
        )
        assert api.warm("bulk", 100) == 3
        warm = client.get(
            f"{api.base_url}/styles/link/bulk?limit=100&offset=200", headers=bearer("tok-bob-456")
        )
        assert cold.content == warm.content
        assert [r["number"] for r in warm.json()] == [f"INC{i:07d}" for i in range(201, 251)]


def test_list_prefix_splits_commas(api: IncidentsAPI, client: httpx2.Client) -> None:
    expected = [
        r["number"] for r in api.dataset("incidents").snapshot.rows if r["state"] in ("new", "open")
    ]
    listed = client.get(f"{api.base_url}/list/styles/link/incidents?state=new,open&limit=1000")
    assert [r["number"] for r in listed.json()] == expected
    plain = client.get(f"{api.base_url}/styles/link/incidents?state=new,open&limit=1000")
    assert plain.json() == []


def test_ignore_filters(api: IncidentsAPI, client: httpx2.Client) -> None:
    r = client.get(f"{api.base_url}/styles/offset/incidents?state=open&_ignore_filters=1")
    assert r.json()["total"] == 250


def test_unknown_parameters_are_ignored(api: IncidentsAPI, client: httpx2.Client) -> None:
    r = client.get(f"{api.base_url}/styles/offset/incidents?no_such_field=1")
    assert r.json()["total"] == 250


def test_page_size_default_and_cap(client: httpx2.Client) -> None:
    with IncidentsAPI(n_rows=300, max_page_size=120) as api:
        assert len(client.get(f"{api.base_url}/styles/link/incidents").json()) == 100
        capped = client.get(f"{api.base_url}/styles/link/incidents?limit=5000")
        assert len(capped.json()) == 120
        assert "limit=120" in capped.links["next"]["url"]


@pytest.mark.parametrize(
    "query",
    [
        "styles/link/incidents?limit=0",
        "styles/link/incidents?limit=x",
        "styles/cursor/incidents?cursor=@@",
    ],
)
def test_bad_parameters_are_400(api: IncidentsAPI, client: httpx2.Client, query: str) -> None:
    r = client.get(f"{api.base_url}/{query}")
    assert r.status_code == 400
    assert "error" in r.json()


def test_unknown_route_and_dataset_are_404(api: IncidentsAPI, client: httpx2.Client) -> None:
    assert client.get(f"{api.base_url}/nope").status_code == 404
    assert client.get(f"{api.base_url}/styles/link/nothing").status_code == 404
    assert client.get(f"{api.base_url}/repos/other/repo/issues").status_code == 404


def test_custom_dataset(client: httpx2.Client) -> None:
    rows = [{"sys_id": f"id{i}", "kind": "a" if i % 2 else "b", "n": i} for i in range(10)]
    with IncidentsAPI({"things": rows}) as api:
        r = client.get(f"{api.base_url}/styles/offset/things?kind=a&limit=3")
        assert r.json() == {"results": [rows[1], rows[3], rows[5]], "total": 5}


# ------------------------------------------------------------------ ServiceNow and GitHub shapes


def test_servicenow_shape(api: IncidentsAPI, client: httpx2.Client) -> None:
    rows = api.dataset("incidents").snapshot.rows
    r = client.get(
        f"{api.base_url}/api/now/table/incident",
        params={"sysparm_limit": 10, "sysparm_offset": 20, "sysparm_fields": "number,state"},
    )
    assert r.headers["X-Total-Count"] == "250"
    assert r.json()["result"] == [{"number": x["number"], "state": x["state"]} for x in rows[20:30]]
    offsets = {
        rel: parse_qs(urlsplit(link["url"]).query)["sysparm_offset"]
        for rel, link in r.links.items()
    }
    assert offsets == {"first": ["0"], "prev": ["10"], "next": ["30"], "last": ["240"]}
    q = client.get(f"{api.base_url}/api/now/table/incident?sysparm_query=state=open^priority=1")
    expected = [x["number"] for x in rows if x["state"] == "open" and x["priority"] == 1]
    assert [x["number"] for x in q.json()["result"]] == expected
    one = client.get(f"{api.base_url}/api/now/table/incident/{rows[5]['sys_id']}")
    assert one.json() == {"result": rows[5]}


def test_github_issues_shape(api: IncidentsAPI, client: httpx2.Client) -> None:
    issues = api.dataset("issues").snapshot.rows
    url: str | None = f"{api.base_url}/repos/acme/widgets/issues?per_page=30"
    got: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        if url is None:
            break
        r = client.get(url)
        got += r.json()
        url = r.links.get("next", {}).get("url")
    assert [i["number"] for i in got] == [i["number"] for i in issues if i["state"] == "open"]
    first = got[0]
    assert isinstance(first["id"], int) and isinstance(first["comments"], int)
    assert set(first["user"]) == {"login"}
    every = client.get(f"{api.base_url}/repos/acme/widgets/issues?state=all&per_page=100&page=2")
    assert every.links["last"]["url"].endswith("page=3")
    assert every.links["next"]["url"].endswith("page=3")
    assert [i["number"] for i in every.json()] == list(range(101, 201))
    assert client.get(f"{api.base_url}/repos/acme/widgets/issues?state=x").status_code == 422


# ------------------------------------------------------------------ auth and per-user data


def test_per_user_isolation(auth_api: IncidentsAPI, client: httpx2.Client) -> None:
    seen: dict[str, set[str]] = {}
    for token, user in TOKENS.items():
        rows = page_through(client, auth_api.base_url, "link", {"limit": 50}, headers=bearer(token))
        assert rows and all(r["assigned_to"] == user for r in rows)
        seen[user] = {r["sys_id"] for r in rows}
        who = client.get(f"{auth_api.base_url}/whoami", headers=bearer(token))
        assert who.json() == {"user": user}
    assert not seen["alice"] & seen["bob"]
    all_rows = auth_api.dataset("incidents").snapshot.rows
    assigned = {r["sys_id"] for r in all_rows if r["assigned_to"] is not None}
    assert seen["alice"] | seen["bob"] | seen["carol"] == assigned


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": "Basic eDp5"}])
def test_auth_required(
    auth_api: IncidentsAPI, client: httpx2.Client, headers: dict[str, str]
) -> None:
    r = client.get(f"{auth_api.base_url}/styles/link/incidents", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "invalid_token"


def test_token_validator(client: httpx2.Client) -> None:
    calls: list[str] = []

    def validate(token: str) -> str | None:
        calls.append(token)
        return "bob" if token == "good" else None

    with IncidentsAPI(token_validator=validate) as api:
        assert client.get(f"{api.base_url}/whoami", headers=bearer("good")).json() == {
            "user": "bob"
        }
        assert client.get(f"{api.base_url}/whoami", headers=bearer("bad")).status_code == 401
    assert calls == ["good", "bad"]


def test_no_auth_means_no_user(api: IncidentsAPI, client: httpx2.Client) -> None:
    assert client.get(f"{api.base_url}/whoami", headers=bearer("x")).json() == {"user": None}


def test_request_log_has_users_and_never_tokens(
    auth_api: IncidentsAPI, client: httpx2.Client
) -> None:
    base = auth_api.base_url
    client.get(f"{base}/styles/link/incidents?limit=5", headers=bearer("tok-alice-123"))
    client.get(f"{base}/whoami", headers=bearer("tok-bob-456"))
    client.get(f"{base}/whoami?access_token=tok-carol-789")
    log = auth_api.requests
    assert [(r.path, r.user, r.status) for r in log] == [
        ("/styles/link/incidents", "alice", 200),
        ("/whoami", "bob", 200),
        ("/whoami", None, 401),
    ]
    assert log[0].query == {"limit": ["5"]}
    assert log[0].token_fp == token_fingerprint("tok-alice-123")
    assert log[2].query == {"access_token": ["***"]}
    dump = repr(log) + repr(auth_api)
    assert not any(token in dump for token in TOKENS)
    auth_api.clear_requests()
    assert auth_api.requests == []


def test_echo_shows_what_arrived(auth_api: IncidentsAPI, client: httpx2.Client) -> None:
    r = client.get(f"{auth_api.base_url}/echo", headers=bearer("abc"))
    assert r.json() == {"authorization": "Bearer abc"}
    assert client.get(f"{auth_api.base_url}/echo").json() == {"authorization": None}


# ------------------------------------------------------------------ writes


def test_create_update_delete(api: IncidentsAPI, client: httpx2.Client) -> None:
    base = f"{api.base_url}/styles/link/incidents"
    created = client.post(base, json={"short_description": "new one", "state": "new"})
    assert created.status_code == 201
    row = created.json()
    assert row["number"] == "INC0000251" and len(row["sys_id"]) == 32
    assert created.headers["Location"].endswith(row["sys_id"])
    listed = client.get(f"{base}?limit=1&offset=250").json()
    assert listed == [row]
    patched = client.patch(f"{base}/{row['sys_id']}", json={"state": "closed", "number": "X"})
    assert patched.json() == {**row, "state": "closed"}
    assert client.delete(f"{base}/{row['sys_id']}").status_code == 204
    assert client.get(f"{base}/{row['sys_id']}").status_code == 404
    assert client.post(base, content=b"[1]").status_code == 400


def test_writes_respect_ownership(auth_api: IncidentsAPI, client: httpx2.Client) -> None:
    base = f"{auth_api.base_url}/styles/link/incidents"
    rows = auth_api.dataset("incidents").snapshot.rows
    alices = next(r for r in rows if r["assigned_to"] == "alice")
    url = f"{base}/{alices['sys_id']}"
    denied = client.patch(url, json={"state": "closed"}, headers=bearer("tok-bob-456"))
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    assert client.delete(url, headers=bearer("tok-bob-456")).status_code == 403
    ok = client.patch(url, json={"state": "closed"}, headers=bearer("tok-alice-123"))
    assert ok.status_code == 200 and ok.json()["state"] == "closed"
    mine = client.post(base, json={"short_description": "x"}, headers=bearer("tok-bob-456"))
    assert mine.json()["assigned_to"] == "bob"
    theirs = client.post(base, json={"assigned_to": "alice"}, headers=bearer("tok-bob-456"))
    assert theirs.status_code == 403


def test_idempotency_key(api: IncidentsAPI, client: httpx2.Client) -> None:
    base = f"{api.base_url}/styles/link/incidents"
    key = {"Idempotency-Key": "k1"}
    first = client.post(base, json={"short_description": "once"}, headers=key)
    second = client.post(base, json={"short_description": "once"}, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(api.dataset("incidents").snapshot.rows) == 251
    other = client.post(base, json={"short_description": "different"}, headers=key)
    assert other.status_code == 422


# ------------------------------------------------------------------ faults


def link_url(api: IncidentsAPI, offset: int = 0, limit: int = 10) -> str:
    return f"{api.base_url}/styles/link/incidents?limit={limit}&offset={offset}"


def test_fault_status_on_one_page_once(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(
        Fault("status", path="/styles/", page=2, status=429, headers={"Retry-After": "1"})
    )
    assert client.get(link_url(api, 0)).status_code == 200
    r = client.get(link_url(api, 10))
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]
    assert client.get(link_url(api, 10)).status_code == 200
    assert [rec.fault for rec in api.requests] == [None, "status", None]
    assert api.faults.pending == []


def test_fault_401_invalid_token_once(auth_api: IncidentsAPI, client: httpx2.Client) -> None:
    auth_api.faults.add(
        Fault("status", status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    )
    headers = bearer("tok-alice-123")
    first = client.get(f"{auth_api.base_url}/whoami", headers=headers)
    assert first.status_code == 401 and first.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in first.headers["WWW-Authenticate"]
    assert client.get(f"{auth_api.base_url}/whoami", headers=headers).status_code == 200


def test_fault_matches_user_and_times(auth_api: IncidentsAPI, client: httpx2.Client) -> None:
    auth_api.faults.add(Fault("status", status=503, user="bob", times=2))
    url = f"{auth_api.base_url}/whoami"
    assert client.get(url, headers=bearer("tok-alice-123")).status_code == 200
    codes = [client.get(url, headers=bearer("tok-bob-456")).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_fault_unlimited_until_cleared(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("status", status=500, times=None))
    assert [client.get(link_url(api)).status_code for _ in range(3)] == [500, 500, 500]
    api.faults.clear()
    assert client.get(link_url(api)).status_code == 200


def test_fault_html_error(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("html_error"))
    r = client.get(link_url(api))
    assert r.status_code == 502
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.text.lstrip().startswith("<html>")


def test_fault_invalid_json(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("invalid_json"))
    r = client.get(link_url(api))
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_fault_wrong_content_type(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("wrong_content_type"))
    r = client.get(link_url(api))
    assert r.headers["Content-Type"].startswith("text/plain")
    assert len(orjson.loads(r.content)) == 10


@pytest.mark.parametrize("kind", ["truncated_body", "close_connection", "reset"])
def test_fault_broken_connections(api: IncidentsAPI, client: httpx2.Client, kind: str) -> None:
    api.faults.add(Fault(kind))  # type: ignore[arg-type]
    with pytest.raises(httpx2.TransportError):
        client.get(link_url(api)).read()
    assert client.get(link_url(api)).status_code == 200  # the server keeps serving
    assert api.requests[0].fault == kind
    assert api.requests[0].status == (200 if kind == "truncated_body" else 0)


def test_fault_truncated_body_is_short(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("truncated_body"))
    received: list[bytes] = []
    with pytest.raises(httpx2.RemoteProtocolError), client.stream("GET", link_url(api)) as r:
        declared = int(r.headers["Content-Length"])
        received.extend(r.iter_raw())
    assert 0 < len(b"".join(received)) < declared


def test_fault_delay_exceeds_client_timeout(api: IncidentsAPI) -> None:
    api.faults.add(Fault("delay", seconds=3))
    with httpx2.Client(timeout=0.2) as impatient, pytest.raises(httpx2.ReadTimeout):
        impatient.get(link_url(api))


def test_fault_delay_then_normal_answer(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("delay", seconds=0.05))
    assert len(client.get(link_url(api)).json()) == 10


def test_fault_trickle(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("trickle", chunk=512, seconds=0.001))
    slow = client.get(link_url(api))
    assert slow.json() == client.get(link_url(api)).json()
    api.faults.add(Fault("trickle", chunk=1, seconds=2))
    with httpx2.Client(timeout=0.3) as impatient, pytest.raises(httpx2.ReadTimeout):
        impatient.get(link_url(api))


def test_fault_redirect_cross_origin_drops_token(auth_api: IncidentsAPI) -> None:
    with IncidentsAPI(n_rows=1) as other, httpx2.Client(timeout=5) as client:
        auth_api.faults.add(Fault("redirect", url=f"{other.base_url}/echo"))
        r = client.get(f"{auth_api.base_url}/whoami", headers=bearer("tok-alice-123"))
        assert r.status_code == 302 and r.headers["Location"] == f"{other.base_url}/echo"
        auth_api.faults.add(Fault("redirect", url=f"{other.base_url}/echo"))
        followed = client.get(
            f"{auth_api.base_url}/whoami", headers=bearer("tok-alice-123"), follow_redirects=True
        )
        assert followed.json() == {"authorization": None}


def test_fault_next_loop(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("next_loop", path="/styles/link/", offset=10))
    r = client.get(link_url(api, 10))
    assert parse_qs(urlsplit(r.links["next"]["url"]).query)["offset"] == ["10"]
    api.faults.add(Fault("next_loop", path="/styles/cursor/"))
    body = client.get(f"{api.base_url}/styles/cursor/incidents?limit=10").json()
    assert decode_cursor(body["next_cursor"]) == 0


def test_fault_next_foreign(api: IncidentsAPI, client: httpx2.Client) -> None:
    api.faults.add(Fault("next_foreign", url="http://127.0.0.2:9"))
    r = client.get(link_url(api))
    assert r.links["next"]["url"].startswith("http://127.0.0.2:9/styles/link/incidents?")
    api.faults.add(Fault("next_foreign", url="http://127.0.0.2:9"))
    body = client.get(f"{api.base_url}/styles/next_url/incidents?limit=10").json()
    assert body["links"]["next"].startswith("http://127.0.0.2:9/")
    assert client.get(link_url(api)).links["next"]["url"].startswith(api.base_url)


def run_with_fault_rate(seed: int) -> list[str]:
    outcomes: list[str] = []
    with IncidentsAPI(n_rows=20, seed=seed, fault_rate=0.3) as api, httpx2.Client(timeout=5) as c:
        for _ in range(40):
            try:
                outcomes.append(str(c.get(link_url(api, 0, 5)).status_code))
            except httpx2.TransportError:
                outcomes.append("error")
    return outcomes


def test_fault_rate_is_seeded() -> None:
    first = run_with_fault_rate(5)
    assert first == run_with_fault_rate(5)
    assert {"200", "500", "error"} <= set(first)


# ------------------------------------------------------------------ python -m


def test_latency_applies_to_every_request() -> None:
    api = IncidentsAPI(n_rows=1, latency=3)
    with api, httpx2.Client(timeout=0.2) as impatient, pytest.raises(httpx2.ReadTimeout):
        impatient.get(f"{api.base_url}/whoami")


@pytest.mark.parametrize("stop", ["terminate", "interrupt"])
def test_module_mode_ready_and_clean_stop(stop: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotetables.demo.api.server",
            "--rows",
            "300",
            "--port",
            "0",
            "--token",
            "secret-t=alice",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:")
        base = line.split()[1]
        with httpx2.Client(timeout=5) as c:
            r = c.get(f"{base}/styles/offset/bulk?limit=1", headers=bearer("secret-t"))
            assert r.json()["total"] == 300
            assert c.get(f"{base}/whoami").status_code == 401
        if stop == "terminate":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
