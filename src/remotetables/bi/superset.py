"""Apache Superset engine spec for ``remotetables://`` databases.

Published through the ``superset.db_engine_specs`` entry point, so Superset picks it for
``remotetables:///path/work.db?config=...`` URLs instead of its generic fallback. This module
is only imported by Superset (it subclasses Superset's SQLite spec).

* SQLite's time grains and functions (inherited from ``SqliteEngineSpec``).
* User impersonation ("Impersonate logged in user" on the database): the Superset user's
  name becomes the URL's user, i.e. the session user whose token and rows queries use, locked
  (``lock_user``: SQL cannot ``set_user()`` to someone else, nor ATTACH); connections never
  open a browser (``consent=raise``).
* Per-user OAuth2 with Superset's own flow: when a user has no token, the query's
  ``ConsentRequired`` (or a 401 on the token Superset handed in) makes Superset show its
  "authorize" prompt; Superset exchanges the code, keeps and refreshes the token, and hands it
  to each connection as ``access_tokens`` for the user's provider (``remotetables_provider``
  in the database's extra, or the config's only personal OAuth provider).
* ``ATTACH`` / ``DETACH`` are refused: SQL Lab must not open other files on the server.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from flask import g
from superset.db_engine_specs.sqlite import SqliteEngineSpec

from remotetables.bi.guards import impersonated, oauth2_provider, refuse_attach
from remotetables.errors import ConsentRequired, RemoteError

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
    supports_oauth2 = True
    oauth2_exception = ConsentRequired

    @classmethod
    def impersonate_user(
        cls,
        database: Any,
        username: str | None,
        user_token: str | None,
        url: Any,
        engine_kwargs: dict[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        """The Superset user becomes the session user (the URL's user), with the access token
        Superset holds for them, if any."""
        url, engine_kwargs = impersonated(url, username, engine_kwargs)
        connect_args = engine_kwargs.setdefault("connect_args", {})
        connect_args.setdefault("consent", "raise")  # a server never opens a browser
        if username is not None and user_token:
            provider = oauth2_provider(url, database.get_extra() if database else {})
            connect_args["access_tokens"] = {provider: user_token}
        return url, engine_kwargs

    @classmethod
    def needs_oauth2(cls, ex: Exception) -> bool:
        """No token yet, or the one Superset handed in was refused: Superset's prompt."""
        if not (g and hasattr(g, "user")):
            return False
        if isinstance(ex, ConsentRequired):
            return True
        return isinstance(ex, RemoteError) and ex.status_code == 401

    @classmethod
    def update_params_from_encrypted_extra(cls, database: Any, params: dict[str, Any]) -> None:
        """As Superset's base spec (the secure extra becomes engine arguments), without the
        OAuth2 client of the database (``oauth2_client_info``: Superset's, not the engine's)."""
        if not database.encrypted_extra:
            return
        extra = json.loads(database.encrypted_extra)
        extra.pop("oauth2_client_info", None)
        params.update(extra)

    @classmethod
    def execute(cls, cursor: Any, query: str, database: Any, **kwargs: Any) -> None:
        refuse_attach(query)
        super().execute(cursor, query, database, **kwargs)
