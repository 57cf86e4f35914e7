"""What SQL on a remotetables connection may not do: the SQLite authorizer.

Always (every connection):

* ``ATTACH`` (and ``VACUUM INTO``, which SQLite authorizes as an ATTACH) of the token store file,
  its ``-wal`` / ``-shm`` / ``-journal`` files or the key file, by any spelling (relative path,
  symbolic or hard link, ``file:`` URI). A file name SQLite cannot show before running the
  statement (an expression, a bound ``?``) is refused too: it could be any of those.

When the session is locked to its user (``connect(..., lock_user=True)``), also:

* ``set_user()`` (refused by :meth:`remotetables.session.Session.set_user_from_sql`);
* every ``ATTACH`` and ``VACUUM INTO``;
* the functions that load code or touch files: ``load_extension``, ``readfile``,
  ``writefile``, ``edit``, ``fts3_tokenizer``;
* the PRAGMAs that move where SQLite writes files or let SQL rewrite the schema:
  ``temp_store_directory``, ``data_store_directory``, ``writable_schema``, ``trusted_schema``;
* setting, on the database file (any schema but ``temp``), the PRAGMAs that damage it for the
  other users of a shared file: ``schema_version``, ``locking_mode``, ``journal_mode``
  (reading them is fine);
* ``CREATE TABLE`` / ``CREATE VIEW`` in the file under the name of a configured remote table
  (it would only be shadowed: :func:`remotetables.schema.ensure_tables`);
* ``CREATE VIRTUAL TABLE`` outside the ``temp`` schema: a locked session does not store tables in
  the shared file (remotetables itself still does, for ``settings.persist_tables``).

Whatever the lock, remote tables and the SQL functions of remotetables are *direct only*
(``SQLITE_VTAB_DIRECTONLY``, ``SQLITE_DIRECTONLY``, set by :mod:`remotetables.vtable` and
:func:`remotetables.dbapi.install`): a view or trigger stored in the database file cannot read a
remote table or call ``set_user()`` / ``current_user()``, so whoever writes a shared file never
runs queries as the user who reads it. TEMP views and triggers (the session's own) can.

Denials raise :class:`~remotetables.errors.NotAuthorized` naming what was refused (and never the
path of the token store unless SQL named it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import apsw

from remotetables.errors import NotAuthorized
from remotetables.session import Session

__all__ = ["DENIED_FUNCTIONS", "DENIED_PRAGMAS", "FILE_PRAGMAS", "authorizer"]

DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
DENIED_PRAGMAS = frozenset(
    {"temp_store_directory", "data_store_directory", "writable_schema", "trusted_schema"}
)
# set (not read) on the shared file, these break it for its other users
FILE_PRAGMAS = frozenset({"schema_version", "locking_mode", "journal_mode"})
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _spellings(name: str) -> list[str]:
    """The paths an ATTACH file name may mean: as a plain name and, for ``file:``, as a URI."""
    out = [name]
    if name[:5].lower() == "file:":
        parts = urlsplit(name)
        if parts.netloc not in ("", "localhost"):
            out.append("\0remote")  # SQLite refuses these itself; never a match
        else:
            out.append(unquote(parts.path))
    return out


def _same_file(candidate: str, protected: Iterable[Path]) -> bool:
    try:
        real = os.path.realpath(os.path.abspath(os.path.expanduser(candidate)))
    except (OSError, ValueError):
        return True  # a name that cannot be resolved cannot be checked
    try:
        st: os.stat_result | None = os.stat(real)
    except (OSError, ValueError):
        st = None
    for base in protected:
        for suffix in _SIDE_FILES:
            target = str(base) + suffix
            if real == os.path.realpath(target):
                return True
            if st is not None:
                try:
                    other = os.stat(target)
                except (OSError, ValueError):
                    continue
                if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):  # a hard link
                    return True
    return False


def authorizer(
    session: Session, protected: Callable[[], Iterable[Path]]
) -> Callable[[int, str | None, str | None, str | None, str | None], int]:
    """The ``apsw.Connection.authorizer`` for ``session``; ``protected()`` lists the files
    (token store, key file) that SQL must never open."""

    def locked(what: str) -> NotAuthorized:
        who = f"user {session.user!r}" if session.user else "no user"
        return NotAuthorized(
            f"{what} is not allowed: this connection is locked to {who}, and its SQL may not "
            "open other files or load code"
        )

    attach, function, pragma, vtable, ok = (
        apsw.SQLITE_ATTACH,
        apsw.SQLITE_FUNCTION,
        apsw.SQLITE_PRAGMA,
        apsw.SQLITE_CREATE_VTABLE,
        apsw.SQLITE_OK,
    )
    creates = frozenset({apsw.SQLITE_CREATE_TABLE, apsw.SQLITE_CREATE_VIEW})

    def check(
        op: int, p1: str | None, p2: str | None, dbname: str | None, trigger: str | None
    ) -> int:
        # called for every action of every statement SQLite prepares: the common case is quick
        if op != attach and op != function and op != pragma and op != vtable:
            if op in creates and session.lock_user and (dbname or "").lower() != "temp":
                remote = {t.lower() for t in session.runtime.config.tables}
                if (p1 or "").lower() in remote:
                    raise locked(
                        f"creating a table or view named {p1} in the database file (it is the "
                        "name of a remote table)"
                    )
            return ok
        if op == attach:
            if session.lock_user:
                raise locked("ATTACH (or VACUUM INTO)")
            if p1 is None:
                raise NotAuthorized(
                    "ATTACH (or VACUUM INTO) needs its file name as a string literal here, so "
                    "that it can be checked: the token store may never be attached"
                )
            if p1 in ("", ":memory:"):
                return ok
            if any(_same_file(name, protected()) for name in _spellings(p1)):
                raise NotAuthorized(
                    f"ATTACH (or VACUUM INTO) of {p1!r} is not allowed: it is the token store "
                    "(or its key), which SQL may never reach"
                )
        elif session.lock_user:
            if op == function and (p2 or "").lower() in DENIED_FUNCTIONS:
                raise locked(f"the SQL function {p2}()")
            if op == pragma and (p1 or "").lower() in DENIED_PRAGMAS:
                raise locked(f"PRAGMA {p1}")
            on_file = (dbname or "main").lower() != "temp"
            if op == pragma and p2 is not None and on_file and (p1 or "").lower() in FILE_PRAGMAS:
                raise locked(f"setting PRAGMA {p1} on the database file")
            if op == vtable and on_file:
                raise locked(f"CREATE VIRTUAL TABLE {dbname}.{p1} (in the database file)")
        return ok

    return check
