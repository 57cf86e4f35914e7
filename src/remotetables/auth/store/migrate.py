"""Move tokens between token stores (e.g. SQLite -> PostgreSQL) without clear text on disk.

Each grant is read and decrypted in memory from the source store and written through the
destination store, which encrypts it again under its own key with its own row binding. Only
active grants with tokens are moved; pending consents (short-lived) are not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from remotetables.auth.store.base import TokenKey, TokenRecord, TokenStore
from remotetables.errors import TokenStoreError

__all__ = [
    "ExportableStore",
    "MigrationResult",
    "export_records",
    "migrate_tokens",
    "same_store",
]


@runtime_checkable
class ExportableStore(Protocol):
    """A store that can list its grants with their tokens (proposed for ``TokenStore``)."""

    def records(self) -> Sequence[TokenRecord]: ...


@dataclass
class MigrationResult:
    """What :func:`migrate_tokens` did, by grant (no token material)."""

    moved: list[TokenKey] = field(default_factory=list)
    skipped_existing: list[TokenKey] = field(default_factory=list)
    skipped_inactive: list[TokenKey] = field(default_factory=list)
    # the destination's copy was updated later (its refresh token may have rotated there):
    # never replaced by the older one, even with ``overwrite``
    kept_newer: list[TokenKey] = field(default_factory=list)


def export_records(store: TokenStore) -> list[TokenRecord]:
    """Every grant of ``store`` with decrypted tokens: ``records()`` if the store has it,
    else ``list()`` plus ``get()`` (the protocol's own methods)."""
    if isinstance(store, ExportableStore):
        return list(store.records())
    out = []
    for info in store.list():
        rec = store.get(TokenKey(info.provider, info.client_id, info.subject))
        if rec is not None:
            out.append(rec)
    return out


def migrate_tokens(
    src: TokenStore,
    dst: TokenStore,
    *,
    overwrite: bool = False,
    result: MigrationResult | None = None,
) -> int:
    """Copy every active grant of ``src`` into ``dst``; returns how many were moved.

    A grant that ``dst`` already holds is left alone unless ``overwrite``; and a grant that
    ``dst`` updated later than ``src`` did (``updated_at``: its refresh token may have rotated
    there, which makes the older copy useless) is never replaced, even with ``overwrite``
    (``result.kept_newer``). ``src`` is not changed, except that undecryptable rows are marked
    ``needs_consent`` when read. Copying a store onto itself raises :class:`TokenStoreError`.
    """
    result = result if result is not None else MigrationResult()
    if same_store(src, dst):
        raise TokenStoreError(
            f"the source and the destination are the same token store ({_where(dst)}): "
            "nothing to migrate"
        )
    # when the destination last changed each grant (list() reads no token, changes nothing)
    dst_updated = {TokenKey(i.provider, i.client_id, i.subject): i.updated_at for i in dst.list()}
    for rec in export_records(src):
        if rec.tokens is None or rec.status != "active":
            result.skipped_inactive.append(rec.key)
            continue
        if dst_updated.get(rec.key, float("-inf")) > rec.updated_at:
            result.kept_newer.append(rec.key)
            continue
        if not overwrite:
            existing = dst.get(rec.key)
            if existing is not None and existing.status == "active" and existing.tokens:
                result.skipped_existing.append(rec.key)
                continue
        dst.put(rec.key, rec.tokens, now=rec.updated_at)
        result.moved.append(rec.key)
    return len(result.moved)


def _where(store: TokenStore) -> str:
    """How messages name ``store`` (a path, or a URL without its password)."""
    return str(getattr(store, "_where", None) or type(store).__name__)


def _pg_identity(store: TokenStore) -> tuple[object, ...] | None:
    """Which server, database and table a PostgreSQL store writes to (whatever its URL says:
    host aliases, users and passwords differ, the table is the same)."""
    from remotetables.auth.store.postgres import PostgresTokenStore

    if not isinstance(store, PostgresTokenStore):
        return None
    # our own store's plumbing (a public TokenStore.identity() would be cleaner)
    row = store._run(
        lambda c: c.execute(
            "SELECT pg_postmaster_start_time()::text, current_database(),"
            " 'oauth_token'::regclass::oid::bigint"
        ).fetchone()
    )
    return tuple(row) if row is not None else None


def same_store(a: TokenStore, b: TokenStore) -> bool:
    """Whether ``a`` and ``b`` are one store: the same SQLite file (by device and inode) or the
    same table in the same PostgreSQL database."""
    from remotetables.auth.store import SQLiteTokenStore

    if a is b:
        return True
    if isinstance(a, SQLiteTokenStore) and isinstance(b, SQLiteTokenStore):
        try:
            return os.path.samefile(a.path, b.path)
        except OSError:
            return a.path.resolve() == b.path.resolve()
    if "psycopg" not in sys.modules:  # no PostgreSQL store can exist without it
        return False
    ida = _pg_identity(a)
    return ida is not None and ida == _pg_identity(b)
