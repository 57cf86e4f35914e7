"""Routes of the loopback incidents API: pagination styles, ServiceNow and GitHub shapes, writes.

Every paged route resolves to a :class:`Window` (first row ``offset``, page size ``limit``,
1-based ``page``) over the caller's view of a dataset, so all styles return the same rows in the
same order. Query parameters that name a top-level field of the dataset filter by equality on the
field's string form (:func:`~remotetables.demo.api.data.value_key`); a repeated parameter is an
OR. Under the ``/list`` prefix (``/list/styles/link/incidents?state=new,open``) a value is also
split on commas. ``_ignore_filters=1`` makes the server ignore every filter. Other parameters are
ignored, as real APIs do.

Shapes of real APIs, chosen per request (so one server serves many table configs):
``_match=loose`` filters loosely (case-insensitive, numbers as numbers: more rows than asked
for, never fewer; :func:`~remotetables.demo.api.data.loose_match`), or any name registered in
:attr:`Router.matchers`; ``_acl=1`` hides rows marked ``"_acl": "deny"`` *after* paging, as
ServiceNow applies ACLs: pages come back short or empty while the links, cursors and totals
still count every row.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import orjson

from remotetables.demo.api.data import (
    SHARED,
    Dataset,
    Filters,
    Matcher,
    Row,
    View,
    loose_match,
    strict_match,
)
from remotetables.demo.api.faults import Fault


class PageCache(Protocol):
    def get(self, key: tuple[Any, ...], build: Callable[[], bytes]) -> bytes: ...


class ApiState(Protocol):
    """What the routes read of the server that runs them (:class:`.server.IncidentsAPI`)."""

    max_page_size: int
    default_page_size: int

    @property
    def page_cache(self) -> PageCache: ...
    @property
    def auth_required(self) -> bool: ...

    def dataset(self, name: str) -> Dataset: ...


__all__ = [
    "STYLES",
    "HTTPFailure",
    "Request",
    "Response",
    "Router",
    "Window",
    "decode_cursor",
    "encode_cursor",
]

#: style -> (page size parameter, position parameter)
STYLES: dict[str, tuple[str, str]] = {
    "link": ("limit", "offset"),
    "next_url": ("limit", "cursor"),
    "cursor": ("limit", "cursor"),
    "offset": ("limit", "offset"),
    "page": ("per_page", "page"),
    "servicenow": ("sysparm_limit", "sysparm_offset"),
    "github": ("per_page", "page"),
}
_SN_TABLES = {"incident": "incidents"}
_GITHUB_REPOS = {("acme", "widgets"): "issues"}


@dataclass(slots=True)
class Request:
    """What a route needs from one HTTP request."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    user: str | None
    authorization: str | None
    idempotency_key: str | None
    base_url: str

    @property
    def list_mode(self) -> bool:
        return self.path.startswith("/list/")

    @property
    def route_path(self) -> str:
        return self.path[5:] if self.list_mode else self.path

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Response:
        return cls(status, orjson.dumps(obj), headers=list(headers))

    @classmethod
    def error(
        cls, status: int, code: str, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> Response:
        return cls.json({"error": code, "message": message}, status, headers)


class HTTPFailure(Exception):
    """Raised by a route to answer with an error response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = Response.error(status, code, message)


@dataclass(frozen=True, slots=True)
class Window:
    style: str
    dataset: str
    offset: int
    limit: int

    @property
    def page(self) -> int:
        return self.offset // self.limit + 1


def encode_cursor(offset: int) -> str:
    """An opaque cursor for a row offset.

    >>> decode_cursor(encode_cursor(200))
    200
    """
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, number = text.partition(":")
        if tag != "o" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPFailure(400, "invalid_cursor", "cursor is not valid") from None


def _int_param(req: Request, name: str, default: int, *, minimum: int) -> int:
    raw = req.param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPFailure(400, "invalid_parameter", f"{name} must be an integer") from None
    if value < minimum:
        raise HTTPFailure(400, "invalid_parameter", f"{name} must be >= {minimum}")
    return value


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "on")


class Router:
    """Maps requests to responses for one :class:`~remotetables.demo.api.server.IncidentsAPI`."""

    def __init__(self, api: ApiState) -> None:
        self.api = api
        #: how ``_match=NAME`` filters (``strict``, the default, and ``loose`` built in)
        self.matchers: dict[str, Matcher] = {"strict": strict_match, "loose": loose_match}
        self._write_lock = threading.Lock()
        self._idempotent: dict[tuple[str | None, str, str, str], tuple[str, Response]] = {}

    # ---------------------------------------------------------------- resolving

    def _resolve(self, req: Request) -> tuple[str, ...]:
        """``("page", style, dataset)``, ``("row", style, dataset, id)``, ``("whoami",)`` ..."""
        parts = [p for p in req.route_path.split("/") if p]
        match parts:
            case ["whoami"] | ["echo"]:
                return (parts[0],)
            case ["styles", style, name] if style in STYLES:
                return ("page", style, name)
            case ["styles", style, name, sys_id] if style in STYLES:
                return ("row", style, name, sys_id)
            case ["api", "now", "table", table]:
                return ("page", "servicenow", _SN_TABLES.get(table, table))
            case ["api", "now", "table", table, sys_id]:
                return ("row", "servicenow", _SN_TABLES.get(table, table), sys_id)
            case ["repos", owner, repo, "issues"] if (owner, repo) in _GITHUB_REPOS:
                return ("page", "github", _GITHUB_REPOS[owner, repo])
        return ("missing",)

    def _window(self, req: Request, style: str, dataset: str) -> Window:
        size_name, pos_name = STYLES[style]
        api = self.api
        limit = min(_int_param(req, size_name, api.default_page_size, minimum=1), api.max_page_size)
        if pos_name == "cursor":
            raw = req.param("cursor")
            offset = decode_cursor(raw) if raw else 0
        elif pos_name == "page":
            page = _int_param(req, "page", 1, minimum=0 if style == "github" else 1)
            offset = (max(page, 1) - 1) * limit
        else:
            offset = _int_param(req, pos_name, 0, minimum=0)
        return Window(style, dataset, offset, limit)

    def window(self, req: Request) -> Window | None:
        """The page a GET asks for (to match faults), or ``None`` if not a valid paged GET."""
        if req.method != "GET":
            return None
        route = self._resolve(req)
        if route[0] != "page":
            return None
        try:
            return self._window(req, route[1], route[2])
        except HTTPFailure:
            return None

    def _dataset(self, name: str) -> Dataset:
        try:
            return self.api.dataset(name)
        except KeyError:
            raise HTTPFailure(404, "not_found", f"no dataset {name!r}") from None

    # ---------------------------------------------------------------- dispatch

    def handle(self, req: Request, fault: Fault | None = None) -> Response:
        route = self._resolve(req)
        kind = route[0]
        if kind == "whoami":
            return Response.json({"user": req.user})
        if kind == "echo":
            return Response.json({"authorization": req.authorization})
        if kind == "page":
            if req.method == "POST" and route[1] not in ("servicenow", "github"):
                return self._idempotent_write(req, lambda: self._create(req, route[2]))
            if req.method != "GET":
                return self._not_allowed("GET, POST" if route[1] in ("link",) else "GET")
            return self._page(req, route[1], route[2], fault)
        if kind == "row":
            _, style, name, sys_id = route
            if req.method == "GET":
                return self._get_row(req, style, name, sys_id)
            if style != "servicenow" and req.method in ("PATCH", "DELETE"):
                return self._idempotent_write(req, lambda: self._change(req, name, sys_id))
            return self._not_allowed("GET, PATCH, DELETE")
        raise HTTPFailure(404, "not_found", f"no route for {req.path}")

    @staticmethod
    def _not_allowed(allow: str) -> Response:
        return Response.error(405, "method_not_allowed", "method not allowed", [("Allow", allow)])

    # ---------------------------------------------------------------- reads

    def _filters(self, req: Request, style: str, ds: Dataset) -> Filters:
        if _truthy(req.param("_ignore_filters")):
            return ()
        reserved = set(STYLES[style])
        if style == "github":
            reserved |= {"state", "labels", "sort", "direction", "since"}
        fields = ds.snapshot.fields
        out: list[tuple[str, frozenset[str]]] = []
        for name, values in req.query.items():
            if name in reserved or name.startswith(("_", "sysparm_")) or name not in fields:
                continue
            if req.list_mode:
                values = [part for value in values for part in value.split(",")]
            out.append((name, frozenset(values)))
        if style == "github":
            state = req.param("state") or "open"
            if state not in ("open", "closed", "all"):
                raise HTTPFailure(422, "invalid_parameter", "state must be open, closed or all")
            if state != "all":
                out.append(("state", frozenset({state})))
        if style == "servicenow":
            out.extend(_sysparm_query(req.param("sysparm_query") or ""))
        return tuple(sorted(out, key=lambda item: (item[0], sorted(item[1]))))

    def _page(self, req: Request, style: str, name: str, fault: Fault | None) -> Response:
        ds = self._dataset(name)
        win = self._window(req, style, name)
        match_name = req.param("_match") or "strict"
        match = self.matchers.get(match_name)
        if match is None:
            raise HTTPFailure(400, "invalid_parameter", f"no matcher {match_name!r}")
        view = ds.view(
            req.user,
            self._filters(req, style, ds),
            per_user=self.api.auth_required,
            match=match,
            match_name=match_name,
        )
        since = req.param("since") if style == "github" else None
        if since:  # GitHub: rows updated at or after an ISO 8601 time (text compares in order)
            view = View(
                (*view.key[:3], (*view.key[3], ("updated_at>=", frozenset({since}))), view.key[4]),
                [r for r in view.rows if str(r.get("updated_at") or "") >= since],
            )
        fields: tuple[str, ...] | None = None
        if style == "servicenow" and req.param("sysparm_fields"):
            fields = tuple(f for f in (req.param("sysparm_fields") or "").split(",") if f)
        acl = _truthy(req.param("_acl"))
        arr = self.api.page_cache.get(
            (view.key, win.offset, win.limit, fields, acl),
            lambda: _serialize(view, win, fields, acl),
        )
        total = len(view.rows)
        next_offset: int | None = win.offset + win.limit if win.offset + win.limit < total else None
        base = req.base_url
        if fault is not None and fault.kind == "next_loop":
            next_offset = win.offset
        elif fault is not None and fault.kind == "next_foreign" and fault.url:
            parts = urlsplit(fault.url)
            base = f"{parts.scheme}://{parts.netloc}"
        size_name, pos_name = STYLES[style]

        def url(**updates: Any) -> str:
            query = {k: list(v) for k, v in req.query.items()}
            for key, value in updates.items():
                query[key] = [str(value)]
            return f"{base}{req.path}?{urlencode(query, doseq=True)}"

        def at(offset: int) -> str:
            return url(**{size_name: win.limit, pos_name: offset})

        if style == "link":
            header = [] if next_offset is None else [("Link", f'<{at(next_offset)}>; rel="next"')]
            return Response(200, arr, headers=header)
        if style in ("next_url", "cursor"):
            cursor = None if next_offset is None else encode_cursor(next_offset)
            if style == "cursor":
                return _wrap(b'{"items":', arr, b',"next_cursor":', orjson.dumps(cursor), b"}")
            next_url = None if cursor is None else url(**{size_name: win.limit, "cursor": cursor})
            tail = orjson.dumps(next_url)
            return _wrap(b'{"data":', arr, b',"links":{"next":', tail, b"}}")
        if style == "offset":
            return _wrap(b'{"results":', arr, b',"total":', str(total).encode(), b"}")
        pages = math.ceil(total / win.limit)
        if style == "page":
            head = b'{"page":%d,"total_pages":%d,"rows":' % (win.page, pages)
            return _wrap(head, arr, b"}")
        if style == "servicenow":
            last = max(pages - 1, 0) * win.limit
            rels = [("first", 0)]
            if win.offset > 0:
                rels.append(("prev", max(win.offset - win.limit, 0)))
            if next_offset is not None:
                rels.append(("next", next_offset))
            rels.append(("last", last))
            link = ",".join(f'<{at(off)}>;rel="{rel}"' for rel, off in rels)
            resp = _wrap(b'{"result":', arr, b"}")
            resp.headers += [("Link", link), ("X-Total-Count", str(total))]
            return resp
        # github: page numbers in the links
        links: list[str] = []
        if next_offset is not None:
            links.append(
                f'<{url(per_page=win.limit, page=next_offset // win.limit + 1)}>; rel="next"'
            )
            links.append(f'<{url(per_page=win.limit, page=max(pages, 1))}>; rel="last"')
        if win.page > 1:
            links.append(f'<{url(per_page=win.limit, page=win.page - 1)}>; rel="prev"')
            links.append(f'<{url(per_page=win.limit, page=1)}>; rel="first"')
        return Response(200, arr, headers=[("Link", ", ".join(links))] if links else [])

    def warm(self, ds: Dataset, limit: int) -> int:
        """Fill the page cache with the unfiltered pages of ``limit`` rows of a shared view."""
        view = ds.view(None, (), per_user=False)
        offsets = range(0, len(view.rows), limit)
        for offset in offsets:
            build = functools.partial(
                _serialize, view, Window("link", ds.name, offset, limit), None, False
            )
            self.api.page_cache.get((view.key, offset, limit, None, False), build)
        return len(offsets)

    def _visible(self, req: Request, ds: Dataset, sys_id: str) -> Row:
        row = ds.get(sys_id)
        if row is None:
            raise HTTPFailure(404, "not_found", f"no row {sys_id!r}")
        owner = row.get("assigned_to", SHARED)
        if self.api.auth_required and owner not in (req.user, SHARED):
            raise HTTPFailure(404, "not_found", f"no row {sys_id!r}")
        return row

    def _get_row(self, req: Request, style: str, name: str, sys_id: str) -> Response:
        row = self._visible(req, self._dataset(name), sys_id)
        return Response.json({"result": row} if style == "servicenow" else row)

    # ---------------------------------------------------------------- writes

    def _idempotent_write(self, req: Request, run: Any) -> Response:
        with self._write_lock:  # writes are rare: one at a time keeps keys race-free
            key = req.idempotency_key
            if not key:
                resp: Response = run()
                return resp
            digest = hashlib.sha256(req.body).hexdigest()
            slot = (req.user, req.method, req.path, key)
            seen = self._idempotent.get(slot)
            if seen is not None:
                if seen[0] != digest:
                    raise HTTPFailure(
                        422, "idempotency_key_reused", "Idempotency-Key reused with another body"
                    )
                old = seen[1]
                return Response(old.status, old.body, old.content_type, list(old.headers))
            try:
                resp = run()
            except HTTPFailure as failure:
                resp = failure.response
            self._idempotent[slot] = (digest, resp)
            return Response(resp.status, resp.body, resp.content_type, list(resp.headers))

    def _json_object(self, req: Request) -> dict[str, Any]:
        try:
            obj = orjson.loads(req.body or b"null")
        except orjson.JSONDecodeError:
            raise HTTPFailure(400, "invalid_json", "body is not JSON") from None
        if not isinstance(obj, dict):
            raise HTTPFailure(400, "invalid_json", "body must be a JSON object")
        return obj

    def _create(self, req: Request, name: str) -> Response:
        ds = self._dataset(name)
        fields = self._json_object(req)
        if self.api.auth_required:
            fields.setdefault("assigned_to", req.user)
            if fields["assigned_to"] != req.user:
                raise HTTPFailure(403, "forbidden", "you may only create rows assigned to you")
        row = ds.create(fields, sys_id=secrets.token_hex(16))
        location = f"{req.base_url}{req.path.rstrip('/')}/{row['sys_id']}"
        return Response.json(row, 201, [("Location", location)])

    def _change(self, req: Request, name: str, sys_id: str) -> Response:
        ds = self._dataset(name)
        row = ds.get(sys_id)
        if row is None:
            raise HTTPFailure(404, "not_found", f"no row {sys_id!r}")
        if self.api.auth_required and row.get("assigned_to") != req.user:
            raise HTTPFailure(403, "forbidden", "you may only change rows assigned to you")
        if req.method == "DELETE":
            ds.delete(sys_id)
            return Response(204, b"", None)
        updated = ds.update(sys_id, self._json_object(req))
        if updated is None:  # deleted meanwhile
            raise HTTPFailure(404, "not_found", f"no row {sys_id!r}")
        return Response.json(updated)


def _sysparm_query(query: str) -> list[tuple[str, frozenset[str]]]:
    """``a=1^b=2`` (AND of equalities) -> filters; other operators are refused."""
    out: list[tuple[str, frozenset[str]]] = []
    for term in query.split("^"):
        if not term or term.startswith("ORDERBY"):
            continue
        name, eq, value = term.partition("=")
        if not eq or not name.isidentifier():
            raise HTTPFailure(400, "invalid_query", f"unsupported sysparm_query term {term!r}")
        out.append((name, frozenset({value})))
    return out


def _serialize(view: View, win: Window, fields: tuple[str, ...] | None, acl: bool) -> bytes:
    rows: Sequence[Mapping[str, Any]] = view.rows[win.offset : win.offset + win.limit]
    if acl:  # ServiceNow: ACLs apply after paging, so a page can come back short or empty
        rows = [row for row in rows if row.get("_acl") != "deny"]
    if fields is not None:
        rows = [{f: row[f] for f in fields if f in row} for row in rows]
    return orjson.dumps(rows)


def _wrap(*parts: bytes) -> Response:
    return Response(200, b"".join(parts))
