"""Loopback mocks of real APIs, each built from the service's public documentation.

:class:`LoopbackAPI` serves a plain handler function on 127.0.0.1 in a thread and logs every
request target exactly as it arrived (raw path and query), so a test can assert what went out::

    with LoopbackAPI(GitHubIssues()) as api:
        api.base_url, api.targets

:class:`GitHubIssues` follows docs.github.com (REST: "List repository issues", "List organization
repositories", "Using pagination in the REST API"; summarised in
shared/reference/real-api-facts.md section 2): ``GET /repos/{owner}/{repo}/issues`` returns a
bare JSON array; ``state=open|closed|all`` (default open), ``since`` (ISO 8601
``YYYY-MM-DDTHH:MM:SSZ``: issues *updated* at or after), ``assignee`` (a login, ``none``,
``*``), ``sort=created|updated|comments`` (default created), ``direction=asc|desc`` (default
desc), ``per_page`` (default 30, max 100) and ``page``; the ``link`` header carries
``rel="next"`` while more pages follow; an unknown repository is a 404 ``{"message": "Not
Found", "documentation_url": ...}``. ``GET /orgs/{org}/repos`` lists repositories
(``name``, ``full_name``, ``owner.login``).

Sources: GitHub's published OpenAPI description (github/rest-api-description,
descriptions/api.github.com/api.github.com.yaml, operations ``issues/list-for-repo`` and
``repos/list-for-org``; read through the parameter texts that clients generated from it quote,
the description itself being too large to fetch here) and https://docs.github.com/en/rest/issues/issues#list-repository-issues:
``state`` enum open/closed/all default open; ``sort`` created/updated/comments default created;
``direction`` asc/desc default desc; ``since`` "Only show results that were last updated after
the given time" (``YYYY-MM-DDTHH:MM:SSZ``); ``per_page`` max 100 default 30; ``page`` default 1.
The ``link`` header (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api)
is one comma-separated header with ``rel="prev"``, ``"next"``, ``"last"``, ``"first"`` where
they apply, absent when one page holds everything.

Left open by the docs, chosen here: whether ``since`` is inclusive ("after"): this mock keeps
``updated_at >= since`` (remotetables maps ``>=`` to it; a strictly-after API would drop rows
updated at exactly that second); ``/orgs/{org}/repos`` ``sort``/``direction``/``type`` are not
modelled (rows in a fixed order; docs: sort default created, direction asc for full_name else
desc, type default all); an invalid ``state`` is answered 422 here (GitHub documents 422
"Validation failed" for the operation but not for which inputs).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = ["GitHubIssues", "LoopbackAPI", "Reply", "github_dataset"]


@dataclass
class Reply:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[str, list[str], list[tuple[str, str]], str], Reply]


class LoopbackAPI:
    """``handler(method, path segments (decoded one by one), query pairs, base URL)``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.targets: list[str] = []  # raw request targets, in order
        owner = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.targets.append(self.path)
                parts = urlsplit(self.path)
                # split the raw path first: an encoded / stays inside its segment
                segments = [unquote(s) for s in parts.path.split("/")[1:]]
                query = parse_qsl(parts.query, keep_blank_values=True)
                reply = owner.handler("GET", segments, query, owner.base_url)
                body = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackAPI:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def github_dataset() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Issues per (owner, repo), shaped as GitHub returns them (a subset of the fields)."""
    repos = [("acme", "widgets"), ("acme", "gadgets"), ("acme", "a/b"), ("octo", "hello")]
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    n = 0
    for r, (owner, repo) in enumerate(repos):
        issues = []
        for k in range(7 + 5 * r):
            n += 1
            day = 1 + (n * 7) % 28
            issues.append(
                {
                    "id": 1000 + n,
                    "number": k + 1,
                    "title": f"{repo} issue {k + 1}",
                    "state": "open" if (n % 3) else "closed",
                    "user": {"login": ["mona", "hubot", "octocat"][n % 3]},
                    "assignee": None if n % 4 == 0 else {"login": ["mona", "hubot"][n % 2]},
                    "comments": (n * 5) % 11,
                    "created_at": f"2024-05-{1 + n % 28:02d}T08:00:00Z",
                    "updated_at": f"2024-06-{day:02d}T{n % 24:02d}:00:00Z",
                }
            )
        out[(owner, repo)] = issues
    return out


class GitHubIssues:
    """The GitHub REST shapes above, over :func:`github_dataset`."""

    def __init__(self) -> None:
        self.issues = github_dataset()

    def repos(self, org: str) -> list[dict[str, Any]]:
        return [
            {"id": i, "name": repo, "full_name": f"{owner}/{repo}", "owner": {"login": owner}}
            for i, (owner, repo) in enumerate(self.issues)
            if owner == org
        ]

    def __call__(
        self, method: str, seg: list[str], query: list[tuple[str, str]], base: str
    ) -> Reply:
        q = dict(query)
        if len(seg) == 3 and seg[0] == "orgs" and seg[2] == "repos":
            return self._paged(self.repos(seg[1]), q, base, "/orgs/" + seg[1] + "/repos")
        if len(seg) != 4 or seg[0] != "repos" or seg[3] != "issues":
            return Reply(
                404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            )
        rows = self.issues.get((seg[1], seg[2]))
        if rows is None:
            return Reply(
                404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            )
        state = q.get("state", "open")
        if state not in ("open", "closed", "all"):
            return Reply(422, {"message": "Validation Failed"})
        out = [r for r in rows if state == "all" or r["state"] == state]
        if "since" in q:
            out = [r for r in out if r["updated_at"] >= q["since"]]
        if "assignee" in q:
            a = q["assignee"]
            if a == "none":
                out = [r for r in out if r["assignee"] is None]
            elif a == "*":
                out = [r for r in out if r["assignee"] is not None]
            else:
                out = [r for r in out if r["assignee"] and r["assignee"]["login"] == a]
        sort = q.get("sort", "created")
        field = {"created": "created_at", "updated": "updated_at", "comments": "comments"}[sort]
        out.sort(key=lambda r: (r[field], r["id"]), reverse=q.get("direction", "desc") == "desc")
        path = "/repos/" + "/".join(s.replace("/", "%2F") for s in seg[1:3]) + "/issues"
        return self._paged(out, q, base, path)

    @staticmethod
    def _paged(rows: list[dict[str, Any]], q: dict[str, str], base: str, path: str) -> Reply:
        per_page = min(100, int(q.get("per_page", "30")))
        page = int(q.get("page", "1"))
        chunk = rows[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(rows) // per_page))
        links = []
        for rel, n in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
                links.append(f'<{base}{path}?{urlencode({**q, "page": str(n)})}>; rel="{rel}"')
        # one header, comma-separated, in GitHub's order (prev, next, last, first)
        return Reply(200, chunk, (("Link", ", ".join(links)),) if links else ())
