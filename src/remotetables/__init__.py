"""remotetables: query remote HTTP APIs from SQLite, each user with their own OAuth 2.0 token.

>>> import remotetables
>>> conn = remotetables.connect("work.db", config="remotetables.toml", user="alice")  # doctest: +SKIP
>>> conn.execute("SELECT number, state FROM remote_incidents LIMIT 3").fetchall()  # doctest: +SKIP
"""

from __future__ import annotations

from remotetables.config import Config, load_config
from remotetables.dbapi import Connection, Cursor, apilevel, connect, paramstyle, threadsafety
from remotetables.errors import *  # noqa: F403
from remotetables.errors import __all__ as _errors_all
from remotetables.session import Runtime

__version__ = "0.1.0"


def complete_consent(
    target: Connection | Runtime,
    callback_url: str,
    *,
    web_session: str | None = None,
    user: str | None = None,
) -> tuple[str, str]:
    """Finish a consent that ``consent="raise"`` started; returns ``(provider, user)``.

    A web app redirects the browser to ``ConsentRequired.authorization_url``; its callback
    route passes the URL the browser came back with. Given a connection, the consent must
    belong to that connection's session user.
    """
    from remotetables.auth.service import complete_consent as _complete

    return _complete(target, callback_url, web_session=web_session, user=user)


__all__ = [
    *_errors_all,
    "Config",
    "Connection",
    "Cursor",
    "Runtime",
    "__version__",
    "apilevel",
    "complete_consent",
    "connect",
    "load_config",
    "paramstyle",
    "threadsafety",
]
