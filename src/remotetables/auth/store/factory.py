"""Which token store a configuration means, opened with its key: above every implementation.

``settings.token_store`` is a file path (the SQLite store, the default under the user's data
directory) or a ``postgresql://`` URL (the PostgreSQL store, an optional extra). The key comes
from ``key_file``, else ``$REMOTETABLES_KEY_FILE``, else the OS keyring (unless
``$REMOTETABLES_NO_KEYRING``), else the default key file (:mod:`.keys`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from remotetables.auth.store.base import TokenStore
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.auth.store.sqlite import SQLiteTokenStore
from remotetables.errors import ConfigError

__all__ = ["default_paths", "is_postgres_url", "load_cipher", "open_token_store"]


def default_paths(environ: Mapping[str, str]) -> tuple[Path, Path]:
    """Where the token store and its key live by default (overridable by env or config)."""
    import platformdirs

    data = Path(platformdirs.user_data_dir("remotetables", appauthor=False))
    conf = Path(platformdirs.user_config_dir("remotetables", appauthor=False))
    store = Path(environ.get("REMOTETABLES_TOKEN_STORE") or data / "tokens.db")
    key = Path(environ.get("REMOTETABLES_KEY_FILE") or conf / "token.key")
    return store, key


def is_postgres_url(location: str | None) -> bool:
    return bool(location) and str(location).startswith(("postgresql://", "postgres://"))


def load_cipher(environ: Mapping[str, str], key_file: str | None = None) -> TokenCipher:
    """The token cipher from ``key_file`` (explicit or ``settings.key_file``) or the
    environment's key sources, for the SQLite and the PostgreSQL store alike."""
    _, default_key = default_paths(environ)
    chosen = key_file or environ.get("REMOTETABLES_KEY_FILE")
    key_id, key = load_key(
        key_file=Path(os.path.expanduser(chosen)) if chosen else None,
        default_key_file=default_key,
        use_keyring=environ.get("REMOTETABLES_NO_KEYRING") is None,
    )
    return TokenCipher({key_id: key}, key_id)


def open_token_store(
    location: str | None,
    *,
    environ: Mapping[str, str],
    clock: Callable[[], float],
    key_file: str | None = None,
    cipher: TokenCipher | None = None,
    config_path: str | None = None,
    timeout: float = 10.0,
) -> TokenStore:
    """The store at ``location`` (``settings.token_store``; None: the default SQLite file).
    ``timeout`` (``settings.token_store_timeout``) bounds each store call: its lock waits,
    statements and retries."""
    if is_postgres_url(location):
        assert location is not None
        try:
            from remotetables.auth.store.postgres import PostgresTokenStore
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ConfigError(
                "token_store is a PostgreSQL URL: install the extra with pip install 'remotetables[postgres]'",
                file=config_path,
                key="settings.token_store",
            ) from exc
        return PostgresTokenStore(
            location, cipher or load_cipher(environ, key_file), clock=clock, timeout=timeout
        )
    path = Path(os.path.expanduser(location)) if location else default_paths(environ)[0]
    return SQLiteTokenStore(
        path,
        cipher or load_cipher(environ, key_file),
        clock=clock,
        busy_timeout_ms=int(timeout * 1000),
    )
