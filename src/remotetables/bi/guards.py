"""What BI servers' integrations share, free of their imports (tested without them).

:mod:`remotetables.bi.superset` (Superset's engine spec) builds on these.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import Any

from remotetables.dbapi import _resolve_config, connect
from remotetables.errors import ProgrammingError
from remotetables.sqltext import QUOTED

__all__ = ["impersonated", "oauth2_provider", "refuse_attach"]

_ATTACH = re.compile(r"\s*(?:ATTACH|DETACH)\b", re.IGNORECASE)


def refuse_attach(sql: str) -> None:
    """Raise when any statement of ``sql`` is an ``ATTACH`` or ``DETACH`` (literals, quoted
    names and comments are blanked first, so a ';' inside them splits nothing).

    >>> refuse_attach("SELECT 'ATTACH'; -- ATTACH")
    """
    for part in QUOTED.sub(" ", sql).split(";"):
        if _ATTACH.match(part):
            raise ProgrammingError(
                "ATTACH and DETACH are disabled for remotetables databases in this BI server"
            )


def impersonated(
    url: Any, username: str | None, engine_kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """``(url, engine_kwargs)`` for a BI server's logged-in user: the URL's user (the session
    user of every connection), locked where :func:`remotetables.connect` has ``lock_user``."""
    if username is not None:
        url = url.set(username=username)
        if "lock_user" in inspect.signature(connect).parameters:
            engine_kwargs.setdefault("connect_args", {})["lock_user"] = True
    return url, engine_kwargs


def oauth2_provider(url: Any, extra: Mapping[str, Any]) -> str:
    """The provider a BI server's OAuth2 token is for: ``extra["remotetables_provider"]``, or
    the only provider with personal OAuth tokens in the URL's config."""
    named = extra.get("remotetables_provider")
    if named:
        return str(named)
    config = url.query.get("config")
    if isinstance(config, tuple):
        config = config[-1]
    cfg = _resolve_config(config, os.environ)
    personal = sorted(p.name for p in cfg.providers.values() if p.per_user)
    if len(personal) != 1:
        raise ProgrammingError(
            f"{cfg.path or 'the config'} has {len(personal)} providers with personal OAuth tokens"
            f"{' (' + ', '.join(personal) + ')' if personal else ''}: name the one the BI "
            "server's OAuth2 client is for in the database's extra: {\"remotetables_provider\": "
            '"NAME"}'
        )
    return personal[0]
