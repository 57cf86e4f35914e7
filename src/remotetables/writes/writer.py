"""TableWriter: the write side of one virtual table on one connection (see the package doc)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import apsw
import orjson

from remotetables.config import ColumnSpec, TableSpec, origin_of
from remotetables.errors import (
    CoercionError,
    ConfigError,
    Error,
    NotSupportedError,
    ReadOnlyError,
    RemoteProtocolError,
    TransportError,
    ValueNotTaken,
)
from remotetables.http.client import JsonResponse, RequestContext, check_url_allowed
from remotetables.rows import get_path, sql_equal
from remotetables.writes.outcome import earlier_clause, may_have_applied, with_message
from remotetables.writes.values import json_value, key_rowid, put_path, sql_value

if TYPE_CHECKING:
    from remotetables.session import Session, StatementStats

__all__ = ["MAX_REMEMBERED", "NEW_ROW", "TableWriter"]

#: rows whose key one statement remembers between its scan and its writes
MAX_REMEMBERED = 1_000_000

NEW_ROW = "1 new row"  # an inserted row in ``applied`` when its key is not known

Row = tuple[Any, ...]


class TableWriter:
    """The write side of one virtual table on one connection."""

    def __init__(
        self, session: Session, spec: TableSpec, db: apsw.Connection | None = None
    ) -> None:
        self.session = session
        self.spec = spec
        self.write = spec.write
        self._db = db  # to see whether a transaction is open
        self._key_index = spec.column_index(spec.key) if spec.key else None
        # rowid -> the row(s) the statement's scan saw with it (SQLite gives UPDATE/DELETE only
        # the rowid); a list when two keys share a rowid
        self._seen: dict[int, Row | list[Row]] = {}
        self._seen_for: StatementStats | None = None
        self._stats: StatementStats | None = None
        self._applied: list[str] = []  # rows of the current statement already applied
        self._row_no = 0  # the row of the current statement being written (1-based)
        self.last_row: Row | None = None  # the API's answer to the last write
        self._last_answer: dict[str, Any] | None = None  # ... as the JSON object it was
        self._sent: list[tuple[int, Any]] = []  # (column index, SQL value) the last body holds
        self._urls_checked = False

    # ------------------------------------------------------------ scan side

    @property
    def remembers_rows(self) -> bool:
        """Whether scans must remember rows (the table allows UPDATE or DELETE)."""
        w = self.write
        return w is not None and (w.update is not None or w.delete is not None)

    def remember(self, rowid: int, row: Row) -> None:
        """Keep ``row`` for a write of this statement to ``rowid``; every row of a shared rowid
        is kept (the write tells them apart by their key)."""
        stats = self.session.stats
        if stats is not self._seen_for:  # a new statement: its writes use only its own scan
            self._seen_for = stats
            self._seen = {}
        seen = self._seen
        old = seen.get(rowid)
        if old is None:
            if len(seen) >= MAX_REMEMBERED:
                for gone in list(seen)[: MAX_REMEMBERED // 2]:
                    del seen[gone]
            seen[rowid] = row
            return
        ki = self._key_index
        rows = old if isinstance(old, list) else [old]
        if ki is None:
            seen[rowid] = row
            return
        for n, other in enumerate(rows):
            if _same_key(other[ki], row[ki]):
                rows[n] = row
                break
        else:
            rows.append(row)
        seen[rowid] = rows if len(rows) > 1 else rows[0]

    def _rows_for(self, rowid: int, verb: str) -> list[Row]:
        found = self._seen.get(rowid) if self._seen_for is self.session.stats else None
        if found is None:
            raise ReadOnlyError(
                f"table {self.spec.name}: {verb} of a row this statement has not read "
                "(remote rows are changed by key: use a WHERE clause that reads them)"
            )
        rows = found if isinstance(found, list) else [found]
        ki = self._key_index
        if ki is not None and any(r[ki] is None for r in rows):
            done = earlier_clause(self._applied)
            raise with_message(
                NotSupportedError(""),
                f"table {self.spec.name}: {verb} of a row whose key {self.spec.key} is NULL (the "
                "API gave it none): it cannot be addressed, nothing was sent for it."
                + (f" {done}; later rows were not attempted." if done else ""),
                self._applied,
            )
        return rows

    # ------------------------------------------------------------ xUpdate

    def insert(self, rowid: int | None, fields: Row) -> int:
        op = self._op("insert", "INSERT")
        if rowid is not None:
            raise ReadOnlyError(f"table {self.spec.name}: rowid cannot be set on a remote table")
        if self.session.statement_returning:
            raise NotSupportedError(
                f"table {self.spec.name}: INSERT ... RETURNING is not supported on a remote "
                "table (SQLite would return the values given and rowid -1, not the row the API "
                "created); nothing was sent. Insert without RETURNING, then read the new row "
                "with SELECT ... WHERE rowid = last_insert_rowid()"
            )
        label = "new row" + self._key_suffix(fields)
        body = self._body(fields, None, label)
        headers = self._idempotency_headers(op[0])
        url = self._url(op[1], None)
        response = self._send(
            op[0],
            url,
            body,
            label,
            idempotent=bool(headers),
            headers=headers,
            applied_as=NEW_ROW,
            unknown_as=f"{label} (row {self._row_no} of the statement)",
        )
        location = self._typed_key(_location_key(response))
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
        return key_rowid(key)

    def change(self, rowid: int, newrowid: int, fields: Row) -> None:
        op = self._op("update", "UPDATE")
        rows = self._rows_for(rowid, "UPDATE")
        key_index = self._key_index
        assert key_index is not None
        new_key = fields[key_index]
        # the row of this rowid whose key the new values carry (two keys may share a rowid)
        match = [r for r in rows if _same_key(r[key_index], new_key)]
        if newrowid != rowid or not match:
            raise ReadOnlyError(
                f"table {self.spec.name}: the key column {self.spec.key} cannot be changed "
                f"(row {self.spec.key}={rows[0][key_index] if len(rows) == 1 else '?'})"
            )
        old = match[0]
        key = old[key_index]
        label = f"{self.spec.key}={key}"
        body = self._body(fields, old, label)
        if not body:
            # the statement's own scan (never the cache) read these very values: the API
            # holds them already, no request
            self._done(label)
            return
        headers = self._idempotency_headers(op[0])
        response = self._send(
            op[0], self._url(op[1], key), body, label, idempotent=True, headers=headers
        )
        row = self._answer_row(response, op[0], label, label)
        self._done(label)
        if row is not None:
            self._check_taken(row, op[0], label)

    def delete(self, rowid: int) -> None:
        op = self._op("delete", "DELETE")
        rows = self._rows_for(rowid, "DELETE")
        ki = self._key_index
        assert ki is not None
        if len(rows) > 1:
            keys = ", ".join(f"{self.spec.key}={r[ki]}" for r in rows)
            done = earlier_clause(self._applied)
            raise with_message(
                NotSupportedError(""),
                f"table {self.spec.name}: rows {keys} share one rowid and SQLite names the rows a "
                "DELETE matched only by rowid, so this statement cannot tell which of them it "
                "matched: nothing was sent for them (delete them one at a time with WHERE "
                f"{self.spec.key} = ...)."
                + (f" {done}; later rows were not attempted." if done else ""),
                self._applied,
            )
        key = rows[0][ki]
        label = f"{self.spec.key}={key}"
        self._send(op[0], self._url(op[1], key), None, label, idempotent=True, gone_ok=True)
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
        self._check_transaction(verb)
        self._row_no += 1
        return op

    def _check_transaction(self, verb: str) -> None:
        db = self._db
        if db is None or not db.in_transaction or self.session.writes_in_transaction:
            return
        done = earlier_clause(self._applied)
        raise with_message(
            NotSupportedError(""),
            f"table {self.spec.name}: {verb} on a remote table inside an open transaction "
            "(BEGIN or SAVEPOINT, or earlier changes not yet committed) is refused: each row "
            "would apply at the API at once and ROLLBACK could not undo it. Commit or roll back "
            "first, or allow it knowingly with connect(..., writes_in_transaction=True) or "
            "writes_in_transaction = true in the config's [settings]; nothing was sent for this "
            "row." + (f" {done}; later rows were not attempted." if done else ""),
            self._applied,
        )

    def _new_statement_check(self) -> None:
        stats = self.session.stats
        if stats is not self._stats:  # a new statement began (the exec trace replaced stats)
            self._stats = stats
            self._applied = []
            self._row_no = 0

    def _idempotency_headers(self, method: str) -> list[tuple[str, str]]:
        """A fresh key per row for a POST (reused on that row's retries), if the table names
        the header: the API then carries out the row once however often it is sent."""
        idem = self.write.idempotency_header if self.write else None
        if idem and method == "POST":
            return [(idem, secrets.token_urlsafe(24))]
        return []

    def _typed_key(self, text: str | None) -> Any:
        """A key read from a ``Location`` header, as its column holds it (``'42'`` in an
        INTEGER key column is 42: the rowid the scans give the row)."""
        if text is None or self._key_index is None:
            return None
        try:
            return sql_value(self.spec.columns[self._key_index], text)
        except ValueError:
            return text

    def _key_suffix(self, fields: Row) -> str:
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

    def _body(self, fields: Row, old: Row | None, label: str) -> dict[str, Any]:
        """The JSON object to send: all given values (INSERT) or the changed ones (UPDATE),
        each converted to its column's type first (nothing is sent if one does not fit)."""
        body: dict[str, Any] = {}
        self._sent = []
        for i, col in enumerate(self.spec.columns):
            value = fields[i]
            if value is apsw.no_change:
                continue
            if value is not None:
                try:
                    value = sql_value(col, value)
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
            put_path(body, col, json_value(col, value))
            self._sent.append((i, value))
        return body

    def _check_taken(self, row: Row, method: str, label: str) -> None:
        """Every column sent must hold the value sent in the API's answer (when the answer
        carries that column's field): an API that ignores a field (read-only, or one this user
        may not change) or changes the value answers 2xx all the same. The row is applied."""
        answer = self._last_answer
        if answer is None:
            return
        for i, sent in self._sent:
            col = self.spec.columns[i]
            if not _has_path(answer, col.path) or _same_value(col.type, sent, row[i]):
                continue
            earlier = earlier_clause(self._applied[:-1])
            message = (
                f"table {self.spec.name}: {method} of {label} was applied, but the API did not "
                f"take column {col.name}: it holds {_short(row[i])}, not the {_short(sent)} sent "
                "(the API ignores or changes that field: it may be read-only, or not changeable "
                "by this user). The row stays applied with the API's values"
                + (f"; {earlier}" if earlier else "")
                + "; later rows were not attempted."
            )
            raise with_message(
                ValueNotTaken(message, table=self.spec.name, column=col.name, row=label),
                message,
                self._applied,
            )

    def _unfit(self, col: ColumnSpec, label: str, why: str) -> CoercionError:
        """The error for a value that does not fit its column: nothing of this row was sent."""
        table = self.spec.name
        row = self._row_no
        where = f"row {row} of the statement" + (f" ({label})" if label != "new row" else "")
        earlier = earlier_clause(self._applied)
        message = (
            f"{table}.{col.name}: {where}: {why} (declared {col.type}); nothing was sent for "
            "this row." + (f" {earlier}; later rows were not attempted." if earlier else "")
        )
        exc = CoercionError(message, table=table, column=col.name, row=row)
        exc.applied = tuple(self._applied)  # type: ignore[attr-defined]
        exc.unknown = ()  # type: ignore[attr-defined]
        return exc

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
        unknown_as: str | None = None,
    ) -> JsonResponse | None:
        """Send one row's request. ``applied_as`` names the row in ``applied`` if the API
        accepted it but its answer is unreadable, ``unknown_as`` in ``unknown`` if the outcome
        cannot be known (default: ``label``)."""
        rt = self.session.runtime
        spec = self.spec
        creds = rt.credentials(spec.provider)
        # a personal table needs a session user: fail before sending
        principal = creds.principal(self.session)
        provider = None if spec.provider == "__none__" else spec.provider
        ctx = RequestContext(table=spec.name, provider=provider, user=self.session.user)
        history: list[int | None] = []  # each attempt's status (None: no answer)
        keyed = bool(headers)
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
                history=history,
                retry_conflict=keyed,  # 409: the API is still carrying out an earlier attempt
                principal=principal,
            )
        except Error as exc:
            status = getattr(exc, "status_code", None)
            earlier = any(may_have_applied(s) for s in history[:-1])
            if gone_ok and (status == 410 or (status == 404 and earlier)):
                # gone: what DELETE wanted (a 404 only after an attempt that may have deleted
                # it; on the first attempt it can mean the API hides a row it will not delete)
                return None
            if isinstance(exc, RemoteProtocolError) and status is not None and status < 400:
                # the API accepted the row (2xx/3xx); only its answer is garbled
                raise self._unreadable(exc, method, label, applied_as or label) from exc
            if history and (earlier or may_have_applied(history[-1])):
                raise self._unknown(exc, method, label, unknown_as or label, history) from exc
            raise self._failed(exc, method, label, gone_ok and status == 404) from exc
        finally:
            # every user's cached rows this write may change (and scans still running) go
            rt.after_write(spec)

    def _failed(self, exc: Error, method: str, label: str, hidden: bool = False) -> Error:
        """``exc`` (same class, same attributes) with a message saying what was applied."""
        done = earlier_clause(self._applied) or "No earlier row of this statement was applied"
        why = ""
        if hidden:
            why = (
                " The row was read by this statement, so the API either hides it from this "
                "user for deletion (an access rule), has no DELETE for it, or someone else "
                "deleted it meanwhile: this statement did not delete it."
            )
        return with_message(
            exc,
            f"{method} of {label} failed: {exc}.{why} {done}; later rows were not attempted.",
            self._applied,
        )

    def _unknown(
        self, exc: Error, method: str, label: str, named: str, history: list[int | None]
    ) -> Error:
        """``exc`` saying that the API may or may not hold this row's change."""
        last = history[-1]
        if isinstance(exc, TransportError) or last is None:
            why = "no answer arrived"
        elif may_have_applied(last) and len(history) == 1:
            why = f"the API answered HTTP {last}, which does not say whether it was carried out"
        else:
            why = "an earlier attempt got no answer (or a 5xx) and may have been carried out"
        done = earlier_clause(self._applied) or "No earlier row of this statement was applied"
        message = (
            f"{method} of {label}: outcome unknown ({why}): {exc}. The API may or may not "
            "hold this row's change: check before running the statement again. "
            f"{done}; later rows were not attempted."
        )
        return with_message(exc, message, self._applied, (named,))

    def _unreadable(self, exc: Error, method: str, label: str, done: str) -> Error:
        """``exc`` (same class, same attributes) saying that the row WAS applied (the API
        accepted it) although its answer cannot be read; ``done`` names the row in ``applied``."""
        earlier = earlier_clause(self._applied)
        self._done(done)
        named = "" if done in (label, NEW_ROW) else f" ({done})"
        message = (
            f"{method} of {label} was applied{named}, but the API's answer cannot be read: "
            f"{exc}. The row stays applied"
            + (f"; {earlier}" if earlier else "")
            + "; later rows were not attempted."
        )
        return with_message(exc, message, self._applied)

    def _done(self, label: str) -> None:
        self._applied.append(label)

    def _answer_row(
        self, response: JsonResponse | None, method: str, label: str, done: str
    ) -> Row | None:
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
        self._last_answer = obj
        return row


def _has_path(doc: Any, path: Sequence[str | int]) -> bool:
    """Whether ``path`` leads to a field of ``doc`` (``null`` counts; an absent field not)."""
    for step in path:
        if isinstance(step, int):
            if not (isinstance(doc, list) and -len(doc) <= step < len(doc)):
                return False
            doc = doc[step]
        elif isinstance(doc, dict) and step in doc:
            doc = doc[step]
        else:
            return False
    return True


def _same_value(kind: str, sent: Any, held: Any) -> bool:
    """Whether the API holds the value sent (JSON compared as parsed: key order aside; an
    empty text is how some APIs, ServiceNow's among them, hold a NULL)."""
    if sent is None or held is None:
        return sent is None and held in (None, "")
    if kind == "JSON":
        return bool(orjson.loads(sent) == orjson.loads(held))
    return sql_equal(sent, held)


def _short(value: Any) -> str:
    text = "NULL" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_key(a: Any, b: Any) -> bool:
    return a is not None and b is not None and sql_equal(a, b)


def _location_key(response: JsonResponse | None) -> str | None:
    if response is None:
        return None
    location = response.headers.get("location")
    if not location:
        return None
    last = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
    return last or None
