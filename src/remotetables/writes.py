"""INSERT, UPDATE and DELETE on remote tables: each row becomes one request to the API.

A table is writable only when its config has a ``[tables.NAME.write]`` section (see
README.md, "Writes"); any other write gets :class:`~remotetables.errors.ReadOnlyError`.

Semantics (a remote API cannot be rolled back):

* every row is sent the moment SQLite hands it over: ``ROLLBACK`` undoes nothing remote;
* every written value is converted to its column's declared type before anything is sent,
  with the rules of reads (:func:`remotetables.rows.coerce`: ``'5'`` in an INTEGER column is
  ``5``, ``'yes'``/``1`` in a BOOLEAN column is ``true``; a number in a TEXT column is sent as
  the text SQLite would store); a value that does not fit raises
  :class:`~remotetables.errors.CoercionError` naming table, column and row, and that row is
  not sent;
* a failing row stops the statement; the error says which rows of the statement were already
  applied (they stay applied) and, after a lost answer, that the failed row's outcome is unknown;
  when the API accepted a row but its answer cannot be read, the error says that row was applied;
* ``UPDATE``/``DELETE ... WHERE`` first reads the matching rows (SQLite runs the whole scan
  before the first write), then writes them one by one by key;
* a ``POST`` is never retried unless the table names an ``idempotency_header`` (then every row
  gets a fresh key, reused on retries); ``PUT``/``PATCH``/``DELETE`` retry like reads;
* requests use the session user's token (the shared token for system integrations), and
  after each write the table's cached rows are dropped (for every user of the runtime).
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import apsw
import orjson

from remotetables.config import ColumnSpec, TableSpec, origin_of
from remotetables.errors import (
    CoercionError,
    ConfigError,
    Error,
    ReadOnlyError,
    RemoteProtocolError,
    TransportError,
)
from remotetables.http.client import JsonResponse, RequestContext, check_url_allowed
from remotetables.rows import apply_affinity, coerce, get_path, sql_equal

if TYPE_CHECKING:
    from remotetables.session import Session, StatementStats

__all__ = ["MAX_REMEMBERED", "TableWriter", "key_rowid"]

#: rows whose key a table remembers between the scan and the write (oldest dropped first)
MAX_REMEMBERED = 1_000_000

NEW_ROW = "1 new row"  # an inserted row in ``applied`` when its key is not known


def key_rowid(key: Any) -> int:
    """The rowid of the row whose key column holds ``key`` (the same formula as the cursor's)."""
    return hash(key) & 0x3FFFFFFFFFFF


class TableWriter:
    """The write side of one virtual table on one connection."""

    def __init__(self, session: Session, spec: TableSpec) -> None:
        self.session = session
        self.spec = spec
        self.write = spec.write
        self._key_index = spec.column_index(spec.key) if spec.key else None
        # rowid -> row as the scan saw it (SQLite gives UPDATE/DELETE only the rowid)
        self._seen: dict[int, tuple[Any, ...]] = {}
        self._stats: StatementStats | None = None
        self._applied: list[str] = []  # rows of the current statement already applied
        self._row_no = 0  # the row of the current statement being written (1-based)
        self.last_row: tuple[Any, ...] | None = None  # the API's answer to the last write
        self._urls_checked = False

    # ------------------------------------------------------------ scan side

    @property
    def remembers_rows(self) -> bool:
        """Whether scans must remember rows (the table allows UPDATE or DELETE)."""
        w = self.write
        return w is not None and (w.update is not None or w.delete is not None)

    def remember(self, rowid: int, row: tuple[Any, ...]) -> None:
        seen = self._seen
        if len(seen) >= MAX_REMEMBERED:
            for old in list(seen)[: MAX_REMEMBERED // 2]:
                del seen[old]
        seen[rowid] = row

    # ------------------------------------------------------------ xUpdate

    def insert(self, rowid: int | None, fields: tuple[Any, ...]) -> int:
        op = self._op("insert", "INSERT")
        if rowid is not None:
            raise ReadOnlyError(f"table {self.spec.name}: rowid cannot be set on a remote table")
        label = "new row" + self._key_suffix(fields)
        body = self._body(fields, None, label)
        headers = []
        idem = self.write.idempotency_header if self.write else None
        if idem:
            headers.append((idem, secrets.token_urlsafe(24)))
        url = self._url(op[1], None)
        response = self._send(
            op[0], url, body, label, idempotent=bool(idem), headers=headers, applied_as=NEW_ROW
        )
        location = _location_key(response) if self._key_index is not None else None
        done = f"{self.spec.key}={location}" if location is not None else NEW_ROW
        row = self._answer_row(response, op[0], label, done)
        key = None
        if row is not None and self._key_index is not None:
            key = row[self._key_index]
        if key is None:
            key = location
        self._done(f"{self.spec.key}={key}" if key is not None else NEW_ROW)
        if key is None:
            return key_rowid(row if row is not None else secrets.token_hex(8))
        new_rowid = key_rowid(key)
        if row is not None:
            self.remember(new_rowid, row)
        return new_rowid

    def change(self, rowid: int, newrowid: int, fields: tuple[Any, ...]) -> None:
        op = self._op("update", "UPDATE")
        old = self._old_row(rowid, "UPDATE")
        key_index = self._key_index
        assert key_index is not None
        key = old[key_index]
        if newrowid != rowid or not sql_equal(fields[key_index], key):
            raise ReadOnlyError(
                f"table {self.spec.name}: the key column {self.spec.key} cannot be changed "
                f"(row {self.spec.key}={key})"
            )
        label = f"{self.spec.key}={key}"
        body = self._body(fields, old, label)
        if not body:
            return  # nothing changed: no request
        response = self._send(op[0], self._url(op[1], key), body, label, idempotent=True)
        row = self._answer_row(response, op[0], label, label)
        if row is not None:
            self.remember(rowid, row)
        self._done(label)

    def delete(self, rowid: int) -> None:
        op = self._op("delete", "DELETE")
        old = self._old_row(rowid, "DELETE")
        assert self._key_index is not None
        key = old[self._key_index]
        label = f"{self.spec.key}={key}"
        self._send(op[0], self._url(op[1], key), None, label, idempotent=True, gone_ok=True)
        self._seen.pop(rowid, None)
        self._done(label)

    # ------------------------------------------------------------ pieces

    def _op(self, name: str, verb: str) -> tuple[str, str]:
        w = self.write
        table = self.spec.name
        if w is None:
            raise ReadOnlyError(
                f"table {table} is a read-only remote table: {verb} needs a "
                f"[tables.{table}.write] section in the config"
            )
        op: tuple[str, str] | None = getattr(w, name)
        if op is None:
            raise ReadOnlyError(
                f"table {table} does not allow {verb}: its config has no tables.{table}.write.{name}"
            )
        if not self._urls_checked:
            self._check_urls()
            self._urls_checked = True
        self._new_statement_check()
        self._row_no += 1
        return op

    def _new_statement_check(self) -> None:
        stats = self.session.stats
        if stats is not self._stats:  # a new statement began (the exec trace replaced stats)
            self._stats = stats
            self._applied = []
            self._row_no = 0

    def _old_row(self, rowid: int, verb: str) -> tuple[Any, ...]:
        old = self._seen.get(rowid)
        if old is None:
            raise ReadOnlyError(
                f"table {self.spec.name}: {verb} of a row this connection has not read "
                "(remote rows are changed by key: use a WHERE clause that reads them)"
            )
        return old

    def _key_suffix(self, fields: tuple[Any, ...]) -> str:
        if self._key_index is not None and fields[self._key_index] is not None:
            return f" {self.spec.key}={fields[self._key_index]}"
        return ""

    def _check_urls(self) -> None:
        w = self.write
        assert w is not None
        spec = self.spec
        allowed = self.session.runtime.allowed_origins(spec.provider)
        for name in ("insert", "update", "delete"):
            op = getattr(w, name)
            if op is None:
                continue
            url = self._url(op[1], "x")
            if origin_of(url) not in allowed:
                raise ConfigError(
                    f"the {name} URL goes to {origin_of(url)}, which is not one of provider "
                    f"{spec.provider}'s API origins (the token would leak)",
                    file=self.session.runtime.config.path,
                    key=f"tables.{spec.name}.write.{name}.url",
                )

    def _url(self, template: str, key: Any) -> str:
        parts = urlsplit(self.spec.url)
        base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        url = template.replace("{url}", base)
        if key is not None:
            url = url.replace("{key}", quote(str(key), safe=""))
        return url

    def _body(
        self, fields: tuple[Any, ...], old: tuple[Any, ...] | None, label: str
    ) -> dict[str, Any]:
        """The JSON object to send: all given values (INSERT) or the changed ones (UPDATE),
        each converted to its column's type first (nothing is sent if one does not fit)."""
        body: dict[str, Any] = {}
        for i, col in enumerate(self.spec.columns):
            value = fields[i]
            if value is apsw.no_change:
                continue
            if value is not None:
                try:
                    value = _sql_value(col, value)
                except ValueError as exc:
                    raise self._unfit(col, label, str(exc)) from None
            if old is None:
                if value is None:
                    continue
            elif sql_equal(value, old[i]) or (value is None and old[i] is None):
                continue
            if not col.writable:
                what = "given" if old is None else "changed"
                raise ReadOnlyError(
                    f"table {self.spec.name}: column {col.name} is not writable but a value was {what}"
                )
            if old is not None and i == self._key_index:
                continue
            _put_path(body, col, _json_value(col, value))
        return body

    def _unfit(self, col: ColumnSpec, label: str, why: str) -> CoercionError:
        """The error for a value that does not fit its column: nothing of this row was sent."""
        table = self.spec.name
        row = self._row_no
        where = f"row {row} of the statement" + (f" ({label})" if label != "new row" else "")
        earlier = self._earlier()
        message = (
            f"{table}.{col.name}: {where}: {why} (declared {col.type}); nothing was sent for "
            "this row." + (f" {earlier}; later rows were not attempted." if earlier else "")
        )
        exc = CoercionError(message, table=table, column=col.name, row=row)
        exc.applied = tuple(self._applied)  # type: ignore[attr-defined]
        return exc

    def _earlier(self) -> str:
        """The rows this statement applied before the current one, as a clause ("" if none)."""
        applied = self._applied
        if not applied:
            return ""
        shown = ", ".join(applied[:10]) + (
            f" and {len(applied) - 10} more" if len(applied) > 10 else ""
        )
        return (
            f"{len(applied)} earlier row(s) of this statement were already applied and stay "
            f"applied (a remote API cannot be rolled back): {shown}"
        )

    def _send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        label: str,
        *,
        idempotent: bool,
        headers: list[tuple[str, str]] | None = None,
        gone_ok: bool = False,
        applied_as: str | None = None,
    ) -> JsonResponse | None:
        """Send one row's request; ``applied_as`` names the row in ``applied`` if the API
        accepted it but its answer is unreadable (default: ``label``)."""
        rt = self.session.runtime
        spec = self.spec
        creds = rt.credentials(spec.provider)
        creds.principal(self.session)  # a personal table needs a session user: fail before sending
        provider = None if spec.provider == "__none__" else spec.provider
        ctx = RequestContext(table=spec.name, provider=provider, user=self.session.user)
        try:
            check_url_allowed(url, ctx)
            return rt.http.request_json(
                method,
                url,
                ctx=ctx,
                policy=rt.retry_policy(spec.provider),
                auth=creds.auth(self.session, ctx),
                headers=rt.extra_headers(spec.provider) + list(headers or []),
                json_body=body,
                idempotent=idempotent,
                counters=self.session.stats.net,
                interrupted=self.session.interrupted,
            )
        except Error as exc:
            status = getattr(exc, "status_code", None)
            if gone_ok and status in (404, 410):
                return None  # already gone: what DELETE wanted
            if isinstance(exc, RemoteProtocolError) and status is not None and status < 400:
                # the API accepted the row (2xx/3xx); only its answer is garbled
                raise self._unreadable(exc, method, label, applied_as or label) from exc
            raise self._failed(exc, method, label) from exc
        finally:
            # every principal's cached rows of the table: a write can change what others see too
            rt.cache.clear(spec.name)

    def _failed(self, exc: Error, method: str, label: str) -> Error:
        """``exc`` (same class, same attributes) with a message saying what was applied."""
        done = self._earlier() or "No earlier row of this statement was applied"
        unknown = ""
        if isinstance(exc, TransportError):
            unknown = (
                " The outcome of this row is unknown (no answer arrived): check before retrying."
            )
        return _with_message(
            exc,
            f"{method} of {label} failed: {exc}. {done}; later rows were not attempted.{unknown}",
            self._applied,
        )

    def _unreadable(self, exc: Error, method: str, label: str, done: str) -> Error:
        """``exc`` (same class, same attributes) saying that the row WAS applied (the API
        accepted it) although its answer cannot be read; ``done`` names the row in ``applied``."""
        earlier = self._earlier()
        self._done(done)
        named = "" if done in (label, NEW_ROW) else f" ({done})"
        message = (
            f"{method} of {label} was applied{named}, but the API's answer cannot be read: "
            f"{exc}. The row stays applied"
            + (f"; {earlier}" if earlier else "")
            + "; later rows were not attempted."
        )
        return _with_message(exc, message, self._applied)

    def _done(self, label: str) -> None:
        self._applied.append(label)

    def _answer_row(
        self, response: JsonResponse | None, method: str, label: str, done: str
    ) -> tuple[Any, ...] | None:
        """The API's answer as a row of the table (None if it holds none); if it cannot be
        read, an error saying that the row was applied (``done`` names it)."""
        if response is None or not isinstance(response.body, (dict, list)):
            return None
        body = response.body
        w = self.write
        if w is not None and w.body_path is not None:
            obj = get_path(body, w.body_path)
        else:
            inner = get_path(body, self.spec.rows_path) if self.spec.rows_path else None
            obj = inner if isinstance(inner, dict) else body
        if isinstance(obj, list) and len(obj) == 1:
            obj = obj[0]
        if not isinstance(obj, dict):
            return None
        rt = self.session.runtime
        try:
            row = rt.row_builder(self.spec).build_page([obj], 0)[0]
        except Error as exc:
            raise self._unreadable(exc, method, label, done) from exc
        self.last_row = row
        return row


def _with_message(exc: Error, message: str, applied: list[str]) -> Error:
    """A copy of ``exc`` (same class, same attributes) with ``message`` and ``applied``."""
    new = BaseException.__new__(type(exc))
    new.__dict__.update(exc.__dict__)
    new.args = (message,)
    new.applied = tuple(applied)  # type: ignore[attr-defined]
    return new


def _location_key(response: JsonResponse | None) -> str | None:
    if response is None:
        return None
    location = response.headers.get("location")
    if not location:
        return None
    last = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
    return last or None


def _sql_value(col: ColumnSpec, value: Any) -> Any:
    """``value`` as SQLite handed it over (no affinity is applied to a virtual table's writes),
    converted to the column's declared type with the rules of reads (:func:`rows.coerce`) and
    SQLite's: ``' 5 '`` in an INTEGER column is ``5``, ``1``/``'yes'``/``'true'`` in a BOOLEAN one
    is ``1``, a number in a TEXT column is the text SQLite would store, JSON text is stored
    compact (as reads give it). ``ValueError`` says why a value does not fit."""
    typ = col.type
    if isinstance(value, bytes):
        raise ValueError("a BLOB cannot be sent to the API")
    if typ == "TEXT":
        return apply_affinity(value, "TEXT")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number (JSON has none)")
    if typ == "JSON":
        if isinstance(value, str):
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                short = value if len(value) <= 40 else value[:37] + "..."
                raise ValueError(f"{short!r} is not valid JSON text") from None
        else:
            parsed = value  # a number is a JSON value as it is
        return coerce(parsed, "JSON")
    return coerce(value, typ)


def _json_value(col: ColumnSpec, value: Any) -> Any:
    """The JSON value sent for ``value`` (already converted by :func:`_sql_value`)."""
    if value is None:
        return None
    if col.type == "BOOLEAN":
        return bool(value)
    if col.type == "JSON":
        return orjson.loads(value)
    return value


def _put_path(body: dict[str, Any], col: ColumnSpec, value: Any) -> None:
    path = col.path or (col.name,)
    node = body
    for part in path[:-1]:
        if not isinstance(part, str):
            raise ReadOnlyError(
                f"column {col.name}: its path has a list index and cannot be written "
                "(set writable = false)"
            )
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ReadOnlyError(f"column {col.name}: its path collides with another column")
        node = nxt
    last = path[-1]
    if not isinstance(last, str):
        raise ReadOnlyError(
            f"column {col.name}: its path has a list index and cannot be written (set writable = false)"
        )
    node[last] = value
