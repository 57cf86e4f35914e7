"""The APSW virtual-table module: the only file that speaks SQLite's CamelCase protocol.

``CREATE VIRTUAL TABLE remote_incidents USING remotetables(remote_incidents)`` names a table of
the config; the schema comes from the config each time the table is connected, and the stored
SQL holds no secret. Filter delegates to :func:`remotetables.scan.scan`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw

from remotetables.config import TableSpec
from remotetables.plan import Constraint, Plan, make_plan
from remotetables.scan import PartialPage, Row, scan
from remotetables.session import Session
from remotetables.writes import TableWriter, key_rowid

__all__ = ["MODULE_NAME", "Dropper", "Module", "is_remote_table_sql", "schema_sql"]

MODULE_NAME = "remotetables"

_DECLARED = {
    "INTEGER": "INTEGER",
    "REAL": "REAL",
    "TEXT": "TEXT",
    "BOOLEAN": "BOOLEAN",
    "JSON": "TEXT",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_sql(spec: TableSpec) -> str:
    """The declared schema: types SQLite understands, and the table's ``key`` as PRIMARY KEY
    (what ``PRAGMA table_info`` and SQLAlchemy report; SQLite enforces nothing on a virtual
    table, and still checks DISTINCT and GROUP BY itself)."""
    cols = ", ".join(
        f"{_quote(c.name)} {_DECLARED[c.type]}" + (" PRIMARY KEY" if c.name == spec.key else "")
        for c in spec.columns
    )
    return f"CREATE TABLE x({cols})"


def is_remote_table_sql(sql: str | None) -> bool:
    """Whether a stored ``CREATE`` statement is one of this module's virtual tables.

    The statement is tokenized as SQLite does: comments are skipped and quoted names are
    names, so only the module name after the table name's ``USING`` counts (``USING
    remotetables`` in a comment or inside a quoted table name does not)."""
    if not sql:
        return False
    words = _tokens(sql, 12)
    if [w.upper() for w in words[:3]] != ["CREATE", "VIRTUAL", "TABLE"]:
        return False
    rest = words[3:]
    if [w.upper() for w in rest[:3]] == ["IF", "NOT", "EXISTS"]:
        rest = rest[3:]
    if len(rest) >= 3 and rest[1] == ".":  # schema.table
        rest = rest[2:]
    # rest: table name, USING, module name (each token already unquoted if it was quoted)
    return (
        len(rest) >= 3
        and rest[1].upper() == "USING"
        and not rest[1].startswith(_QUOTED)
        and rest[2].removeprefix(_QUOTED).lower() == MODULE_NAME
    )


_QUOTED = "\x00"  # marks a token that was quoted (a name, never a keyword)
_CLOSE = {'"': '"', "'": "'", "`": "`", "[": "]"}


def _tokens(sql: str, limit: int) -> list[str]:
    """The first ``limit`` tokens of ``sql``: comments skipped, quoted names unquoted (and
    marked with ``_QUOTED``), a single punctuation character its own token."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n and len(out) < limit:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in _CLOSE:
            close = _CLOSE[c]
            j, text = i + 1, []
            while j < n:
                if sql[j] == close:
                    if close != "]" and sql.startswith(close * 2, j):
                        text.append(close)
                        j += 2
                        continue
                    break
                text.append(sql[j])
                j += 1
            out.append(_QUOTED + "".join(text))
            i = j + 1
        elif c.isalnum() or c in "_$" or ord(c) > 127:
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$" or ord(sql[j]) > 127):
                j += 1
            out.append(sql[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return out


class Dropper:
    """A stand-in module that lets SQLite drop a stored remote table whatever its arguments
    (a table no longer in the config included): used to move old files to the temp schema."""

    def __init__(self) -> None:
        #: (schema, table) of every table SQLite connected through this module: SQLite's own
        #: parser says these are this module's tables
        self.connected: set[tuple[str, str]] = set()

    def Create(
        self, connection: apsw.Connection, modulename: str, dbname: str, tablename: str, *args: str
    ) -> tuple[str, _DropTable]:
        self.connected.add((dbname.lower(), tablename.lower()))
        return "CREATE TABLE x(unused)", _DropTable()

    Connect = Create


class _DropTable:
    def BestIndex(self, *args: Any) -> None:
        return None

    def Open(self) -> Any:
        raise apsw.SQLError("a remote table is being dropped")

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class Module:
    """One per connection: it carries that connection's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def Create(
        self, connection: apsw.Connection, modulename: str, dbname: str, tablename: str, *args: str
    ) -> tuple[str, Table]:
        name = args[0].strip().strip("'\"") if args else tablename
        spec = self.session.runtime.table(name)
        # never read from a view or trigger stored in the database file (SQLite: "unsafe use
        # of virtual table"): whoever can write the file must not run queries as the reader
        connection.vtab_config(apsw.SQLITE_VTAB_DIRECTONLY)
        return schema_sql(spec), Table(self.session, spec, connection)

    Connect = Create


class Table:
    def __init__(
        self, session: Session, spec: TableSpec, connection: apsw.Connection | None = None
    ) -> None:
        self.session = session
        self.spec = spec
        self._plans: dict[str, Plan] = {}
        # INSERT/UPDATE/DELETE (remotetables.writes); the connection says if a transaction is open
        self.writer = TableWriter(session, spec, connection)
        self.ncols = len(spec.columns)
        # keyless rowids: whole row -> the rowids handed out for its 1st, 2nd ... copy in a scan,
        # the same in every scan of one statement (SQLite merges OR scans and joins by rowid)
        self._rowids: dict[Row, list[int]] = {}
        self._rowids_for: object = None  # the statement they belong to
        self._next_rowid = 1

    def keyless_rowid(self, row: Row, copy: int) -> int:
        """The rowid of the ``copy``-th (0-based) occurrence of ``row`` in a scan."""
        stats = self.session.stats
        if self._rowids_for is not stats:  # a new statement: start again
            self._rowids_for = stats
            self._rowids = {}
            self._next_rowid = 1
        ids = self._rowids.get(row)
        if ids is None:
            ids = self._rowids[row] = []
        while len(ids) <= copy:
            ids.append(self._next_rowid)
            self._next_rowid += 1
        return ids[copy]

    def identity(self, row: Row) -> Row:
        """The whole row a tuple stands for (built from the JSON item it carries)."""
        if len(row) == self.ncols:
            return row
        return self.session.runtime.row_builder(self.spec).identity(row[-1])

    def BestIndexObject(self, ii: apsw.IndexInfo) -> bool:
        constraints = []
        for i in range(ii.nConstraint):
            op = ii.get_aConstraint_op(i)
            usable = bool(ii.get_aConstraint_usable(i))
            rhs: Any = None
            in_capable = False
            if usable:
                try:
                    rhs = ii.get_aConstraint_rhs(i)
                except (apsw.Error, ValueError):
                    rhs = None
                if op == apsw.SQLITE_INDEX_CONSTRAINT_EQ:
                    in_capable = bool(ii.get_aConstraintUsage_in(i))
            collation = ii.get_aConstraint_collation(i) or "BINARY"
            constraints.append(
                Constraint(
                    column=ii.get_aConstraint_iColumn(i),
                    op=op,
                    usable=usable,
                    rhs_known=rhs is not None,
                    rhs_text=isinstance(rhs, str),
                    in_capable=in_capable,
                    binary=collation.upper() == "BINARY",
                )
            )
        order_by = [
            (ii.get_aOrderBy_iColumn(i), bool(ii.get_aOrderBy_desc(i))) for i in range(ii.nOrderBy)
        ]
        result = make_plan(self.spec, constraints, ii.nOrderBy, set(ii.colUsed), order_by)
        if not result.accept:
            return False
        for i, (argv, omit, use_in) in result.usage.items():
            ii.set_aConstraintUsage_argvIndex(i, argv)
            ii.set_aConstraintUsage_omit(i, omit)
            if use_in:
                ii.set_aConstraintUsage_in(i, True)
        ii.idxStr = result.plan.to_idxstr()
        if result.order_consumed:
            ii.orderByConsumed = True
        ii.estimatedCost = result.estimated_cost
        ii.estimatedRows = result.estimated_rows
        return True

    def plan_for(self, idxstr: str | None) -> Plan:
        key = idxstr or ""
        plan = self._plans.get(key)
        if plan is None:
            plan = Plan.from_idxstr(idxstr)
            self._plans[key] = plan
        return plan

    def Open(self) -> Cursor:
        if self.writer.remembers_rows:
            return _RememberingCursor(self)
        return Cursor(self)

    # xUpdate (APSW's VTTable protocol): each row becomes one request, see remotetables.writes

    def UpdateInsertRow(self, rowid: int | None, fields: tuple[Any, ...]) -> int:
        return self.writer.insert(rowid, fields)

    def UpdateChangeRow(self, rowid: int, newrowid: int, fields: tuple[Any, ...]) -> None:
        self.writer.change(rowid, newrowid, fields)

    def UpdateDeleteRow(self, rowid: int) -> None:
        self.writer.delete(rowid)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class Cursor:
    """Walks the pages of one scan; no state lives on the table (self-joins open two).

    The hot path is Next/Eof/Column, called by SQLite once per row (Column once per value):
    Next takes the next tuple from an iterator over the current page and does nothing else.
    """

    __slots__ = (
        "_eof",
        "_it",
        "_last_row",
        "_last_rowid",
        "_occurrences",
        "_page",
        "_pages",
        "_row",
        "_table",
    )

    def __init__(self, table: Table) -> None:
        self._table = table
        self._pages: Iterator[list[Row]] = iter(())
        self._it: Iterator[Row] = iter(())
        self._page: list[Row] = []
        self._row: Row = ()
        self._eof = True
        self._occurrences: dict[Row, int] | None = None
        self._last_row: Row | None = None  # the row whose rowid is _last_rowid
        self._last_rowid = 0

    def Filter(self, idxnum: int, idxstr: str | None, args: tuple[Any, ...]) -> None:
        self._close_pages()
        table = self._table
        plan = table.plan_for(idxstr)
        self._pages = scan(table.session.runtime, table.session, table.spec, plan, args)
        self._occurrences = None
        self._last_row = None
        self._next_page()

    def _next_page(self) -> None:
        for page in self._pages:
            if page:
                self._page = page
                self._it = it = iter(page)
                self._row = next(it)
                self._eof = False
                return
        self._it = iter(())
        self._page = []
        self._eof = True

    def Eof(self) -> bool:
        return self._eof

    def Next(self) -> None:
        row = next(self._it, None)  # rows are tuples, never None
        if row is None:
            self._next_page()
        else:
            self._row = row

    def Column(self, n: int) -> Any:
        return self._row[n]

    def Rowid(self) -> int:
        """Stable for a row within a process: SQLite merges OR scans by rowid."""
        spec = self._table.spec
        row = self._row
        if spec.key:
            return key_rowid(row[spec.column_index(spec.key)])  # the writer finds rows by it too
        if self._last_row is row:  # asked again for the same row (a held reference: no reuse)
            return self._last_rowid
        # the whole row, whatever columns the query reads; identical rows get distinct rowids
        # (by copy number), the same in every scan of the statement that sees them
        table = self._table
        page = self._page
        whole = page.whole(row) if type(page) is PartialPage else table.identity(row)
        if self._occurrences is None:
            self._occurrences = {}
        n = self._occurrences.get(whole, 0)
        self._occurrences[whole] = n + 1
        rowid = table.keyless_rowid(whole, n)
        self._last_row = row
        self._last_rowid = rowid
        return rowid

    def _close_pages(self) -> None:
        close = getattr(self._pages, "close", None)
        if close is not None:
            close()

    def Close(self) -> None:
        self._close_pages()


class _RememberingCursor(Cursor):
    """For tables that allow UPDATE/DELETE: SQLite gives those only the rowid, so each row it
    asks the rowid of is remembered (by key) for the write that follows."""

    __slots__ = ("_ncols", "_writer")

    def __init__(self, table: Table) -> None:
        super().__init__(table)
        self._writer = table.writer
        self._ncols = len(table.spec.columns)

    def Rowid(self) -> int:
        rowid = super().Rowid()
        self._writer.remember(rowid, tuple(self.Column(i) for i in range(self._ncols)))
        return rowid
