"""What every part of config parsing shares: the error context and typed, checked getters.

Each error is a :class:`ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from remotetables.config.types import is_loopback_host
from remotetables.errors import ConfigError, redact_url
from remotetables.rows import JsonPath, parse_path


class _Ctx:
    def __init__(self, file: str | None) -> None:
        self.file = file

    def err(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=key)


def _table(ctx: _Ctx, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.err(key, f"must be a table, not {type(value).__name__}")
    return value


def _only(ctx: _Ctx, prefix: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    for k in raw:
        if k not in allowed:
            hint = _close(k, allowed)
            key = f"{prefix}.{k}" if prefix else k
            raise ctx.err(key, "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""))


def _close(word: str, options: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(options), n=1)
    return found[0] if found else None


def _get(
    ctx: _Ctx,
    raw: Mapping[str, Any],
    prefix: str,
    name: str,
    kind: type | tuple[type, ...],
    default: Any = None,
) -> Any:
    if name not in raw:
        return default
    value = raw[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and kind in (int, float):
        raise ctx.err(f"{prefix}.{name}", "must be a number, not a boolean")
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ctx.err(f"{prefix}.{name}", f"must be {_article(want)}, not {type(value).__name__}")
    return value


def _article(word: str) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}
    return names.get(word, f"a {word}")


def _str_map(ctx: _Ctx, key: str, raw: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ctx.err(f"{key}.{k}", "must be a string or number")
        out[k] = str(v)
    return out


def _url(ctx: _Ctx, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ctx.err(key, f"must be an absolute http(s) URL, not {redact_url(value)!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ctx.err(key, "plain http is only allowed for loopback addresses; use https")
    if parts.username or parts.password:
        raise ctx.err(key, "credentials in URLs are not allowed")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _is_secret_name(name):
            raise ctx.err(
                key,
                f"the query parameter {name!r} looks like a secret: secrets are never written in "
                "the config (for an API key in the URL, give the provider token_env and "
                f'token_param = "{name}")',
            )
    return value


def _is_secret_name(name: str) -> bool:
    return bool(re.search(r"(token|secret|password|api[_-]?key|apikey)", name, re.IGNORECASE))


def _path(ctx: _Ctx, key: str, text: str) -> JsonPath:
    try:
        return parse_path(text)
    except ValueError as exc:
        raise ctx.err(key, f"bad JSON path {text!r}: {exc}") from None
