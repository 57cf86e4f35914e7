"""Plain copies of remote tables: ``remotetables export`` and ``remotetables sync``.

A copy is an ordinary SQLite file for tools that cannot load the module (Datasette, DuckDB,
the stock ``sqlite3`` CLI, BI drivers). Each table gets its declared types and its ``key`` as
PRIMARY KEY. A copy is atomic: every table's rows are fetched first (into the temp schema),
then applied to the file in one transaction, so a failure (an API error halfway) leaves the
previous copy exactly as it was; a new file is built under a temporary name and renamed, so
a failure never leaves a 0-byte or half-written file.

An incremental copy asks a table that declares ``updated_since`` only for the rows updated at
or after the greatest value its copy holds, and replaces them by key (rows deleted at the API
go away at the next full copy); other tables are copied whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import apsw

from remotetables.config import TableSpec
from remotetables.dbapi import Connection
from remotetables.errors import OperationalError, ProgrammingError
from remotetables.plan import Plan
from remotetables.scan import scan
from remotetables.vtable import is_remote_table_sql

__all__ = ["PLAIN_TYPES", "TableCopy", "write_plain"]

# BOOLEAN keeps its name (0/1 values; SQLAlchemy and pandas read it as bool); JSON stays TEXT
# (a column declared JSON would have NUMERIC affinity and turn the JSON text '5' into 5)
PLAIN_TYPES = {
    "INTEGER": "INTEGER",
    "REAL": "REAL",
    "TEXT": "TEXT",
    "BOOLEAN": "BOOLEAN",
    "JSON": "TEXT",
}

META = "_remotetables_export"
_META_COLUMNS = {
    "table_name": "TEXT PRIMARY KEY",
    "user": "TEXT",
    "rows": "INTEGER",
    "exported_at": "TEXT",
    "mode": "TEXT",  # full | incremental
    "since": "TEXT",  # the updated_since value sent (incremental)
}


@dataclass(frozen=True)
class TableCopy:
    """What one table's copy did: ``rows`` fetched, ``total`` in the copy afterwards."""

    name: str
    rows: int
    total: int
    mode: str
    since: str | None = None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_sql(spec: TableSpec, name: str | None = None) -> str:
    """``CREATE TABLE`` for the plain copy (``name``: qualified and quoted, default the table's)."""
    cols = ", ".join(
        f"{_quote(c.name)} {PLAIN_TYPES[c.type]}" + (" PRIMARY KEY" if c.name == spec.key else "")
        for c in spec.columns
    )
    return f"CREATE TABLE {name or _quote(spec.name)}({cols})"


def check_plain_target(target: Path) -> None:
    """An existing target must be a SQLite file without remote tables of its own."""
    try:
        db = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            remote = [
                str(name)
                for name, sql in db.execute(
                    "SELECT name, sql FROM sqlite_schema WHERE type = 'table'"
                )
                if is_remote_table_sql(sql)
            ]
        finally:
            db.close()
    except apsw.Error as exc:
        raise OperationalError(f"{target} is not a SQLite database: {exc}") from None
    if remote:
        raise ProgrammingError(
            f"{target} holds remote tables ({', '.join(remote)}): the copy must go to a plain "
            "SQLite file (a new one, or one written by export or sync)"
        )


def check_names(
    out: apsw.Connection, specs: Sequence[TableSpec], target: Path, replace: bool = False
) -> None:
    """Refuse to replace what an export did not write: a native table (unless ``replace``),
    view, index or trigger of the target that has a copied table's name (SQLite's names are
    case-insensitive). A table ``_remotetables_export`` records was written by a copy."""
    have_meta = out.execute(
        "SELECT 1 FROM main.sqlite_schema WHERE name = ? AND type = 'table'", (META,)
    ).fetchall()
    for spec in specs:
        found = out.execute(
            "SELECT type, name FROM main.sqlite_schema WHERE name = ? COLLATE NOCASE",
            (spec.name,),
        ).fetchall()
        if not found:
            continue
        kind, name = str(found[0][0]), str(found[0][1])
        if kind == "table":
            copied = bool(have_meta) and bool(
                out.execute(
                    f"SELECT 1 FROM main.{META} WHERE table_name = ? COLLATE NOCASE", (name,)
                ).fetchall()
            )
            if copied or replace:
                continue
            raise ProgrammingError(
                f"{target} already has a table {name} that export or sync did not write (it is "
                f"not in {META}): copying remote table {spec.name} would replace it and its rows; "
                "nothing was changed. Copy to another file, rename that table, or pass --replace "
                "to replace it on purpose"
            )
        raise ProgrammingError(
            f"{target} already has a {kind} {name}: remote table {spec.name} cannot be copied "
            "there under that name; nothing was changed. Copy to another file, or drop or "
            f"rename that {kind}"
        )


def write_plain(
    conn: Connection,
    specs: Sequence[TableSpec],
    target: str | os.PathLike[str],
    owner: Callable[[TableSpec], str | None],
    *,
    incremental: bool = False,
    replace: bool = False,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[TableCopy]:
    """Copy the rows ``conn``'s session user may read of ``specs`` into ``target``, atomically.

    The rows are first fetched into the target connection's temp schema (the file is neither
    changed nor locked while the API answers), then applied in one short transaction: a tool
    reading the file meanwhile (Datasette) sees the previous copy, then the new one. A new
    target is built under a temporary name and renamed, so a failure leaves no file at all.
    ``owner(spec)`` is whose rows a table holds (recorded in ``_remotetables_export``).
    A table of the target that a copy did not write is never replaced (``ProgrammingError``,
    nothing changed), unless ``replace``; a view, index or trigger of a copied table's name
    never is.
    """
    path = Path(os.path.realpath(target))  # through a symlink: the file is updated, not the link
    if path.exists():
        check_plain_target(path)
        out = apsw.Connection(str(path))
        try:
            out.set_busy_timeout(30_000)
            check_names(out, specs, path, replace)  # before asking the API for anything
            return _write(conn, out, specs, owner, incremental, now, path, replace)
        finally:
            out.close()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        out = apsw.Connection(str(tmp))
        try:
            copies = _write(conn, out, specs, owner, incremental, now, path, replace)
        finally:
            out.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return copies


def _write(
    conn: Connection,
    out: apsw.Connection,
    specs: Sequence[TableSpec],
    owner: Callable[[TableSpec], str | None],
    incremental: bool,
    now: Callable[[], dt.datetime],
    target: Path,
    replace: bool,
) -> list[TableCopy]:
    staged = []
    try:
        for spec in specs:  # 1. fetch: nothing in the file changes yet
            user = owner(spec)
            since = _since(out, spec, user) if incremental else None
            stage = f"temp.{_quote('_remotetables_stage_' + spec.name)}"
            out.execute(f"DROP TABLE IF EXISTS {stage}")
            out.execute(create_sql(spec, stage))
            n = _fetch(conn, out, spec, since, stage)
            staged.append((spec, user, since, n, stage))
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        with out:  # 2. apply: one transaction, every table or none
            check_names(out, specs, target, replace)  # again: the file may have changed since
            _meta_table(out)
            copies = [_apply(out, *item, stamp) for item in staged]
        return copies
    finally:
        for *_, stage in staged:
            with contextlib.suppress(apsw.Error):
                out.execute(f"DROP TABLE IF EXISTS {stage}")


def _meta_table(out: apsw.Connection) -> None:
    cols = ", ".join(f"{name} {kind}" for name, kind in _META_COLUMNS.items())
    out.execute(f"CREATE TABLE IF NOT EXISTS main.{META}({cols})")
    have = {str(r[1]) for r in out.execute(f"PRAGMA main.table_info({META})")}
    for name, kind in _META_COLUMNS.items():
        if name not in have:  # a copy written by an older version
            out.execute(f"ALTER TABLE main.{META} ADD COLUMN {name} {kind}")


def _since(out: apsw.Connection, spec: TableSpec, user: str | None) -> str | None:
    """The updated_since value for an incremental copy, or None for a whole copy."""
    if spec.updated_since is None or spec.key is None:
        return None
    have_meta = out.execute(
        "SELECT 1 FROM main.sqlite_schema WHERE name = ? AND type = 'table'", (META,)
    ).fetchall()
    if not have_meta:
        return None
    prev = out.execute(
        f"SELECT user FROM main.{META} WHERE table_name = ?", (spec.name,)
    ).fetchall()
    if not prev or prev[0][0] != user:
        return None  # never copied, or copied for someone else
    want = [(c.name, PLAIN_TYPES[c.type], int(c.name == spec.key)) for c in spec.columns]
    have = [
        (str(r[1]), str(r[2]), int(r[5]))
        for r in out.execute(f"PRAGMA main.table_info({_quote(spec.name)})")
    ]
    if have != want:
        return None  # the table's columns changed since: copy it whole
    _, column = spec.updated_since
    top = out.execute(f"SELECT max({_quote(column)}) FROM main.{_quote(spec.name)}").fetchall()
    return None if top[0][0] is None else str(top[0][0])


def _fetch(
    conn: Connection, out: apsw.Connection, spec: TableSpec, since: str | None, stage: str
) -> int:
    fetch = replace(spec, cache_ttl=0)  # fresh rows, and never cached under another query's key
    if since is not None:
        assert spec.updated_since is not None
        fetch = replace(fetch, params=(*spec.params, (spec.updated_since[0], since)))
    marks = ", ".join("?" * len(spec.columns))
    # a key the API repeats (a page that shifted while paging) keeps its last row
    insert = f"INSERT OR REPLACE INTO {stage} VALUES ({marks})"
    n = 0
    for page in scan(conn.runtime, conn.session, fetch, Plan(), ()):
        out.executemany(insert, page)
        n += len(page)
    return n


def _apply(
    out: apsw.Connection,
    spec: TableSpec,
    user: str | None,
    since: str | None,
    n: int,
    stage: str,
    stamp: str,
) -> TableCopy:
    q = f"main.{_quote(spec.name)}"
    if since is None:
        out.execute(f"DROP TABLE IF EXISTS {q}")
        out.execute(create_sql(spec, q))
    out.execute(f"INSERT OR REPLACE INTO {q} SELECT * FROM {stage}")
    total = int(str(out.execute(f"SELECT count(*) FROM {q}").fetchall()[0][0]))
    mode = "full" if since is None else "incremental"
    out.execute(
        f"INSERT OR REPLACE INTO main.{META}(table_name, user, rows, exported_at, mode, since) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (spec.name, user, total, stamp, mode, since),
    )
    return TableCopy(spec.name, n, total, mode, since)


def parse_interval(text: str) -> float:
    """``10m``, ``30s``, ``1h``, ``1d`` or plain seconds -> seconds.

    >>> parse_interval("10m"), parse_interval("90")
    (600.0, 90.0)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    scale = units.get(t[-1:])
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise ProgrammingError(
            f"interval {text!r}: use a number with s, m, h or d (10m, 30s, 1h)"
        ) from None
    if value < 0:
        raise ProgrammingError(f"interval {text!r} is negative")
    return value
