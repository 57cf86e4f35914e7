"""A loopback write API with three resources, each written after a real API's documented writes.

* ``/api/now/table/incident``: ServiceNow's Table API. Rows in ``result``, values as strings,
  ``sysparm_limit``/``sysparm_offset`` with a ``Link`` header; POST answers 201 with the row and
  a ``Location``; PATCH/PUT 200; DELETE 204. No idempotency key. Access rules: a user reads their
  own rows, team rows (owner ``"*"``: everyone may change them) and shared ones (owner None:
  read-only); a change to a shared row is refused with 403 ("ACL Exception Update
  Failed due to security constraints"), a DELETE of it with 404 ("No Record found: Record doesn't
  exist or ACL restricts the record retrieval"): ServiceNow documents 404 as "can be caused by an
  ACL constraint". A PATCH of a system field (``sys_*``, read-only) is ignored, answered 200
  with the row as it is.
* ``/repos/acme/widgets/issues``: GitHub's REST API. A bare array, ``per_page``/``page`` with a
  ``Link`` header; integer ids (64-bit, snowflake-like); POST 201 with ``Location``; PATCH 200;
  there is no DELETE route (404 ``Not Found``, as for issues on GitHub); another user's private
  row is 404 ("we don't want to provide any information about private repositories"), a
  shared row 403; a missing ``title`` is 422 ``Validation Failed`` with ``errors``; ``labels``
  from a user without push access (:attr:`WriteAPI.pushers`) are silently dropped (200).
* ``/v1/customers``: Stripe. ``{"object": "list", "data": [...], "has_more": ...}`` with
  ``limit``/``starting_after``; create and update are POSTs (200), DELETE answers
  ``{"deleted": true}``. ``Idempotency-Key`` on POST: the status and body of the first request
  are saved once it starts executing, 500s included, and replayed (``Idempotent-Replayed:
  true``); a request with a key still being processed gets 409; the same key with another body
  400. (Stripe takes form bodies; this one takes JSON, as remotetables sends.)

Faults (:class:`WriteFault`) make a write fail before it is carried out, or after: answered with
a 5xx, or with the connection closed and no answer, or left "in progress" until :meth:`release`.
Every carried-out change is logged in :attr:`WriteAPI.changes`: the API's own record of what it
holds, to compare with what SQL reported.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SN = "/api/now/table/incident"
GH = "/repos/acme/widgets/issues"
ST = "/v1/customers"


@dataclass
class WriteFault:
    """``kind``: ``refuse`` (answer ``status``, do nothing), ``drop`` (close, do nothing),
    ``commit_status`` (do it, answer ``status``), ``commit_drop`` (do it, close without an
    answer), ``hold`` (start it, close without an answer; it completes on :meth:`release`)."""

    kind: str
    method: str
    path: str
    status: int = 500
    user: str | None = None
    times: int = 1


@dataclass
class Change:
    user: str
    method: str
    resource: str
    key: Any
    what: str  # "insert" | "update" | "delete"


@dataclass
class _Saved:
    digest: str
    status: int | None = None  # None: still in progress
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class WriteAPI:
    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        token_validator: Callable[[str], str | None] | None = None,
    ) -> None:
        self._tokens = dict(tokens or {})
        self._validator = token_validator
        self.lock = threading.RLock()
        self.rows: dict[str, dict[Any, dict[str, Any]]] = {SN: {}, GH: {}, ST: {}}
        self.faults: list[WriteFault] = []
        self.changes: list[Change] = []
        self.log: list[tuple[str, str, str, int | None]] = []  # user, method, path, status
        self._saved: dict[tuple[str, str], _Saved] = {}
        self._held: list[Callable[[], None]] = []
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self.bugs: list[str] = []  # exceptions in this server (a test checks there are none)
        self.github_delete = False  # issues cannot be deleted; comments (say) can
        # GitHub: "Only users with push access can set labels for issues. Without push access
        # to the repository, label changes are silently dropped" (answer 200 all the same)
        self.pushers: set[str] = set()

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> WriteAPI:
        api = self

        class Handler(_Handler):
            owner = api

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---------------------------------------------------------------- state

    def add(self, resource: str, key: Any, owner: str | None, **fields: Any) -> None:
        with self.lock:
            self.rows[resource][key] = {**fields, "_owner": owner}

    def readable(self, resource: str, user: str) -> list[tuple[Any, dict[str, Any]]]:
        """(key, stored row with its owner) for each row ``user`` reads."""
        with self.lock:
            return [
                (k, dict(r))
                for k, r in self.rows[resource].items()
                if r["_owner"] in (None, "*", user)
            ]

    def visible(self, resource: str, user: str) -> dict[Any, dict[str, Any]]:
        """The rows ``user`` reads, as the API holds them (values as stored)."""
        with self.lock:
            return {
                k: {f: v for f, v in r.items() if f != "_owner"}
                for k, r in self.rows[resource].items()
                if r["_owner"] in (None, "*", user)
            }

    def reset(self) -> None:
        with self.lock:
            for rows in self.rows.values():
                rows.clear()
            self.faults.clear()
            self.changes.clear()
            self.log.clear()
            self._saved.clear()
            self._held.clear()

    def release(self) -> None:
        """Complete every held request (its change is made and its answer saved)."""
        with self.lock:
            held, self._held = self._held, []
        for finish in held:
            finish()

    def new_id(self, resource: str) -> Any:
        n = next(self._ids)
        if resource == SN:
            return hashlib.md5(f"sn{n}".encode()).hexdigest()
        if resource == ST:
            return f"cus_{n:08d}"
        return 2**62 + n * 2**46  # snowflake-like: ids differ by multiples of 2^46

    # ---------------------------------------------------------------- requests

    def user_of(self, auth: str | None) -> str | None:
        if not auth or not auth.startswith("Bearer "):
            return None
        token = auth[7:]
        if self._validator is not None:
            return self._validator(token)
        return self._tokens.get(token)

    def take_fault(self, method: str, path: str, user: str) -> WriteFault | None:
        with self.lock:
            for f in self.faults:
                if f.method == method and path.startswith(f.path) and f.user in (None, user):
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f
        return None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection this server closed on purpose (a fault) is not an error


class _Handler(BaseHTTPRequestHandler):
    owner: WriteAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # ---------------------------------------------------------------- plumbing

    def _send(self, status: int, body: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self._send_raw(status, raw, list(headers))

    def _send_raw(self, status: int, raw: bytes, headers: list[tuple[str, str]]) -> None:
        self._log(status)  # before the answer leaves: the client may look at the log at once
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _log(self, status: int | None) -> None:
        who = getattr(self, "_who", None)
        if who is not None:
            self.owner.log.append((*who, status))

    def _drop(self) -> None:
        self._log(None)
        self.close_connection = True
        self.connection.shutdown(2)

    def _serve(self, method: str) -> None:
        try:
            self._serve_one(method)
        except Exception as exc:  # a bug here must not look like a network fault
            self.owner.bugs.append(f"{method} {self.path}: {exc!r}")
            raise

    def _serve_one(self, method: str) -> None:
        api = self.owner
        parts = urlsplit(self.path)
        path, query = parts.path.rstrip("/"), parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        user = api.user_of(self.headers.get("Authorization"))
        if user is None:
            self._send(401, {"message": "Requires authentication"})
            return
        self._who = (user, method, path)
        resource = next((r for r in (SN, GH, ST) if path == r or path.startswith(r + "/")), None)
        if resource is None:
            self._send(404, {"message": "Not Found"})
            return
        key_text = path[len(resource) + 1 :] or None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, {"message": "Problems parsing JSON"})
            return
        if method == "GET":
            self._list(resource, user, query)
            return
        fault = api.take_fault(method, path, user)

        def run() -> tuple[int, Any, list[tuple[str, str]]]:
            return self._write(resource, method, key_text, body, user)

        idem = self.headers.get("Idempotency-Key") if resource == ST and method == "POST" else None
        if idem is not None:
            self._idempotent(idem, user, raw, run, fault)
        else:
            self._plain(run, fault)

    def _plain(
        self,
        run: Callable[[], tuple[int, Any, list[tuple[str, str]]]],
        fault: WriteFault | None,
    ) -> None:
        if fault is not None and fault.kind == "refuse":
            self._send(fault.status, {"message": "Service Unavailable"}, [("Retry-After", "0")])
            return
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        if fault is not None and fault.kind == "hold":
            self.owner._held.append(run)
            self._drop()
            return
        status, body, headers = run()
        if fault is not None and fault.kind == "commit_status":
            self._send(fault.status, {"message": "Internal Server Error"})
        elif fault is not None and fault.kind == "commit_drop":
            self._drop()
        else:
            self._send(status, body, headers)

    def _idempotent(
        self,
        key: str,
        user: str,
        raw: bytes,
        run: Callable[[], tuple[int, Any, list[tuple[str, str]]]],
        fault: WriteFault | None,
    ) -> None:
        api = self.owner
        digest = hashlib.sha256(self.path.encode() + b"\0" + raw).hexdigest()
        with api.lock:
            saved = api._saved.get((user, key))
            if saved is not None:
                if saved.digest != digest:
                    status, body = (
                        400,
                        _stripe_error(
                            "Keys for idempotent requests can only be used with the same parameters "
                            "they were first used with."
                        ),
                    )
                elif saved.status is None:
                    status, body = (
                        409,
                        _stripe_error(
                            "There is currently another in-progress request using this "
                            "Idempotency-Key. Please try again later."
                        ),
                    )
                else:
                    self._send_raw(
                        saved.status, saved.body, [*saved.headers, ("Idempotent-Replayed", "true")]
                    )
                    return
                self._send(status, body)
                return
            if fault is not None and fault.kind in ("refuse", "drop"):
                pass  # refused before execution began: nothing is saved
            else:
                saved = api._saved[(user, key)] = _Saved(digest)
        if saved is None:
            self._plain(run, fault)
            return

        def finish() -> tuple[int, Any, list[tuple[str, str]]]:
            status, body, headers = run()
            with api.lock:
                if fault is not None and fault.kind == "commit_status":
                    saved.status, saved.body = fault.status, b'{"message": "Internal Server Error"}'
                else:
                    saved.status, saved.headers = status, headers
                    saved.body = b"" if body is None else json.dumps(body).encode()
            return status, body, headers

        self._plain(finish, fault)

    # ---------------------------------------------------------------- resources

    def _list(self, resource: str, user: str, query: dict[str, list[str]]) -> None:
        rows = [self._shape(resource, k, r) for k, r in self.owner.readable(resource, user)]
        base = self.owner.base_url + resource
        if resource == SN:
            limit = int(query.get("sysparm_limit", ["10000"])[0])
            offset = int(query.get("sysparm_offset", ["0"])[0])
            page = rows[offset : offset + limit]
            headers = [("X-Total-Count", str(len(rows)))]
            if offset + limit < len(rows):
                nxt = f"{base}?sysparm_limit={limit}&sysparm_offset={offset + limit}"
                headers.append(("Link", f'<{nxt}>;rel="next"'))
            self._send(200, {"result": page}, headers)
        elif resource == GH:
            per_page = int(query.get("per_page", ["30"])[0])
            n = int(query.get("page", ["1"])[0])
            page = rows[(n - 1) * per_page : n * per_page]
            headers = []
            if n * per_page < len(rows):
                headers.append(("Link", f'<{base}?per_page={per_page}&page={n + 1}>; rel="next"'))
            self._send(200, page, headers)
        else:
            limit = int(query.get("limit", ["10"])[0])
            after = query.get("starting_after", [None])[0]
            start = 0
            if after is not None:
                start = next((i + 1 for i, r in enumerate(rows) if r["id"] == after), len(rows))
            page = rows[start : start + limit]
            self._send(200, {"object": "list", "data": page, "has_more": start + limit < len(rows)})

    @staticmethod
    def _shape(resource: str, key: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        fields = {f: v for f, v in row.items() if f != "_owner"}
        if resource == SN:  # ServiceNow answers every value as a string
            out = {f: "" if v is None else str(v) for f, v in fields.items()}
            out["sys_id"] = key
            out["assigned_to"] = row["_owner"] or ""
            return out
        if resource == GH:
            return {"id": key, **fields, "user": {"login": row["_owner"] or "ghost"}}
        return {"id": key, "object": "customer", **fields}

    def _write(
        self, resource: str, method: str, key_text: str | None, body: Any, user: str
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        api = self.owner
        with api.lock:
            rows = api.rows[resource]
            if key_text is None:
                if method != "POST":
                    return 405, {"message": "Method not allowed"}, []
                return self._create(resource, body, user)
            key: Any = _number(key_text) if resource == GH else key_text
            row = rows.get(key)
            if resource == GH and method == "DELETE" and not api.github_delete:
                return 404, _gh_404(), []  # issues cannot be deleted through the REST API
            if row is None or row["_owner"] not in (None, "*", user):
                return 404, (_sn_404() if resource == SN else _gh_404()), []
            if row["_owner"] is None:  # shared: readable, not writable
                if resource == SN:
                    if method == "DELETE":
                        return 404, _sn_404(), []  # the ACL hides it from deletion
                    return (
                        403,
                        _sn_error("ACL Exception Update Failed due to security constraints"),
                        [],
                    )
                return 403, {"message": "Must have push access to this resource"}, []
            if method == "DELETE":
                del rows[key]
                api.changes.append(Change(user, method, resource, key, "delete"))
                if resource == ST:
                    return 200, {"id": key, "object": "customer", "deleted": True}, []
                return 204, None, []
            if method not in ("PATCH", "PUT", "POST") or (method == "POST") != (resource == ST):
                return 405, {"message": "Method not allowed"}, []
            ignored = {"id", "sys_id"}
            if resource == SN:  # system fields (sys_*) are read-only: ignored, answered 200
                ignored |= {f for f in body or {} if f.startswith("sys_")}
            if resource == GH and user not in api.pushers:
                ignored.add("labels")  # silently dropped without push access
            row.update({f: v for f, v in (body or {}).items() if f not in ignored})
            api.changes.append(Change(user, method, resource, key, "update"))
            shaped = self._shape(resource, key, row)
            return 200, ({"result": shaped} if resource == SN else shaped), []

    def _create(
        self, resource: str, body: Any, user: str
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        api = self.owner
        body = dict(body or {})
        if resource == GH and not body.get("title"):
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                },
                [],
            )
        key = api.new_id(resource)
        body.pop("assigned_to", None)
        api.rows[resource][key] = {**body, "_owner": user}
        api.changes.append(Change(user, "POST", resource, key, "insert"))
        shaped = self._shape(resource, key, api.rows[resource][key])
        location = [("Location", f"{api.base_url}{resource}/{key}")]
        if resource == SN:
            return 201, {"result": shaped}, location
        if resource == GH:
            return 201, shaped, location
        return 200, shaped, []


def _number(text: str) -> Any:
    """A GitHub-like id from a URL: a JSON number (ints, and the odd REAL), else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float)) else text


def _sn_error(detail: str) -> dict[str, Any]:
    return {"error": {"message": "Operation Failed", "detail": detail}, "status": "failure"}


def _sn_404() -> dict[str, Any]:
    return {
        "error": {
            "message": "No Record found",
            "detail": "Record doesn't exist or ACL restricts the record retrieval",
        },
        "status": "failure",
    }


def _gh_404() -> dict[str, Any]:
    return {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


def _stripe_error(message: str) -> dict[str, Any]:
    return {"error": {"type": "idempotency_error", "message": message}}
