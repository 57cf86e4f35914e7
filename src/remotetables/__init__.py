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
__all__ = [
    *_errors_all,
    "Config",
    "Connection",
    "Cursor",
    "Runtime",
    "__version__",
    "apilevel",
    "connect",
    "load_config",
    "paramstyle",
    "threadsafety",
]
