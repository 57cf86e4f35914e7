"""Loopback mocks of the services `remotetables init` has presets for, each built from that
service's public documentation (/work/shared/reference/real-api-facts.md and the pages it
cites): its row shape, paging and its quirks, error shape and rate-limit headers.

Every mock checks what the docs require of a request (page-size bounds, bearer token) and
answers the documented error otherwise; ``requests`` records (path, query) of each request.
``quirks`` turns on the documented hazards: ServiceNow's ACL-short first page, Google
Calendar's empty page with a token, Slack's short page and a 429 + Retry-After, Graph's 429 +
Retry-After, Stripe's header-less 429, GitHub's x-ratelimit-* headers, Google's 403
rateLimitExceeded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.servers.listings import JiraSearch

Answer = tuple[int, dict[str, str], Any]
Query = dict[str, str]


class Service:
    """Base: one answer per GET (and POST) request; ``base`` is set when served."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Query]] = []
        self.base = ""
        self.lock = threading.Lock()
        self.once: set[str] = set()  # quirks already shown

    def first_time(self, what: str) -> bool:
        with self.lock:
            if what in self.once:
                return False
            self.once.add(what)
            return True

    def get(self, path: str, q: Query, token: str) -> Answer:
        raise NotImplementedError

    def post(self, path: str, body: Any, token: str) -> Answer:
        return 405, {}, {"message": "Method Not Allowed"}


def _int(q: Query, name: str, default: int) -> int:
    try:
        return int(q.get(name, default))
    except ValueError:
        return -1


class ServiceNow(Service):
    """``GET /api/now/table/{table}``: ``{"result": [...]}``, string values, ``sysparm_limit`` /
    ``sysparm_offset``, ``X-Total-Count`` and ``Link`` headers, name=value filters; the first
    page loses rows to ACLs (KB3047115: fewer rows than the limit while more follow);
    references are ``{"link", "value"}`` unless ``sysparm_exclude_reference_link=true``;
    ``X-RateLimit-Limit`` / ``X-RateLimit-Reset`` on every answer; errors
    ``{"error": {"message", "detail"}, "status": "failure"}``."""

    TABLES = ("incident", "problem", "change_request", "sys_user", "task")

    def __init__(self, n: int = 23) -> None:
        super().__init__()
        self.rows: dict[str, list[dict[str, Any]]] = {}
        for t in self.TABLES:
            self.rows[t] = [
                {
                    "sys_id": f"{t[:3]}{i:029d}",
                    "number": f"{t[:3].upper()}{1000 + i}",
                    "short_description": f"{t} {i}",
                    "state": str(1 + i % 3),
                    "priority": str(1 + i % 4),
                    "assigned_to": {"link": "https://x/api/now/table/sys_user/u1", "value": f"u{i % 2}"},
                    "caller_id": {"link": "https://x/api/now/table/sys_user/u9", "value": "u9"},
                    "opened_at": f"2026-01-{1 + i % 28:02d} 10:00:00",
                    "active": "true" if i % 2 else "false",
                    "type": "normal", "risk": "3", "start_date": "", "end_date": "",
                    "user_name": f"user{i}", "name": f"User {i}", "email": f"user{i}@example.com",
                    "department": "", "sys_class_name": t,
                }
                for i in range(n)
            ]  # fmt: skip
        self.hidden = {0, 2}  # row indexes an ACL hides on the first page

    def get(self, path: str, q: Query, token: str) -> Answer:
        headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Reset": "1900000000",
                   "X-RateLimit-Rule": "a1b2c3"}  # fmt: skip
        table = path.removeprefix("/api/now/table/")
        if table not in self.rows:
            return 400, headers, {"error": {"message": f"Invalid table {table}", "detail": None},
                                  "status": "failure"}  # fmt: skip
        limit, offset = _int(q, "sysparm_limit", 10000), _int(q, "sysparm_offset", 0)
        if limit < 1 or offset < 0:
            return 400, headers, {"error": {"message": "Invalid sysparm_limit", "detail": None},
                                  "status": "failure"}  # fmt: skip
        skip = {"sysparm_limit", "sysparm_offset", "sysparm_exclude_reference_link",
                "sysparm_display_value", "sysparm_fields", "sysparm_query"}  # fmt: skip
        matched = [
            r for r in self.rows[table]
            if all(_value(r.get(k)) == v for k, v in q.items() if k not in skip)
        ]  # fmt: skip
        page = [
            r for n, r in enumerate(matched[offset : offset + limit], start=offset)
            if not (offset == 0 and n in self.hidden)
        ]  # fmt: skip
        plain = q.get("sysparm_exclude_reference_link") == "true"
        out = [{k: _value(v) if plain else v for k, v in r.items()} for r in page]
        headers["X-Total-Count"] = str(len(matched))
        if offset + limit < len(matched):
            nxt = {**q, "sysparm_offset": str(offset + limit)}
            headers["Link"] = f'<{self.base}{path}?{urlencode(nxt)}>;rel="next"'
        return 200, headers, {"result": out}


def _value(v: Any) -> Any:
    return v["value"] if isinstance(v, dict) and "value" in v else v


class GitHub(Service):
    """Bare arrays, ``per_page`` <= 100 (more is clamped), ``Link`` rel="next"/"last" (absent
    on a single page), ``x-ratelimit-*`` on every answer; ``/issues`` includes pull requests
    (with a ``pull_request`` key); errors ``{"message", "documentation_url"}``."""

    def __init__(self) -> None:
        super().__init__()
        self.remaining = 5000
        owners = ["octocat", "acme"]
        self.repos = [{"id": 100 + i, "name": f"repo{i}", "full_name": f"{owners[i % 2]}/repo{i}",
                       "owner": {"login": owners[i % 2]}, "private": i % 3 == 0,
                       "visibility": "private" if i % 3 == 0 else "public",
                       "description": None if i % 4 == 0 else f"Repo {i}", "language": "Python",
                       "stargazers_count": i * 3, "open_issues_count": i, "updated_at": "2026-03-01T00:00:00Z"}
                      for i in range(7)]  # fmt: skip
        self.issues = [{"id": 500 + i, "number": i + 1, "title": f"Issue {i + 1}",
                        "state": "open" if i % 3 else "closed", "user": {"login": "octocat"},
                        "assignee": None if i % 2 else {"login": "hubot"}, "comments": i,
                        "repository": {"full_name": "acme/widgets"},
                        "created_at": "2026-02-01T00:00:00Z", "updated_at": "2026-02-02T00:00:00Z",
                        **({"pull_request": {"url": f"https://api.github.com/repos/acme/widgets/pulls/{i + 1}"}}
                           if i % 4 == 0 else {})}
                       for i in range(45)]  # fmt: skip
        self.pulls = [{"id": 900 + i, "number": i + 1, "title": f"PR {i + 1}",
                       "state": "open" if i % 2 else "closed", "user": {"login": "monalisa"},
                       "head": {"ref": f"feature-{i}"}, "base": {"ref": "main"}, "draft": False,
                       "created_at": "2026-02-03T00:00:00Z", "merged_at": None}
                      for i in range(12)]  # fmt: skip
        self.commits = [{"sha": f"{i:040x}", "commit": {"message": f"Commit {i}",
                         "author": {"name": "Mona", "date": "2026-02-04T00:00:00Z"}},
                         "author": {"login": "monalisa"}} for i in range(9)]  # fmt: skip

    def get(self, path: str, q: Query, token: str) -> Answer:
        with self.lock:
            self.remaining -= 1
            remaining = self.remaining
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(remaining),
                   "x-ratelimit-used": str(5000 - remaining), "x-ratelimit-reset": "1900000000",
                   "x-ratelimit-resource": "core"}  # fmt: skip
        if token == "-":
            return 401, headers, {"message": "Requires authentication",
                                  "documentation_url": "https://docs.github.com/rest"}  # fmt: skip
        data: list[dict[str, Any]]
        if path == "/user/repos":
            data = [r for r in self.repos if q.get("visibility", "all") in ("all", r["visibility"])]
        elif path == "/issues":
            data = [i for i in self.issues if q.get("state", "open") in ("all", i["state"])]
        elif path == "/repos/acme/widgets/pulls":
            data = [p for p in self.pulls if q.get("state", "open") in ("all", p["state"])]
        elif path == "/repos/acme/widgets/commits":
            data = self.commits
        else:
            return 404, headers, {"message": "Not Found",
                                  "documentation_url": "https://docs.github.com/rest"}  # fmt: skip
        per = min(max(_int(q, "per_page", 30), 1), 100)
        page = max(_int(q, "page", 1), 1)
        last = max(1, -(-len(data) // per))
        if last > 1:
            links = []
            if page < last:
                links.append(
                    f'<{self.base}{path}?{urlencode({**q, "page": page + 1})}>; rel="next"'
                )
                links.append(f'<{self.base}{path}?{urlencode({**q, "page": last})}>; rel="last"')
            if links:
                headers["link"] = ", ".join(links)
        return 200, headers, data[(page - 1) * per : page * per]


class Jira(JiraSearch, Service):
    """POST search/jql (tests/servers/listings.py) and ``GET /rest/api/3/project/search``:
    ``{"startAt", "maxResults", "total", "isLast", "values"}`` (maxResults <= 50)."""

    PREFIX = "/ex/jira/YOUR_CLOUD_ID"

    def __init__(self) -> None:
        JiraSearch.__init__(self)
        Service.__init__(self)
        self.projects = [{"id": str(10000 + i), "key": k, "name": f"Project {k}",
                          "projectTypeKey": "software"} for i, k in enumerate(["ABC", "XYZ", "OPS"] * 20)]  # fmt: skip

    def post(self, path: str, body: Any, token: str = "") -> Answer:  # type: ignore[override]
        return JiraSearch.post(self, path.removeprefix(self.PREFIX), body)

    def get(self, path: str, q: Query, token: str) -> Answer:
        if path.removeprefix(self.PREFIX) != "/rest/api/3/project/search":
            return 404, {}, {"errorMessages": ["Not found"], "errors": {}}
        start, size = _int(q, "startAt", 0), min(_int(q, "maxResults", 50), 50)
        values = self.projects[start : start + size]
        return 200, {}, {"self": "x", "startAt": start, "maxResults": size,
                         "total": len(self.projects), "isLast": start + size >= len(self.projects),
                         "values": values}  # fmt: skip


class Graph(Service):
    """``{"@odata.context", "value", "@odata.nextLink"}`` (the whole next URL, with
    ``$skiptoken``); ``$top`` 1-999 (else 400 ``{"error": {"code", "message", "innerError"}}``);
    the first request of a run is throttled: 429 + ``Retry-After``."""

    def __init__(self) -> None:
        super().__init__()
        self.data = {
            "/v1.0/users": [{"id": f"u{i}", "displayName": f"User {i}", "mail": f"u{i}@contoso.com",
                             "userPrincipalName": f"u{i}@contoso.com", "jobTitle": None,
                             "department": "Sales" if i % 2 else "R&D"} for i in range(25)],
            "/v1.0/groups": [{"id": f"g{i}", "displayName": f"Group {i}", "mail": None,
                              "description": "", "groupTypes": ["Unified"] if i % 2 else []}
                             for i in range(4)],
            "/v1.0/me/messages": [{"id": f"m{i}", "subject": f"Hello {i}",
                                   "from": {"emailAddress": {"address": "boss@contoso.com"}},
                                   "receivedDateTime": "2026-03-01T08:00:00Z", "isRead": i % 2 == 0}
                                  for i in range(12)],
            "/v1.0/me/events": [{"id": f"e{i}", "subject": f"Meeting {i}",
                                 "start": {"dateTime": "2026-03-02T09:00:00.0000000", "timeZone": "UTC"},
                                 "end": {"dateTime": "2026-03-02T10:00:00.0000000", "timeZone": "UTC"},
                                 "organizer": {"emailAddress": {"address": "boss@contoso.com"}},
                                 "location": {"displayName": "Room 1"}} for i in range(7)],
        }  # fmt: skip

    def get(self, path: str, q: Query, token: str) -> Answer:
        if self.first_time("throttle"):
            return 429, {"Retry-After": "1"}, _graph_error("TooManyRequests", "Too many requests")
        if path not in self.data:
            return 404, {}, _graph_error("Request_ResourceNotFound", f"Resource {path} not found")
        top = _int(q, "$top", 100)
        if not 1 <= top <= 999:
            return 400, {}, _graph_error("Request_UnsupportedQuery", "Invalid page size specified")
        start = int(q.get("$skiptoken", "0"))
        rows = self.data[path]
        page = rows[start : start + top]
        body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{path}",
                                "value": page}  # fmt: skip
        if start + top < len(rows):
            body["@odata.nextLink"] = (
                f"{self.base}{path}?{urlencode({**q, '$skiptoken': start + top})}"
            )
        return 200, {}, body


def _graph_error(code: str, message: str) -> Any:
    return {"error": {"code": code, "message": message,
                      "innerError": {"request-id": "r1", "date": "2026-03-01T00:00:00"}}}  # fmt: skip


class Calendar(Service):
    """``{"kind": "calendar#events", "items", "nextPageToken"?, "nextSyncToken"?}``;
    ``maxResults`` <= 2500; the second page is empty but has a token (documented: a page may
    hold none while more remain); the first request gets 403 ``rateLimitExceeded``."""

    def __init__(self) -> None:
        super().__init__()
        self.events = [{"kind": "calendar#event", "id": f"ev{i}", "summary": f"Standup {i}",
                        "status": "confirmed", "htmlLink": f"https://www.google.com/calendar/event?eid={i}",
                        "start": {"dateTime": "2026-03-03T09:00:00+01:00"},
                        "end": {"dateTime": "2026-03-03T09:15:00+01:00"},
                        "organizer": {"email": "lead@example.com"}, "updated": "2026-03-01T00:00:00Z"}
                       for i in range(9)]  # fmt: skip

    def get(self, path: str, q: Query, token: str) -> Answer:
        if path != "/calendar/v3/calendars/primary/events":
            return 404, {}, _google_error(404, "notFound", "Not Found")
        if self.first_time("rate"):
            return 403, {}, _google_error(403, "rateLimitExceeded", "Rate Limit Exceeded")
        size = _int(q, "maxResults", 250)
        if not 1 <= size <= 2500:
            return 400, {}, _google_error(400, "invalid", "Invalid maxResults")
        events = [e for e in self.events if not q.get("q") or q["q"] in e["summary"]]
        token_in = q.get("pageToken")
        step = int(token_in) if token_in else 0
        body: dict[str, Any] = {"kind": "calendar#events", "summary": "primary"}
        if step == 1:  # an empty page in the middle, with a token
            body["items"], nxt = [], 2
        else:
            start = 0 if step == 0 else (step - 1) * size
            body["items"] = events[start : start + size]
            nxt = step + 1 if start + size < len(events) else None
            if step == 0 and len(events) > size:
                nxt = 1
        if nxt is not None:
            body["nextPageToken"] = str(nxt)
        else:
            body["nextSyncToken"] = "sync-1"
        return 200, {}, body


def _google_error(code: int, reason: str, message: str) -> Any:
    return {"error": {"errors": [{"domain": "usageLimits" if "imit" in reason else "global",
                                  "reason": reason, "message": message}],
                      "code": code, "message": message}}  # fmt: skip


class Slack(Service):
    """``{"ok": true, "channels"|"members": [...], "response_metadata": {"next_cursor"}}``
    (empty at the end); ``limit`` <= 1000; a page shorter than ``limit`` while more remain;
    the first request gets 429 + ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``;
    a bad token gets 200 ``{"ok": false, "error": "invalid_auth"}``."""

    def __init__(self) -> None:
        super().__init__()
        self.channels = [{"id": f"C{i:04d}", "name": f"chan-{i}", "is_private": i % 5 == 0,
                          "is_archived": False, "num_members": i + 2,
                          "topic": {"value": f"topic {i}"}, "purpose": {"value": ""}, "created": 1700000000 + i}
                         for i in range(11)]  # fmt: skip
        self.users = [{"id": f"U{i:04d}", "name": f"user{i}", "real_name": f"User {i}",
                       "profile": {"email": f"user{i}@example.com"}, "is_bot": i == 0,
                       "deleted": False, "tz": "Europe/Paris"} for i in range(6)]  # fmt: skip

    def get(self, path: str, q: Query, token: str) -> Answer:
        if self.first_time("ratelimited"):
            return 429, {"Retry-After": "3"}, {"ok": False, "error": "ratelimited"}
        if token != "tok-system":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        key, rows = {"/api/conversations.list": ("channels", self.channels),
                     "/api/users.list": ("members", self.users)}.get(path, ("", []))  # fmt: skip
        if not key:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        limit = _int(q, "limit", 100)
        if not 1 <= limit <= 1000:
            return 200, {}, {"ok": False, "error": "invalid_limit"}
        start = int(q.get("cursor") or 0)
        take = max(1, limit - 1) if start == 0 else limit  # a short page while more remain
        page = rows[start : start + take]
        nxt = str(start + take) if start + take < len(rows) else ""
        return 200, {}, {"ok": True, key: page, "response_metadata": {"next_cursor": nxt}}


class Stripe(Service):
    """``{"object": "list", "url", "has_more", "data"}``, newest first; ``limit`` 1-100 (else
    400 ``invalid_request_error``); ``starting_after=<id>``; the first request gets a bare 429."""

    def __init__(self) -> None:
        super().__init__()
        self.customers = [{"id": f"cus_{i:05d}", "object": "customer", "email": f"c{i}@example.com",
                           "name": f"Customer {i}", "created": 1700000000 - i, "currency": "eur",
                           "delinquent": i == 3} for i in range(14)]  # fmt: skip
        self.charges = [{"id": f"ch_{i:05d}", "object": "charge", "amount": 100 * (i + 1),
                         "currency": "eur", "status": "succeeded", "paid": True,
                         "customer": f"cus_{i % 3:05d}", "created": 1700000000 - i,
                         "description": None} for i in range(8)]  # fmt: skip

    def get(self, path: str, q: Query, token: str) -> Answer:
        if self.first_time("429"):
            return 429, {}, {"error": {"type": "rate_limit_error", "message": "Too many requests"}}
        if token != "sk_test_mock":
            return (
                401,
                {},
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}},
            )
        rows = {"/v1/customers": self.customers, "/v1/charges": self.charges}.get(path)
        if rows is None:
            return (
                404,
                {},
                {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}},
            )
        limit = _int(q, "limit", 10)
        if not 1 <= limit <= 100:
            return 400, {}, {"error": {"type": "invalid_request_error", "param": "limit",
                                       "message": "This value must be less than or equal to 100."}}  # fmt: skip
        rows = [
            r
            for r in rows
            if all(r.get(k) == v for k, v in q.items() if k in ("email", "customer"))
        ]
        after = q.get("starting_after")
        start = next((n + 1 for n, r in enumerate(rows) if r["id"] == after), 0) if after else 0
        page = rows[start : start + limit]
        return 200, {}, {"object": "list", "url": path, "has_more": start + limit < len(rows),
                         "data": page}  # fmt: skip


@contextmanager
def serve(mock: Service) -> Iterator[str]:
    """The mock on 127.0.0.1 (a free port) while the block runs; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def token(self) -> str:
            return self.headers.get("Authorization", "").removeprefix("Bearer ") or "-"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            with mock.lock:
                mock.requests.append((parts.path, q))
            self.reply(*mock.get(parts.path, q, self.token()))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            with mock.lock:
                mock.requests.append((self.path, {}))
            self.reply(*mock.post(self.path, body, self.token()))

        def reply(self, status: int, headers: dict[str, str], answer: Any) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    mock.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mock.base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
