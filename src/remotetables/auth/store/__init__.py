"""Token stores: the protocol and data types (:mod:`.base`), an in-memory store, the SQLite and
PostgreSQL stores over shared encrypted rows (:mod:`.rows`), encryption (:mod:`.crypto`), keys
(:mod:`.keys`) and migration between stores (:mod:`.migrate`).

Imports inside the package point one way: ``base`` and ``crypto`` at the bottom, ``rows`` above them,
the stores above ``rows``, ``migrate`` on top. The PostgreSQL store is not imported here (psycopg is
an optional extra): import :mod:`remotetables.auth.store.postgres` for it.
"""

from __future__ import annotations

from remotetables.auth.store.base import (
    SCHEMA_VERSION,
    SYSTEM_SUBJECT,
    Account,
    ConsentLease,
    ConsentLeases,
    PendingAuth,
    Status,
    TokenInfo,
    TokenKey,
    TokenRecord,
    TokenSet,
    TokenStore,
)
from remotetables.auth.store.memory import MemoryTokenStore
from remotetables.auth.store.sqlite import SQLiteTokenStore

__all__ = [
    "SCHEMA_VERSION",
    "SYSTEM_SUBJECT",
    "Account",
    "ConsentLease",
    "ConsentLeases",
    "MemoryTokenStore",
    "PendingAuth",
    "SQLiteTokenStore",
    "Status",
    "TokenInfo",
    "TokenKey",
    "TokenRecord",
    "TokenSet",
    "TokenStore",
]
