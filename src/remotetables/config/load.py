"""TOML configuration -> validated :class:`Config`.

A minimal file::

    [providers.demo]
    issuer = "https://auth.example.com"
    client_id = "remotetables"
    scopes = ["incidents.read"]

    [tables.remote_incidents]
    provider = "demo"
    url = "https://api.example.com/api/now/table/incident"
    rows = "result"
    pagination = "link"
    page_size_param = "sysparm_limit"
    max_page_size = 1000

    [tables.remote_incidents.columns]
    number = "TEXT"
    priority = { type = "INTEGER", param = "priority" }
    caller = { type = "TEXT", path = "caller.name" }

Every error names the file and the dotted key. Secrets are never inline: they are read from the
environment variables the config names (``client_secret_env``, ``token_env``).

This module reads the file and parses ``[settings]``; the types are in :mod:`.types`,
``[providers.X]`` is parsed in :mod:`.providers`, ``[tables.X]`` in :mod:`.tables`,
with the shared helpers of :mod:`.parse`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remotetables.config.parse import _Ctx, _get, _only, _table
from remotetables.config.providers import _check_token_slots, _provider
from remotetables.config.tables import _table_spec
from remotetables.config.types import (
    IDENT,
    PROVIDER_NAME,
    Config,
    ProviderConfig,
    Settings,
    TableSpec,
)
from remotetables.errors import ConfigError

__all__ = ["load_config", "parse_config"]


# ------------------------------------------------------------------ parsing


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", file=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(p)) from None
    return parse_config(data, file=str(p), environ=environ)


def parse_config(
    data: Mapping[str, Any], *, file: str | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed TOML document."""
    ctx = _Ctx(file)
    _only(ctx, "", data, {"settings", "providers", "tables"})
    settings = _settings(ctx, _table(ctx, "settings", data.get("settings", {})))
    providers: dict[str, ProviderConfig] = {}
    for name, raw in _table(ctx, "providers", data.get("providers", {})).items():
        if not PROVIDER_NAME.match(name) or name == "__none__":
            raise ctx.err(
                f"providers.{name}",
                "a provider name is letters, digits, '_', '.' and '-' (no spaces, no control "
                "characters, not __none__)",
            )
        providers[name] = _provider(ctx, name, _table(ctx, f"providers.{name}", raw))
    _check_token_slots(ctx, providers)
    _check_refresh_lease(ctx, settings, providers)
    tables: dict[str, TableSpec] = {}
    for name, raw in _table(ctx, "tables", data.get("tables", {})).items():
        key = f"tables.{name}"
        if not IDENT.match(name):
            raise ctx.err(key, "a table name must be a plain SQL identifier (letters, digits, _)")
        if name.lower() in {t.lower() for t in tables}:
            raise ctx.err(key, "duplicate table name (names are case-insensitive in SQL)")
        tables[name] = _table_spec(ctx, name, _table(ctx, key, raw), providers)
    return Config(providers=providers, tables=tables, settings=settings, path=file)


def _check_refresh_lease(
    ctx: _Ctx, settings: Settings, providers: Mapping[str, ProviderConfig]
) -> None:
    """A refresh must end well inside its lease: else a second worker may take the expired
    lease and replay the same refresh token (the server then revokes the grant)."""
    for name, p in providers.items():
        if p.auth != "oauth":
            continue
        worst = p.refresh_deadline + settings.token_store_timeout
        if 2 * worst > settings.refresh_lease:
            raise ctx.err(
                "settings.refresh_lease",
                f"{settings.refresh_lease:g} s is too short for provider {name}: a refresh "
                f"there may take {p.refresh_deadline:g} s (oauth_timeout) plus "
                f"{settings.token_store_timeout:g} s (token_store_timeout) to commit; the lease "
                f"must be at least twice that ({2 * worst:g} s): raise refresh_lease or lower "
                "those timeouts",
            )


def _settings(ctx: _Ctx, raw: Mapping[str, Any]) -> Settings:
    p = "settings"
    _only(
        ctx,
        p,
        raw,
        {
            "token_store",
            "key_file",
            "cache_max_bytes",
            "consent",
            "consent_timeout",
            "persist_tables",
            "writes_in_transaction",
            "token_store_timeout",
            "refresh_lease",
        },
    )
    consent = _get(ctx, raw, p, "consent", str, "auto")
    if consent not in ("auto", "browser", "prompt", "raise", "device"):
        raise ctx.err(f"{p}.consent", "must be one of auto, browser, prompt, raise, device")
    max_bytes = _get(ctx, raw, p, "cache_max_bytes", int, 256 * 1024 * 1024)
    if max_bytes < 0:
        raise ctx.err(f"{p}.cache_max_bytes", "must be >= 0")
    store_timeout = _get(ctx, raw, p, "token_store_timeout", float, 10.0)
    lease = _get(ctx, raw, p, "refresh_lease", float, 120.0)
    for k, v in (("token_store_timeout", store_timeout), ("refresh_lease", lease)):
        if not v > 0:
            raise ctx.err(f"{p}.{k}", "must be a number of seconds > 0")
    return Settings(
        token_store_timeout=store_timeout,
        refresh_lease=lease,
        token_store=_get(ctx, raw, p, "token_store", str),
        key_file=_get(ctx, raw, p, "key_file", str),
        cache_max_bytes=max_bytes,
        consent=consent,
        consent_timeout=_get(ctx, raw, p, "consent_timeout", float, 300.0),
        persist_tables=_get(ctx, raw, p, "persist_tables", bool, False),
        writes_in_transaction=_get(ctx, raw, p, "writes_in_transaction", bool, False),
    )
