"""The test API's real-API quirks, chosen per request: loose filtering and ACLs after paging."""

from __future__ import annotations

import httpx2

from remotetables.demo.api.data import loose_match, strict_match
from remotetables.demo.api.server import IncidentsAPI


def test_loose_and_strict_matching() -> None:
    accepted = frozenset({"2"})
    assert strict_match("p", 2, accepted) and not strict_match("p", 2.0, accepted)
    for value in (2, 2.0, " 2", "2e0", "+2"):
        assert loose_match("p", value, accepted), value
    assert loose_match("s", "OPEN", frozenset({"open"}))
    assert loose_match("b", True, frozenset({"1"})) and loose_match("b", "yes", frozenset({"true"}))
    assert not loose_match("p", 3, accepted) and not loose_match("p", None, accepted)
    rows = [{"id": i, "p": v} for i, v in enumerate([2, "2", 2.0, " 2", 3])]
    with IncidentsAPI(datasets={"x": rows}) as api, httpx2.Client() as client:
        url = f"{api.base_url}/styles/link/x?p=2"
        assert [r["id"] for r in client.get(url).json()] == [0, 1]
        assert [r["id"] for r in client.get(url + "&_match=loose").json()] == [0, 1, 2, 3]
        assert client.get(url + "&_match=nope").status_code == 400


def test_acl_after_paging_leaves_short_and_empty_pages_with_links() -> None:
    rows = [{"id": i, **({"_acl": "deny"} if 3 <= i < 6 or i == 7 else {})} for i in range(9)]
    with IncidentsAPI(datasets={"incidents": rows}) as api, httpx2.Client() as client:
        url = f"{api.base_url}/api/now/table/incident?_acl=1&sysparm_limit=3"
        pages = []
        while url:
            resp = client.get(url)
            pages.append([r["id"] for r in resp.json()["result"]])
            assert resp.headers["X-Total-Count"] == "9"  # counted before the ACLs
            url = httpx2.Response(200, headers=resp.headers).links.get("next", {}).get("url")
        assert pages == [[0, 1, 2], [], [6, 8]]
