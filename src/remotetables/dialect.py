"""SQLAlchemy 2 dialect: ``remotetables:///path/work.db?config=remotetables.toml&user=alice``.

It is SQLite's dialect over :mod:`remotetables.dbapi`, so Core, reflection and
``pandas.read_sql`` see the remote tables as ordinary tables (virtual tables in the connection's
``temp`` schema; ``PRAGMA table_info`` gives their columns, declared types and the ``key`` as
primary key). Reflection adds what the config knows: the ``description`` as table comment,
``JSON`` and ``BOOLEAN`` column types.

URL query keys: ``config`` (TOML path), ``user`` (session user; the URL's username works too,
which is what BI servers that impersonate their logged-in user set; both naming different
users, or any key given twice, is an error), ``lock_user`` (default
``true`` when the URL names a user: the SQL of a BI tool's editor cannot call ``set_user()``,
ATTACH files or load extensions, see :mod:`remotetables.sqlguard`; ``false`` lets SQL switch
users), ``consent``
(``raise`` for servers: :class:`~remotetables.errors.ConsentRequired` reaches the caller as
``sqlalchemy.exc.OperationalError`` whose ``.orig.authorization_url`` is where to send the
user). ``remotetables://`` alone is an in-memory database. Anything else for
:func:`remotetables.connect` (a consent callable, ``token_store``, ``transport``, ``environ`` ...)
goes in ``create_engine(..., connect_args={...})``.

All connections of one engine share one :class:`~remotetables.session.Runtime` (HTTP pool, row
cache, token store); ``engine.dispose()`` closes it. A connection returns to the pool as the URL's
user, whatever ``set_user()`` did during the checkout. To choose the user per checkout instead
(the program's ``set_user`` works on locked connections; SQL's does not)::

    @sqlalchemy.event.listens_for(engine, "checkout")
    def _as_current_user(dbapi_conn, record, proxy):
        dbapi_conn.set_user(current_web_user())
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

import apsw
import sqlalchemy
from sqlalchemy import event, exc, pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, Engine
from sqlalchemy.sql import sqltypes

from remotetables import dbapi, errors
from remotetables.config import TableSpec
from remotetables.dbapi import _resolve_config
from remotetables.session import Runtime
from remotetables.vtable import is_remote_table_sql

__all__ = ["RemoteTablesDialect", "dbapi_module"]

_URL_KEYS = ("config", "user", "consent", "lock_user")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_RUNTIME_KEYS = ("token_store", "transport", "clock", "sleep", "environ")


def dbapi_module() -> types.ModuleType:
    """:mod:`remotetables.dbapi` with the PEP 249 module attributes SQLAlchemy looks for."""
    mod = types.ModuleType("remotetables_dbapi")
    mod.connect = dbapi.connect  # type: ignore[attr-defined]
    mod.apilevel = dbapi.apilevel  # type: ignore[attr-defined]
    mod.threadsafety = dbapi.threadsafety  # type: ignore[attr-defined]
    mod.paramstyle = dbapi.paramstyle  # type: ignore[attr-defined]
    version = tuple(int(p) for p in apsw.sqlite_lib_version().split("."))
    mod.sqlite_version_info = version  # type: ignore[attr-defined]
    mod.sqlite_version = apsw.sqlite_lib_version()  # type: ignore[attr-defined]
    for name in ("Error", "Warning", "InterfaceError", "DatabaseError", "DataError",
                 "OperationalError", "IntegrityError", "InternalError", "ProgrammingError",
                 "NotSupportedError"):  # fmt: skip
        setattr(mod, name, getattr(errors, name))
    return mod


class RemoteTablesDialect(SQLiteDialect_pysqlite):
    """SQLite's dialect, driver ``remotetables``."""

    name = "sqlite"
    driver = "remotetables"
    supports_statement_cache = True
    # RETURNING is not available on virtual tables
    insert_returning = False
    update_returning = False
    delete_returning = False
    use_insertmanyvalues = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._runtime: Runtime | None = None
        self._runtime_lock = threading.Lock()

    @classmethod
    def import_dbapi(cls) -> Any:
        return dbapi_module()

    if sqlalchemy.__version__.startswith("1."):  # SQLAlchemy 1.4 (Superset 6 pins it) asks here

        @classmethod
        def dbapi(cls) -> Any:  # type: ignore[override]
            return dbapi_module()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if url.database and url.database != ":memory:":
            return pool.QueuePool
        return pool.SingletonThreadPool

    @classmethod
    def engine_created(cls, engine: Engine) -> None:
        dialect = engine.dialect
        if isinstance(dialect, RemoteTablesDialect):
            event.listen(engine, "engine_disposed", lambda _engine: dialect.close_runtime())
            # a connection goes back to the pool as the user it was made for: a set_user()
            # on one checkout must not carry over to the next (someone else's token and rows)
            event.listen(engine, "checkin", _restore_user)

    def create_connect_args(self, url: URL) -> Any:
        if url.password or url.host or url.port:
            raise exc.ArgumentError(
                f"Invalid remotetables URL: {url!r}; use remotetables:///relative/work.db, "
                "remotetables:////absolute/work.db or remotetables:// (in memory), "
                "with ?config=...&user=...&consent=...&lock_user=..."
            )
        unknown = sorted(set(url.query) - set(_URL_KEYS))
        if unknown:
            raise exc.ArgumentError(
                f"unknown remotetables URL option(s) {', '.join(unknown)}; known: {', '.join(_URL_KEYS)}"
            )
        opts: dict[str, Any] = {}
        for key in _URL_KEYS:
            value = url.query.get(key)
            if isinstance(value, tuple):  # ?user=alice&user=bob: which one was meant?
                raise exc.ArgumentError(
                    f"remotetables URL option {key} is given {len(value)} times "
                    f"({', '.join(map(repr, value))}); give it once"
                )
            if value is not None:
                opts[key] = value
        if url.username:
            if "user" in opts and opts["user"] != url.username:
                raise exc.ArgumentError(
                    f"the remotetables URL names two users: {url.username!r} before the @ and "
                    f"user={opts['user']!r}; give one"
                )
            opts["user"] = url.username
        lock = opts.pop("lock_user", None)
        if lock is not None:
            if str(lock).lower() not in _TRUE + _FALSE:
                raise exc.ArgumentError(
                    f"remotetables URL option lock_user={lock!r}: use true or false"
                )
            opts["lock_user"] = str(lock).lower() in _TRUE
        elif "user" in opts:
            opts["lock_user"] = True  # an engine made for one user stays that user's in SQL
        return [url.database or ":memory:"], opts

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        if cparams.get("runtime") is None:
            cparams["runtime"] = self._shared_runtime(cparams)
        for key in ("config", *_RUNTIME_KEYS):
            cparams.pop(key, None)
        return dbapi.connect(*cargs, **cparams)

    def _shared_runtime(self, cparams: dict[str, Any]) -> Runtime:
        """One runtime per engine, made from the first connection's arguments."""
        with self._runtime_lock:
            if self._runtime is None:
                import os
                import time

                environ = cparams.get("environ")
                env = dict(os.environ if environ is None else environ)
                self._runtime = Runtime(
                    _resolve_config(cparams.get("config"), env),
                    transport=cparams.get("transport"),
                    clock=cparams.get("clock") or time.time,
                    sleep=cparams.get("sleep") or time.sleep,
                    environ=env,
                    token_store=cparams.get("token_store"),
                )
            return self._runtime

    @property
    def runtime(self) -> Runtime | None:
        """The engine's shared runtime (``None`` before the first connection)."""
        return self._runtime

    def close_runtime(self) -> None:
        with self._runtime_lock:
            rt, self._runtime = self._runtime, None
        if rt is not None:
            rt.close()

    def on_connect(self) -> Callable[[Any], None]:
        import math
        import re

        def regexp(*args: Any) -> Any:
            pattern, value = args
            return None if value is None else re.search(str(pattern), str(value)) is not None

        def floor(*args: Any) -> Any:
            return None if args[0] is None else math.floor(args[0])

        def setup(conn: Any) -> None:
            conn.pool_user = conn.user  # what _restore_user goes back to
            db: apsw.Connection = conn.apsw
            db.create_scalar_function("regexp", regexp, 2, deterministic=True)
            db.create_scalar_function("floor", floor, 1, deterministic=True)

        return setup

    def set_isolation_level(self, dbapi_connection: Any, level: Any) -> None:
        if level == "AUTOCOMMIT":
            raise exc.ArgumentError("remotetables does not support AUTOCOMMIT isolation")
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA read_uncommitted = {self._isolation_lookup[level]}")
        cursor.close()

    def detect_autocommit_setting(self, dbapi_conn: Any) -> bool:
        return False

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        return isinstance(e, errors.InterfaceError) and "closed" in str(e)

    # -- reflection: remote tables live in the temp schema (found by unqualified names);
    # their key, description and JSON/BOOLEAN types come from the config

    @staticmethod
    def _remote_specs(connection: Any) -> dict[str, TableSpec]:
        dbapi_conn = connection.connection.dbapi_connection
        runtime = getattr(dbapi_conn, "runtime", None)
        if runtime is None:
            return {}
        return {name.lower(): spec for name, spec in runtime.config.tables.items()}

    def _remote_in_temp(self, connection: Any) -> list[str]:
        rows = connection.exec_driver_sql(
            "SELECT name, sql FROM temp.sqlite_schema WHERE type = 'table' ORDER BY name"
        )
        return [str(name) for name, sql in rows if is_remote_table_sql(sql)]

    def _remote_spec(
        self, connection: Any, table_name: str, schema: str | None
    ) -> TableSpec | None:
        """The config of ``table_name`` when the name (in ``schema``) is a remote table."""
        spec = self._remote_specs(connection).get(table_name.lower())
        if spec is None or (schema is not None and schema.lower() not in ("temp", "main")):
            return None
        info = self._get_table_pragma(  # type: ignore[no-untyped-call]
            connection, "table_list", table_name, schema=schema
        )
        kinds = {(str(r[0]).lower(), str(r[2])) for r in info}
        return spec if any(kind == "virtual" for _, kind in kinds) else None

    def get_schema_names(self, connection: Any, **kw: Any) -> list[str]:
        names: list[str] = super().get_schema_names(connection, **kw)  # type: ignore[no-untyped-call]
        if self._remote_in_temp(connection):
            names.append("temp")  # where the remote tables are (main's tables stay in main)
        return names

    def get_table_names(
        self,
        connection: Any,
        schema: str | None = None,
        sqlite_include_internal: bool = False,
        **kw: Any,
    ) -> list[str]:
        """Unqualified names: the file's tables and the remote tables (temp comes first in
        SQLite's name lookup, and a native table of a remote table's name is refused)."""
        names: list[str] = super().get_table_names(  # type: ignore[no-untyped-call]
            connection, schema=schema, sqlite_include_internal=sqlite_include_internal, **kw
        )
        if schema is None:
            names = sorted({*names, *self._remote_in_temp(connection)})
        return names

    def get_columns(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[Any]:
        columns: list[Any] = super().get_columns(  # type: ignore[no-untyped-call]
            connection, table_name, schema=schema, **kw
        )
        spec = self._remote_spec(connection, table_name, schema)
        if spec is None:
            return columns
        types = {c.name.lower(): c.type for c in spec.columns}
        for col in columns:
            kind = types.get(str(col["name"]).lower())
            if kind == "JSON":
                col["type"] = sqltypes.JSON()
            elif kind == "BOOLEAN":
                col["type"] = sqltypes.BOOLEAN()
        return columns

    def get_table_comment(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        spec = self._remote_spec(connection, table_name, schema)
        return {"text": spec.description if spec is not None else None}


def _restore_user(dbapi_connection: Any, _record: Any) -> None:
    user = getattr(dbapi_connection, "pool_user", None)
    if dbapi_connection is not None and dbapi_connection.user != user:
        dbapi_connection.set_user(user)


dialect = RemoteTablesDialect
