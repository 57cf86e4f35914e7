"""Apache Superset engine spec for ``remotetables://`` databases.

Published through the ``superset.db_engine_specs`` entry point, so Superset picks it for
``remotetables:///path/work.db?config=...`` URLs instead of its generic fallback. This module
is only imported by Superset (it subclasses Superset's SQLite spec).

* SQLite's time grains and functions (inherited from ``SqliteEngineSpec``).
* User impersonation ("Impersonate logged in user" on the database): the Superset user's
  name becomes the URL's user, i.e. the session user whose token and rows queries use, and
  the connection is opened locked to that user where ``remotetables.connect`` supports
  ``lock_user``.
* ``ATTACH`` / ``DETACH`` are refused: SQL Lab must not open other files on the server.

Not done: Superset's own OAuth2 flow (``supports_oauth2``) is off; use ``consent=raise`` and
``remotetables login`` for each user (see the README).
"""

from __future__ import annotations

from typing import Any, ClassVar

from superset.db_engine_specs.sqlite import SqliteEngineSpec

from remotetables.bi.guards import impersonated, refuse_attach

__all__ = ["RemoteTablesEngineSpec"]


class RemoteTablesEngineSpec(SqliteEngineSpec):  # type: ignore[misc]
    """SQLite with remote tables, each Superset user with their own token."""

    engine = "remotetables"
    engine_name = "remotetables"
    default_driver = "remotetables"
    drivers: ClassVar[dict[str, str]] = {
        "remotetables": "remotetables (APSW SQLite with remote API tables)"
    }
    sqlalchemy_uri_placeholder = (
        "remotetables:////path/to/work.db?config=/path/to/remotetables.toml&consent=raise"
    )
    # a user's query must not reach another user's file or token store through the URL
    disallow_uri_query_params: ClassVar[dict[str, set[str]]] = {"remotetables": {"user"}}
    supports_oauth2 = False

    @classmethod
    def impersonate_user(
        cls,
        database: Any,
        username: str | None,
        user_token: str | None,
        url: Any,
        engine_kwargs: dict[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        """The Superset user becomes the session user (the URL's user), locked if possible."""
        return impersonated(url, username, engine_kwargs)

    @classmethod
    def execute(cls, cursor: Any, query: str, database: Any, **kwargs: Any) -> None:
        refuse_attach(query)
        super().execute(cursor, query, database, **kwargs)
