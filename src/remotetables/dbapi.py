"""PEP 249 (DB-API 2.0) over APSW, with the remote tables registered.

This module is the boundary where every ``apsw.Error`` becomes a remotetables error (chained
with ``from exc``); remotetables' own errors raised inside the virtual table pass through
unchanged.

>>> import remotetables
>>> with remotetables.connect(":memory:") as conn:
...     conn.cursor().execute("SELECT 1 + 1").fetchone()
(2,)
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import apsw
import orjson

from remotetables import errors
from remotetables.config import Config, load_config
from remotetables.errors import InterfaceError
from remotetables.schema import ensure_tables, register_columns_table
from remotetables.session import Runtime, Session, StatementStats
from remotetables.sqlguard import authorizer
from remotetables.sqltext import DML, dml_target, insert_returning
from remotetables.vtable import MODULE_NAME, Module

__all__ = ["Connection", "Cursor", "apilevel", "connect", "paramstyle", "threadsafety"]

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"


def _map_error(exc: apsw.Error) -> errors.Error:
    """The one translation from apsw's exceptions to the PEP 249 tree."""
    text = str(exc)
    if isinstance(exc, (apsw.ConstraintError, apsw.MismatchError)):
        cls: type[errors.Error] = errors.IntegrityError
    elif isinstance(exc, apsw.TooBigError | apsw.RangeError):
        cls = errors.DataError
    elif isinstance(
        exc, (apsw.BindingsError, apsw.ExecutionCompleteError, apsw.ThreadingViolationError)
    ):
        cls = errors.ProgrammingError
    elif isinstance(exc, (apsw.CursorClosedError, apsw.ConnectionClosedError)):
        cls = errors.InterfaceError
    elif isinstance(exc, (apsw.CorruptError, apsw.NotADBError, apsw.InternalError)):
        cls = (
            errors.DatabaseError
            if not isinstance(exc, apsw.InternalError)
            else errors.InternalError
        )
    elif isinstance(exc, apsw.SQLError) and text.startswith("unsafe use of"):
        return errors.NotAuthorized(
            f"{text}: remote tables and the SQL functions of remotetables cannot be used from "
            "what the database file stores (a view, trigger, DEFAULT, CHECK, index or generated "
            "column): whoever writes the file would run them as the user reading it; make it a "
            "TEMP view or trigger"
        )
    elif isinstance(exc, apsw.SQLError) and "no such module" in text:
        cls = errors.OperationalError
    else:
        cls = errors.OperationalError
    return cls(text)


def _resolve_config(
    config: str | os.PathLike[str] | Config | None, environ: Mapping[str, str]
) -> Config:
    if isinstance(config, Config):
        return config
    if config is None:
        env = environ.get("REMOTETABLES_CONFIG")
        if env:
            return load_config(env, environ=environ)
        if Path("remotetables.toml").exists():
            return load_config("remotetables.toml", environ=environ)
        return Config(providers={}, tables={})
    return load_config(config, environ=environ)


def connect(
    database: str | os.PathLike[str] = ":memory:",
    config: str | os.PathLike[str] | Config | None = None,
    *,
    user: str | None = None,
    lock_user: bool = False,
    consent: Any = None,
    runtime: Runtime | None = None,
    token_store: Any = None,
    transport: Any = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[StatementStats], None] | None = None,
    create_tables: bool = True,
    persist_tables: bool | None = None,
    access_tokens: Mapping[str, str] | None = None,
    writes_in_transaction: bool | None = None,
) -> Connection:
    """Open ``database`` with the remote tables of ``config``.

    ``config`` is a TOML path or a :class:`Config`; by default ``$REMOTETABLES_CONFIG`` or
    ``./remotetables.toml``. ``user`` sets the session user (as ``set_user()``); with
    ``lock_user=True`` SQL cannot change it (``set_user()`` fails; the program still can, with
    :meth:`Connection.set_user`) nor ATTACH files, load extensions or move SQLite's files
    (see :mod:`remotetables.sqlguard`). ``consent``
    says how a missing token is obtained: ``"browser"``, ``"prompt"``, ``"raise"``,
    ``"device"`` or a callable taking a ``ConsentRequest``. ``runtime`` shares one HTTP client,
    row cache and token store between connections (a pool); the other keywords inject I/O.
    The remote tables live in the connection's ``temp`` schema, so the file stays plain;
    ``persist_tables=True`` (or ``settings.persist_tables``) stores them in the file.
    ``access_tokens`` maps personal OAuth providers to access tokens that the application
    obtained for ``user`` itself (a BI server's own OAuth2 flow): used for that user only, never
    stored or refreshed by remotetables; a 401 fails the query.
    ``writes_in_transaction=True`` lets INSERT/UPDATE/DELETE on a remote table run inside an
    open transaction (``BEGIN``, ``SAVEPOINT``) although ROLLBACK cannot undo them (default:
    the config's ``settings.writes_in_transaction``, off: such a write is refused).
    """
    env = dict(os.environ if environ is None else environ)
    if runtime is None:
        cfg = _resolve_config(config, env)
        runtime = Runtime(
            cfg,
            transport=transport,
            clock=clock or time.time,
            sleep=sleep or time.sleep,
            environ=env,
            token_store=token_store,
        )
        owns_runtime = True
    else:
        owns_runtime = False
    try:
        db = apsw.Connection(os.fspath(database))
    except apsw.Error as exc:
        if owns_runtime:
            runtime.close()
        raise errors.OperationalError(
            f"cannot open database {os.fspath(database)!r}: {exc}"
        ) from exc
    session = Session(
        runtime,
        user=None,
        consent=consent,
        progress=progress,
        lock_user=bool(lock_user),
        writes_in_transaction=writes_in_transaction,
    )
    if user is not None:
        session.set_user(user)
    conn = Connection(db, session, owns_runtime=owns_runtime)
    try:
        _hand_tokens(session, access_tokens or {})
        install(db, session)
        if create_tables:
            conn.ensure_tables(persist=persist_tables)
    except BaseException:
        conn.close()
        raise
    return conn


def _hand_tokens(session: Session, tokens: Mapping[str, str]) -> None:
    if not tokens:
        return
    config = session.runtime.config
    if session.user is None:
        raise errors.ProgrammingError(
            "connect(access_tokens=...) needs user=...: a handed-in token is bound to its user"
        )
    for name, token in tokens.items():
        provider = config.providers.get(name)
        if provider is None or not provider.per_user:
            known = ", ".join(sorted(p.name for p in config.providers.values() if p.per_user))
            raise errors.ProgrammingError(
                f"access_tokens: {name!r} is not a provider with personal OAuth tokens in "
                f"{config.path or 'the config'} (those are: {known or 'none'})"
            )
        if not isinstance(token, str) or not token:
            raise errors.ProgrammingError(f"access_tokens: the token for {name} is empty")
        session.hand_token(name, session.user, token)


def install(db: apsw.Connection, session: Session) -> None:
    """Register the module and the SQL functions on an APSW connection."""
    db.set_busy_timeout(30_000)
    db.authorizer = authorizer(session, session.runtime.protected_files)
    db.create_module(MODULE_NAME, cast(Any, Module(session)), use_bestindex_object=True)

    register_columns_table(db, session)

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if session.last_stats is session.stats and session.stats.finished is None:
            session.stats.finished = time.perf_counter()
        writes = not getattr(cursor, "is_readonly", True)  # a Connection for `with db:`
        session.new_statement(writes=writes, returning=writes and insert_returning(sql))
        return True

    db.exec_trace = trace

    def profile(sql: str, nanoseconds: int) -> None:
        # SQLite calls this when a statement finishes: its statistics stop there, not when
        # the next statement starts (a pause before `.stats` is not the statement's time)
        if session.stats.finished is None:
            session.stats.finished = time.perf_counter()

    db.set_profile(profile)

    def set_user(name: str | None) -> str | None:
        session.set_user_from_sql(name)
        return session.user

    def current_user() -> str | None:
        return session.user

    def stats() -> str:
        s = session.last_stats
        if s is None:
            return "{}"
        urls: dict[str, Any] = {"urls": s.urls}
        if s.urls_omitted:
            urls["urls_omitted"] = s.urls_omitted
        return orjson.dumps({**s.as_dict(), **urls}).decode()

    def visible() -> set[str]:
        """The cache principals this session may see and clear: its user's, and shared rows."""
        mine = {f"user:{session.user}"} | session.handed_principals() if session.user else set()
        return {"system", "public"} | mine

    def cache_clear(table: str | None = None) -> int:
        if table is not None:
            session.runtime.table(table)  # unknown table: clear error
        return session.runtime.cache.clear(table, principals=visible())

    def cache_state() -> str:
        entries = [
            {
                "table": t,
                "principal": p,
                "params": q,
                "rows": r,
                "bytes": b,
                "ttl_left": round(left, 1),
            }
            for t, p, q, r, b, left in session.runtime.cache.state()
            if p in visible()
        ]
        return orjson.dumps(entries).decode()

    functions: list[tuple[str, Any, int]] = [
        ("set_user", set_user, 1),
        ("current_user", current_user, 0),
        ("remotetables_stats", stats, 0),
        ("remotetables_cache_clear", cache_clear, 0),
        ("remotetables_cache_clear", cache_clear, 1),
        ("remotetables_cache", cache_state, 0),
    ]
    for name, fn, nargs in functions:
        # DIRECTONLY: never called from a view or trigger stored in the database file (whoever
        # writes the file must not switch or read the reader's session); TEMP ones are the
        # session's own
        db.create_scalar_function(name, fn, nargs, flags=apsw.SQLITE_DIRECTONLY)


class Connection:
    """A PEP 249 connection. ``with connect(...) as conn:`` commits (or rolls back) and closes."""

    def __init__(self, db: apsw.Connection, session: Session, *, owns_runtime: bool) -> None:
        self._db: apsw.Connection | None = db
        self.session = session
        self._owns_runtime = owns_runtime
        # PEP 249 exception classes as attributes (optional extension)
        for name in ("Error", "Warning", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                     "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):  # fmt: skip
            setattr(self, name, getattr(errors, name))

    @property
    def apsw(self) -> apsw.Connection:
        """The underlying APSW connection."""
        if self._db is None:
            raise InterfaceError("the connection is closed")
        return self._db

    @property
    def runtime(self) -> Runtime:
        return self.session.runtime

    @property
    def user(self) -> str | None:
        return self.session.user

    def set_user(self, name: str | None) -> None:
        """Like ``SELECT set_user(name)``, but for the program: it works on a connection
        locked to its user too (``connect(..., lock_user=True)``)."""
        self.session.set_user(name)

    @property
    def lock_user(self) -> bool:
        """Whether SQL on this connection is kept from changing the user and reaching files."""
        return self.session.lock_user

    @property
    def last_stats(self) -> dict[str, float | int | str]:
        """Statistics of the most recent statement that read a remote table."""
        last = self.session.last_stats
        return last.as_dict() if last is not None else {}

    def ensure_tables(self, *, persist: bool | None = None) -> None:
        """Create each configured remote table if it is not there: in the connection's
        ``temp`` schema (the file stays plain; remote tables an older version stored in it are
        dropped from it), or with ``persist`` (default ``settings.persist_tables``) in the file.
        See :func:`remotetables.schema.ensure_tables`."""
        try:
            ensure_tables(self.apsw, self.session, persist=persist)
        except apsw.Error as exc:
            raise _map_error(exc) from exc

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Cursor:
        """Shortcut: a new cursor, executed."""
        return self.cursor().execute(sql, parameters)

    def executemany(
        self, sql: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]
    ) -> Cursor:
        """Shortcut: a new cursor, executemany'd (as in the stdlib's sqlite3)."""
        return self.cursor().executemany(sql, seq_of_parameters)

    def commit(self) -> None:
        db = self.apsw
        if db.in_transaction:
            try:
                db.execute("COMMIT")
            except apsw.Error as exc:
                raise _map_error(exc) from exc

    def rollback(self) -> None:
        db = self.apsw
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except apsw.Error as exc:
                raise _map_error(exc) from exc

    def close(self) -> None:
        if self._db is None:
            return
        db, self._db = self._db, None
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
        except apsw.Error as exc:
            raise _map_error(exc) from exc
        finally:
            if self._owns_runtime:
                self.session.runtime.close()

    @property
    def closed(self) -> bool:
        return self._db is None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._db is not None:
            if et is None:
                self.commit()
            else:
                self.rollback()
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"<remotetables.Connection {state} user={self.session.user!r}>"


Description = tuple[tuple[str, str | None, None, None, None, None, None], ...]


class Cursor:
    """A PEP 249 cursor."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self.rowcount = -1
        self._cursor: apsw.Cursor | None = connection.apsw.cursor()
        # weakly held: a cycle would leave an unclosed cursor to the collector of another thread
        ref = weakref.ref(self)  # (which then finalizes it on a connection in use: "busy")
        self._cursor.exec_trace = lambda c, sql, b: (o := ref()) is None or o._trace(c, sql, b)
        self._rows: Iterator[tuple[Any, ...]] = iter(())
        self._description: Description | None = None
        self._origins: tuple[tuple[str | None, str | None], ...] | None = None

    def _trace(self, cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        db_trace = self.connection.apsw.exec_trace
        if db_trace is not None:
            db_trace(cursor, sql, bindings)
        try:
            desc = cursor.getdescription()
            full = cursor.description_full
        except (apsw.ExecutionCompleteError, AttributeError):  # no column metadata compiled in
            desc, full = (), ()
        self._description = (
            tuple((name, decl, None, None, None, None, None) for name, decl in desc) or None
        )
        self._origins = tuple((d[3], d[4]) for d in full) if full else None
        return True

    @property
    def column_origins(self) -> tuple[tuple[str | None, str | None], ...] | None:
        """For each result column of the last statement: (table, column) when it is a table's
        column as such, else (None, None). None when SQLite was built without column metadata."""
        return self._origins

    @property
    def description(self) -> Description | None:
        return self._description

    @property
    def lastrowid(self) -> int:
        return int(self.connection.apsw.last_insert_rowid())

    def _live(self) -> apsw.Cursor:
        if self._cursor is None:
            raise InterfaceError("the cursor is closed")
        return self._cursor

    def _begin_if_needed(self, sql: str, db: apsw.Connection) -> None:
        """PEP 249's implicit transaction before DML, except when the statement writes a remote
        table: each of its rows applies at once at the API (nothing to roll back), so a local
        write transaction would only lock other connections out of the database file."""
        if db.in_transaction or not DML.match(sql) or self._writes_remote(sql):
            return
        db.execute("BEGIN")

    def _writes_remote(self, sql: str) -> bool:
        """Whether ``sql`` is one statement whose target is a remote (configured) table."""
        target = dml_target(sql)
        if target is None:
            return False
        schema, name = target
        return (schema is None or schema.lower() in ("main", "temp")) and name.lower() in {
            t.lower() for t in self.connection.runtime.config.tables
        }

    def execute(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Cursor:
        cur = self._live()
        db = self.connection.apsw
        self._description = None
        self._origins = None
        try:
            self._begin_if_needed(sql, db)
            before = db.total_changes()
            self._rows = cur.execute(sql, parameters)
            # as the stdlib's sqlite3: the statement's own rows (changes()), not those its
            # triggers or foreign-key actions changed (counted by total_changes())
            moved = db.total_changes() != before
            self.rowcount = -1 if self._description else (db.changes() if moved else 0)
        except apsw.Error as exc:
            self._rows = iter(())
            self.rowcount = -1
            raise _map_error(exc) from exc
        except errors.Error as exc:
            self._rows = iter(())
            # a remote write that failed partway: the rows it applied stay applied
            applied = getattr(exc, "applied", None)
            self.rowcount = -1 if applied is None else len(applied)
            raise
        return self

    def executemany(
        self, sql: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]
    ) -> Cursor:
        """Run ``sql`` once per parameter set, in order. When a set fails, the error's
        ``applied_sets`` is how many sets before it ran to completion (for a remote table:
        were applied, and stay applied), its message says so, and ``rowcount`` counts the rows
        changed by those sets and the rows of the failing set already applied (``err.applied``).
        """
        cur = self._live()
        db = self.connection.apsw
        started = 0  # parameter sets handed to SQLite: the last one is the one running
        changed = 0  # rows the finished sets changed themselves (not their triggers)
        last_total = db.total_changes()

        def settle() -> None:  # the set before has finished: count its own changes()
            nonlocal changed, last_total
            total = db.total_changes()
            if total != last_total:
                changed += db.changes()
                last_total = total

        def counted() -> Iterator[Sequence[Any] | Mapping[str, Any]]:
            nonlocal started
            for parameters in seq_of_parameters:
                if started:
                    settle()
                started += 1
                yield parameters

        try:
            self._begin_if_needed(sql, db)
            self._rows = cur.executemany(sql, counted())
            settle()
            self.rowcount = changed
        except (apsw.Error, errors.Error) as exc:
            self._rows = iter(())
            new = _map_error(exc) if isinstance(exc, apsw.Error) else exc
            self.rowcount = changed + len(getattr(new, "applied", ()))
            if started:
                self._name_applied_sets(new, sql, started, seq_of_parameters)
            if new is exc:
                raise
            raise new from exc
        return self

    def _name_applied_sets(self, exc: errors.Error, sql: str, failed: int, sets: object) -> None:
        """Add to ``exc`` which parameter sets of an executemany ran before set ``failed``."""
        done = failed - 1
        total = f" of {len(sets)}" if isinstance(sets, Sized) else ""
        verb = "applied" if self._writes_remote(sql) else "run"
        if done == 0:
            what = f"no parameter set was {verb} before this one (set 1{total})"
        elif done == 1:
            what = f"parameter set 1{total} was {verb} before this one (set 2)"
        else:
            what = f"parameter sets 1-{done}{total} were {verb} before this one (set {failed})"
        if done and verb == "applied":
            what += " and stays applied" if done == 1 else " and stay applied"
        text = str(exc.args[0]) if exc.args else str(exc)
        exc.args = (
            f"{text} executemany (each parameter set is one statement): {what}; later "
            "parameter sets were not attempted.",
        )
        exc.applied_sets = done  # type: ignore[attr-defined]

    def _next(self) -> tuple[Any, ...] | None:
        try:
            return tuple(next(self._rows))
        except StopIteration:
            return None
        except apsw.Error as exc:
            raise _map_error(exc) from exc

    def fetchone(self) -> tuple[Any, ...] | None:
        self._live()
        return self._next()

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        self._live()
        out = []
        for _ in range(self.arraysize if size is None else size):
            row = self._next()
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._live()
        try:
            return list(self._rows)  # apsw rows are already tuples
        except apsw.Error as exc:
            raise _map_error(exc) from exc

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def close(self) -> None:
        if self._cursor is not None:
            try:
                self._cursor.close()
            except apsw.Error as exc:
                raise _map_error(exc) from exc
            finally:
                self._cursor = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
