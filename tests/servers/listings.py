"""Loopback mocks of two listings that are not GET with query parameters, built from their
public documentation (see /work/shared/reference/real-api-facts.md):

* :class:`JiraSearch`: Jira Cloud's ``POST /rest/api/3/search/jql``
  (developer.atlassian.com, issue search): body ``{"jql", "maxResults", "fields",
  "nextPageToken"}``; answer ``{"issues": [{"id", "key", "self", "fields": {...}}],
  "nextPageToken"?, "isLast"}`` with no total; the last page has no ``nextPageToken``. Without
  ``fields`` an issue carries only ``id``, ``key``, ``self``. Bad JQL: 400
  ``{"errorMessages": [...], "errors": {}}``. A 429 carries ``Retry-After`` (``throttle``).
* :class:`GitHubGraphQL`: GitHub's ``POST /graphql`` (docs.github.com/en/graphql): body
  ``{"query", "variables"}``; a connection needs ``first`` (1-100), pages with ``after`` and
  ``pageInfo { hasNextPage endCursor }``; errors come with 200 as ``{"data": null, "errors":
  [{"type": "NOT_FOUND", "path", "locations", "message"}]}``. The mock reads the variables, not
  the document (it checks the document asks for ``pageInfo``, ``endCursor`` and ``$after``).

Each mock records the JSON bodies it was sent.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]

STATUSES = ("To Do", "In Progress", "Done")


class JiraSearch:
    def __init__(self, n: int = 23) -> None:
        self.issues = [
            {
                "id": str(10000 + i),
                "key": f"{'ABC' if i % 3 else 'XYZ'}-{i + 1}",
                "fields": {
                    "summary": f"Issue number {i + 1}",
                    "status": {"name": STATUSES[i % 3], "statusCategory": {"key": "new"}},
                    "assignee": None if i % 4 == 0 else {"displayName": f"User {i % 4}"},
                    "created": f"2026-01-{1 + i % 28:02d}T10:00:00.000+0000",
                    "priority": {"name": "High" if i % 2 else "Low"},
                },
            }
            for i in range(n)
        ]
        self.bodies: list[Any] = []
        self.throttle = 0  # answer this many requests with 429 + Retry-After first

    _JQL = re.compile(
        r'^\s*project\s*=\s*"?(?P<project>[A-Z][A-Z0-9]*)"?'
        r'(?:\s+AND\s+status\s*=\s*"(?P<status>[^"]*)")?'
        r"(?:\s+ORDER\s+BY\s+key(?:\s+ASC)?)?\s*$",
        re.IGNORECASE,
    )

    def post(self, path: str, body: Any) -> Answer:
        if path != "/rest/api/3/search/jql":
            return 404, {}, {"errorMessages": ["Not found"], "errors": {}}
        self.bodies.append(body)
        if self.throttle > 0:
            self.throttle -= 1
            return 429, {"Retry-After": "2", "RateLimit-Reason": "jira-burst-based"}, {
                "errorMessages": ["Rate limit exceeded."], "errors": {}
            }  # fmt: skip
        if not isinstance(body, dict) or not isinstance(body.get("jql"), str):
            return 400, {}, {"errorMessages": ["The JQL query is missing."], "errors": {}}
        m = self._JQL.match(body["jql"])
        if m is None:
            return 400, {}, {
                "errorMessages": [f"Error in the JQL Query: '{body['jql'][:40]}' is not supported."],
                "errors": {},
            }  # fmt: skip
        size = body.get("maxResults", 50)
        if not isinstance(size, int) or size < 1:
            return (
                400,
                {},
                {"errorMessages": ["maxResults must be a positive integer."], "errors": {}},
            )
        token = body.get("nextPageToken")
        start = int(base64.b64decode(token).decode()) if isinstance(token, str) else 0
        wanted = [
            i for i in self.issues
            if i["key"].startswith(m["project"].upper() + "-")
            and (m["status"] is None or i["fields"]["status"]["name"] == m["status"])
        ]  # fmt: skip
        page = wanted[start : start + size]
        fields = body.get("fields")
        out = []
        for issue in page:
            item: dict[str, Any] = {"id": issue["id"], "key": issue["key"],
                                    "self": f"https://example.atlassian.net/rest/api/3/issue/{issue['id']}"}  # fmt: skip
            if isinstance(fields, list):
                item["fields"] = {k: v for k, v in issue["fields"].items() if k in fields}
            out.append(item)
        answer: dict[str, Any] = {"issues": out, "isLast": start + size >= len(wanted)}
        if start + size < len(wanted):
            answer["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
        return 200, {}, answer


class GitHubGraphQL:
    def __init__(self, n: int = 17) -> None:
        self.issues = [
            {
                "number": i + 1,
                "title": f"Widget bug {i + 1}",
                "state": "OPEN" if i % 3 else "CLOSED",
                "author": {"login": ["octocat", "hubot", "monalisa"][i % 3]},
                "createdAt": f"2026-02-{1 + i % 28:02d}T09:00:00Z",
            }
            for i in range(n)
        ]
        self.bodies: list[Any] = []

    def post(self, path: str, body: Any) -> Answer:
        if path != "/graphql":
            return (
                404,
                {},
                {"message": "Not Found", "documentation_url": "https://docs.github.com/graphql"},
            )
        self.bodies.append(body)
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4990",
                   "x-ratelimit-resource": "graphql"}  # fmt: skip
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, headers, {"message": "Problems parsing JSON",
                                  "documentation_url": "https://docs.github.com/graphql"}  # fmt: skip
        doc, var = body["query"], body.get("variables") or {}
        for needed in ("pageInfo", "endCursor", "$after"):
            if needed not in doc:
                return (
                    200,
                    headers,
                    {"errors": [{"message": f"the mock expects {needed} in the query"}]},
                )
        first = var.get("first")
        if not isinstance(first, int) or not 1 <= first <= 100:
            return 200, headers, {"data": None, "errors": [{
                "type": "MISSING_PAGINATION_BOUNDARIES", "path": ["repository", "issues"],
                "message": "You must provide a `first` or `last` value to properly paginate "
                "the `issues` connection.",
            }]}  # fmt: skip
        if (var.get("owner"), var.get("name")) != ("acme", "widgets"):
            return 200, headers, {"data": {"repository": None}, "errors": [{
                "type": "NOT_FOUND", "path": ["repository"],
                "locations": [{"line": 2, "column": 3}],
                "message": f"Could not resolve to a Repository with the name "
                f"'{var.get('owner')}/{var.get('name')}'.",
            }]}  # fmt: skip
        states = var.get("states")
        if isinstance(states, str):  # GraphQL input coercion: one value is a list of one
            states = [states]
        rows = [i for i in self.issues if not states or i["state"] in states]
        after = var.get("after")
        start = int(base64.b64decode(after).decode().split(":")[1]) if after else 0
        page = rows[start : start + first]
        end = start + len(page)
        cursor = base64.b64encode(f"cursor:{end}".encode()).decode() if page else None
        connection = {
            "nodes": page,
            "pageInfo": {"hasNextPage": end < len(rows), "endCursor": cursor},
        }
        return 200, headers, {"data": {"repository": {"issues": connection}}}


@contextmanager
def serve(mock: JiraSearch | GitHubGraphQL) -> Iterator[str]:
    """The mock on 127.0.0.1 (a free port) while the block runs; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            if "json" not in self.headers.get("Content-Type", ""):
                status, headers, answer = 415, {}, {"message": "Unsupported Media Type"}
            else:
                status, headers, answer = mock.post(self.path, body)
            self.reply(status, headers, answer)

        def do_GET(self) -> None:
            self.reply(405, {}, {"message": "Method Not Allowed"})

        def reply(self, status: int, headers: dict[str, str], answer: Any) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
