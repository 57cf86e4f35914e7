"""Move tokens between token stores (e.g. SQLite -> PostgreSQL) without clear text on disk.

Each grant is read and decrypted in memory from the source store and written through the
destination store, which encrypts it again under its own key with its own row binding. Only
active grants with tokens are moved; pending consents (short-lived) are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from remotetables.auth.store import TokenKey, TokenRecord, TokenStore
from remotetables.errors import TokenStoreError

if TYPE_CHECKING:
    from remotetables.session import Runtime

__all__ = [
    "ExportableStore",
    "MigrationResult",
    "export_records",
    "migrate_to_url",
    "migrate_tokens",
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

    A grant that ``dst`` already holds is left alone unless ``overwrite`` (it may be newer:
    a rotated refresh token must not be replaced by an older one). ``src`` is not changed,
    except that undecryptable rows are marked ``needs_consent`` when read.
    """
    result = result if result is not None else MigrationResult()
    for rec in export_records(src):
        if rec.tokens is None or rec.status != "active":
            result.skipped_inactive.append(rec.key)
            continue
        if not overwrite:
            existing = dst.get(rec.key)
            if existing is not None and existing.status == "active" and existing.tokens:
                result.skipped_existing.append(rec.key)
                continue
        dst.put(rec.key, rec.tokens, now=rec.updated_at)
        result.moved.append(rec.key)
    return len(result.moved)


def migrate_to_url(
    runtime: Runtime, url: str, *, source: Path | None = None, overwrite: bool = False
) -> tuple[int, MigrationResult]:
    """``remotetables tokens migrate --to URL [--from FILE]``: from the SQLite store ``source``
    (default: the runtime's configured store) to the PostgreSQL store at ``url``, both keyed
    from the runtime's key sources."""
    from remotetables.auth.pgstore import open_postgres_store, runtime_cipher
    from remotetables.auth.store import SQLiteTokenStore

    if source is not None:
        if not source.exists():
            raise TokenStoreError(f"token store {source} does not exist")
        src: TokenStore = SQLiteTokenStore(source, runtime_cipher(runtime), clock=runtime.clock)
    else:
        src = runtime.oauth_service().store
    dst = open_postgres_store(url, runtime)
    result = MigrationResult()
    try:
        n = migrate_tokens(src, dst, overwrite=overwrite, result=result)
    finally:
        dst.close()
        if source is not None:
            src.close()
    return n, result
