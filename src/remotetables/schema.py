"""Where a connection's remote tables are declared: its ``temp`` schema (the default: the
database file stays plain, openable by tools without the module) or the file itself
(``settings.persist_tables``); and moving files of older versions, which stored them in the
file, to the temp schema without touching their native tables."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any, cast

import apsw
import apsw.ext

from remotetables import errors
from remotetables.errors import ConfigError
from remotetables.pushdown import COLUMNS, describe_columns
from remotetables.session import Session
from remotetables.vtable import MODULE_NAME, Dropper, Module, is_remote_table_sql

__all__ = ["ensure_tables", "register_columns_table"]

_log = logging.getLogger(__name__)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _KeepStored(Exception):
    """Migration stops: the stored remote tables are still needed in the file."""


def _prepares(db: apsw.Connection, sql: str) -> bool:
    """Whether ``sql`` compiles (EXPLAIN runs nothing: no remote request)."""
    try:
        db.execute("EXPLAIN " + sql).fetchall()
    except apsw.SQLError:
        return False
    return True


def ensure_tables(db: apsw.Connection, session: Session, *, persist: bool | None = None) -> None:
    """Create each configured remote table of ``session``'s config if it is not there.

    By default in the connection's ``temp`` schema: nothing is written to the database file,
    and remote tables stored in it by older versions are dropped from it (its native tables
    are left as they are). With ``persist`` (default: ``settings.persist_tables``) the
    ``CREATE VIRTUAL TABLE`` goes into the file. A native table or view of a remote table's
    name in the file does not stop the connection (anyone who can write a shared file could
    otherwise keep everyone else from connecting): the remote table in ``temp`` wins for
    unqualified names, a warning says so, and ``main.<name>`` still reaches the native one.
    With ``persist`` such a conflict is a :class:`ConfigError`. APSW's own errors propagate.
    """
    config = session.runtime.config
    if persist is None:
        persist = config.settings.persist_tables
    schema = "main" if persist else "temp"
    if not persist:
        _unstore_remote_tables(db, session)
    existing: dict[str, tuple[str, str, str]] = {}
    for where in ("temp", "main"):
        if where == "main" and not persist:
            continue  # in temp, a native table of the file is shadowed (warned below)
        for name, kind, sql in db.execute(
            f"SELECT name, type, sql FROM {where}.sqlite_schema WHERE type IN ('table', 'view')"
        ):
            existing.setdefault(str(name).lower(), (where, str(kind), str(sql or "")))
    if not persist:
        shadowed = [
            str(name)
            for name, sql in db.execute(
                "SELECT name, sql FROM main.sqlite_schema WHERE type IN ('table', 'view')"
            )
            if str(name).lower() in {t.lower() for t in config.tables}
            and str(name).lower() not in existing
            and not is_remote_table_sql(sql)
        ]
        if shadowed:
            _log.warning(
                "the database file has its own table or view named %s, like remote table(s) of "
                "%s: the remote table wins for unqualified names on this connection; write "
                "main.<name> for the file's own",
                ", ".join(shadowed),
                config.path or "the config",
            )
    missing = []
    for name in config.tables:  # every conflict first: nothing half-created
        found = existing.get(name.lower())
        if found is not None and not is_remote_table_sql(found[2]):
            kind = "view" if found[1] == "view" else "native table"
            raise ConfigError(
                f"table {name} already exists in the database as a {kind}; "
                "rename the remote table in the config",
                file=config.path,
                key=f"tables.{name}",
            )
        if found is None or found[0] != schema:
            missing.append(name)
    if not missing:
        return
    guard = db.authorizer  # a locked session's SQL may not store virtual tables; this may
    db.authorizer = None
    try:
        with db:  # all or none
            for name in missing:
                db.execute(
                    f"CREATE VIRTUAL TABLE {schema}.{_quote(name)} USING {MODULE_NAME}({name})"
                )
    except apsw.ReadOnlyError as exc:
        raise errors.OperationalError(
            f"cannot create the remote tables ({', '.join(missing)}): the database is read-only"
        ) from exc
    finally:
        db.authorizer = guard


def _unstore_remote_tables(db: apsw.Connection, session: Session) -> None:
    """Drop the remote tables an older version stored in the file (native data stays).

    Kept as they are (a warning says why) when the file is read-only or busy, or when a view or
    trigger stored in the file reads them (those cannot read the temp schema): the temp tables
    then shadow the stored ones on this connection."""
    stored, views, triggers = [], [], []
    for name, kind, sql in db.execute(
        "SELECT name, type, sql FROM main.sqlite_schema WHERE type IN ('table', 'view', 'trigger')"
    ):
        if kind == "view":
            views.append(str(name))
        elif kind == "trigger":
            triggers.append((str(name), str(sql or "")))
        elif is_remote_table_sql(sql):
            stored.append(str(name))
    if not stored:
        return
    # a trigger cannot be compiled on its own: one that names a stored remote table keeps them
    names = re.compile(
        r"(?<![\w$])(?:" + "|".join(re.escape(n) for n in stored) + r")(?![\w$])", re.IGNORECASE
    )
    reading = [t for t, sql in triggers if names.search(sql)]
    dropper = Dropper()
    db.create_module(MODULE_NAME, cast(Any, dropper))
    try:
        # SQLite connects each table through the module its own parser finds: only a table it
        # connected through ours is dropped (never an FTS5 or other virtual table)
        for name in stored:
            _prepares(db, f"SELECT 1 FROM main.{_quote(name)}")
        kept = [n for n in stored if ("main", n.lower()) not in dropper.connected]
        if kept:
            _log.warning(
                "tables %s look like remote tables but SQLite does not open them through the "
                "module: they stay in the database file",
                ", ".join(kept),
            )
        stored = [n for n in stored if n not in kept]
        if not stored:
            return
        with db:
            for name in stored:
                db.execute(f"DROP TABLE main.{_quote(name)}")
            broken = [v for v in views if not _prepares(db, f"SELECT * FROM main.{_quote(v)}")]
            if broken or reading:
                what = [f"view(s) {', '.join(broken)}"] if broken else []
                what += [f"trigger(s) {', '.join(reading)}"] if reading else []
                raise _KeepStored(
                    f"the stored {' and '.join(what)} read them (make them TEMP views or "
                    "triggers, or set settings.persist_tables = true)"
                )
        _log.info("moved remote tables %s out of the database file", ", ".join(stored))
    except (apsw.Error, _KeepStored) as exc:
        _log.warning(
            "remote tables %s stay stored in the database file: %s", ", ".join(stored), exc
        )
    finally:
        db.create_module(MODULE_NAME, cast(Any, Module(session)), use_bestindex_object=True)


def register_columns_table(db: apsw.Connection, session: Session) -> None:
    """``remotetables_columns``: what each column of the config's tables pushes to its API
    (an eponymous read-only table, one row per column and operator; see pushdown.describe)."""

    def remotetables_columns() -> Iterator[tuple[Any, ...]]:
        for spec in session.runtime.config.tables.values():
            yield from describe_columns(spec)

    setattr(remotetables_columns, "columns", COLUMNS)  # noqa: B010 (apsw.ext reads them)
    setattr(remotetables_columns, "column_access", apsw.ext.VTColumnAccess.By_Index)  # noqa: B010
    apsw.ext.make_virtual_module(db, "remotetables_columns", cast(Any, remotetables_columns))
