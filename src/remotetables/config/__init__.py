"""The configuration layer: TOML -> validated :class:`Config` (see :mod:`.load` for the file format).

:mod:`.types` holds the dataclasses, :mod:`.parse` the shared helpers, :mod:`.providers` and
:mod:`.tables` parse ``[providers.X]`` and ``[tables.X]``, :mod:`.load` reads the file.
"""

from __future__ import annotations

from remotetables.config.load import load_config, parse_config
from remotetables.config.types import (
    FILTER_FORMATS,
    FILTER_MATCHES,
    FILTER_OPS,
    SQL_TYPES,
    BodySpec,
    ColumnSpec,
    Config,
    FilterSpec,
    OrderBySpec,
    PaginationSpec,
    ProviderConfig,
    QuerySpec,
    Settings,
    TableSpec,
    WriteSpec,
    is_loopback_host,
    origin_of,
)

__all__ = [
    "FILTER_FORMATS",
    "FILTER_MATCHES",
    "FILTER_OPS",
    "SQL_TYPES",
    "BodySpec",
    "ColumnSpec",
    "Config",
    "FilterSpec",
    "OrderBySpec",
    "PaginationSpec",
    "ProviderConfig",
    "QuerySpec",
    "Settings",
    "TableSpec",
    "WriteSpec",
    "is_loopback_host",
    "load_config",
    "origin_of",
    "parse_config",
]
