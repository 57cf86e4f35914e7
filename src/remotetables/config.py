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
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from remotetables.errors import ConfigError
from remotetables.rows import JsonPath, parse_path

__all__ = [
    "SQL_TYPES",
    "ColumnSpec",
    "Config",
    "PaginationSpec",
    "ProviderConfig",
    "Settings",
    "TableSpec",
    "WriteSpec",
    "is_loopback_host",
    "load_config",
    "origin_of",
    "parse_config",
]

SQL_TYPES = ("INTEGER", "REAL", "TEXT", "BOOLEAN", "JSON")
PAGINATION_STYLES = ("link", "next_url", "cursor", "offset", "page", "none")
IN_STYLES = ("separate", "comma", "repeat")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its SQL name and type, where its value is, and how it pushes down."""

    name: str
    type: str
    path: JsonPath
    param: str | None = None  # API query parameter that filters on this column
    required: bool = False  # the API needs this parameter: queries must give it
    exact: bool = False  # the API's filter is trusted: rows are not re-checked locally
    in_style: str = "separate"  # IN (...) as one request per value, comma list, or repeated param
    on_error: Literal["error", "null"] = "error"
    writable: bool = True


@dataclass(frozen=True)
class PaginationSpec:
    style: str = "link"
    next_path: JsonPath | None = None  # next_url: where the next URL is in the body
    cursor_path: JsonPath | None = None  # cursor: where the cursor is in the body
    cursor_param: str = "cursor"
    offset_param: str = "offset"
    page_param: str = "page"
    first_page: int = 1
    total_path: JsonPath | None = None  # offset/page: total row count, enables parallel pages
    total_pages_path: JsonPath | None = None  # page: total page count
    total_header: str | None = None  # e.g. X-Total-Count
    next_header: str | None = None  # next_url: a response header holding the next URL
    cursor_header: str | None = None  # cursor: a response header holding the cursor
    has_more_path: JsonPath | None = None  # a body flag that is false on the last page


@dataclass(frozen=True)
class WriteSpec:
    """How INSERT/UPDATE/DELETE become requests (see the writes section of the README)."""

    key: str | None = None
    insert: tuple[str, str] | None = None  # (method, url template)
    update: tuple[str, str] | None = None
    delete: tuple[str, str] | None = None
    body_path: JsonPath | None = (
        None  # where the row is in the answer (default: rows path's parent)
    )
    idempotency_header: str | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    provider: str
    url: str
    rows_path: JsonPath
    columns: tuple[ColumnSpec, ...]
    pagination: PaginationSpec
    page_size_param: str | None = None
    max_page_size: int | None = None
    params: tuple[tuple[str, str], ...] = ()
    cache_ttl: float = 30.0
    max_pages: int = 10_000
    concurrency: int = 4
    key: str | None = None  # column whose value identifies a row (stable rowids, writes)
    write: WriteSpec | None = None
    description: str | None = None  # free text, shown by `remotetables tables`

    @property
    def origin(self) -> str:
        return origin_of(self.url)

    def column_index(self, name: str) -> int:
        for i, col in enumerate(self.columns):
            if col.name == name:
                return i
        raise KeyError(name)


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    auth: Literal["none", "bearer", "oauth"]
    integration: Literal["personal", "system"] = "personal"
    token_env: str | None = None  # bearer: env var holding the static token
    token_header: str = "Authorization"  # bearer: the header that carries it (e.g. X-API-Key)
    token_prefix: str = "Bearer "  # bearer: what goes before it in that header
    issuer: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    scopes: tuple[str, ...] = ()
    extra_authorize_params: tuple[tuple[str, str], ...] = ()
    extra_token_params: tuple[tuple[str, str], ...] = ()
    token_endpoint_auth_method: str | None = None
    system_grant: Literal["client_credentials", "authorization_code"] = "authorization_code"
    send_scope_on_refresh: bool = False
    redirect_uri: str | None = None
    api_origins: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    request_timeout: float = 120.0  # whole request, body included
    max_retries: int = 3
    max_retry_wait: float = 60.0

    @property
    def token_key_issuer(self) -> str:
        """What identifies this authorization server in the token store."""
        return self.issuer or self.token_endpoint or self.name


@dataclass(frozen=True)
class Settings:
    token_store: str | None = None  # path or postgresql:// URL; None: platform data dir
    key_file: str | None = None
    cache_max_bytes: int = 256 * 1024 * 1024
    consent: str = "auto"  # auto | browser | prompt | raise | device
    consent_timeout: float = 300.0


@dataclass(frozen=True)
class Config:
    providers: Mapping[str, ProviderConfig]
    tables: Mapping[str, TableSpec]
    settings: Settings = field(default_factory=Settings)
    path: str | None = None

    def table(self, name: str) -> TableSpec:
        from remotetables.errors import UnknownTableError

        for key, spec in self.tables.items():
            if key.lower() == name.lower():
                return spec
        where = f" in {self.path}" if self.path else ""
        known = ", ".join(sorted(self.tables)) or "none"
        raise UnknownTableError(f"unknown remote table {name!r}{where} (configured: {known})")

    def allowed_origins(self, provider: str) -> frozenset[str]:
        """Origins that may receive this provider's tokens: its tables' and its api_origins."""
        prov = self.providers[provider]
        origins = {t.origin for t in self.tables.values() if t.provider == provider}
        origins.update(origin_of(o) for o in prov.api_origins)
        return frozenset(origins)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (IP literals; ``127.x.example`` is not)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ parsing


class _Ctx:
    def __init__(self, file: str | None) -> None:
        self.file = file

    def err(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=key)


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
        providers[name] = _provider(ctx, name, _table(ctx, f"providers.{name}", raw))
    tables: dict[str, TableSpec] = {}
    for name, raw in _table(ctx, "tables", data.get("tables", {})).items():
        key = f"tables.{name}"
        if not IDENT.match(name):
            raise ctx.err(key, "a table name must be a plain SQL identifier (letters, digits, _)")
        if name.lower() in {t.lower() for t in tables}:
            raise ctx.err(key, "duplicate table name (names are case-insensitive in SQL)")
        tables[name] = _table_spec(ctx, name, _table(ctx, key, raw), providers)
    return Config(providers=providers, tables=tables, settings=settings, path=file)


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


def _settings(ctx: _Ctx, raw: Mapping[str, Any]) -> Settings:
    p = "settings"
    _only(ctx, p, raw, {"token_store", "key_file", "cache_max_bytes", "consent", "consent_timeout"})
    consent = _get(ctx, raw, p, "consent", str, "auto")
    if consent not in ("auto", "browser", "prompt", "raise", "device"):
        raise ctx.err(f"{p}.consent", "must be one of auto, browser, prompt, raise, device")
    max_bytes = _get(ctx, raw, p, "cache_max_bytes", int, 256 * 1024 * 1024)
    if max_bytes < 0:
        raise ctx.err(f"{p}.cache_max_bytes", "must be >= 0")
    return Settings(
        token_store=_get(ctx, raw, p, "token_store", str),
        key_file=_get(ctx, raw, p, "key_file", str),
        cache_max_bytes=max_bytes,
        consent=consent,
        consent_timeout=_get(ctx, raw, p, "consent_timeout", float, 300.0),
    )


_PROVIDER_KEYS = {
    "auth", "integration", "token_env", "issuer", "client_id", "client_secret_env",
    "authorization_endpoint", "token_endpoint", "revocation_endpoint",
    "device_authorization_endpoint", "scopes", "extra_authorize_params", "extra_token_params",
    "token_endpoint_auth_method", "grant", "send_scope_on_refresh", "redirect_uri",
    "api_origins", "headers", "connect_timeout", "read_timeout", "max_retries", "max_retry_wait",
    "request_timeout", "token_header", "token_prefix",
}  # fmt: skip
_SECRET_KEYS = {"client_secret", "token", "access_token", "refresh_token", "password", "api_key"}


def _provider(ctx: _Ctx, name: str, raw: Mapping[str, Any]) -> ProviderConfig:
    p = f"providers.{name}"
    for k in raw:
        if k in _SECRET_KEYS:
            env_key = "client_secret_env" if k == "client_secret" else "token_env"
            raise ctx.err(
                f"{p}.{k}",
                f"secrets are never written in the config: put it in an environment variable and name that variable with {env_key}",
            )
    _only(ctx, p, raw, _PROVIDER_KEYS)
    oauth_keys = ("issuer", "client_id", "token_endpoint", "authorization_endpoint")
    default_auth = (
        "oauth" if any(k in raw for k in oauth_keys) else "bearer" if "token_env" in raw else "none"
    )
    auth = _get(ctx, raw, p, "auth", str, default_auth)
    if auth not in ("none", "bearer", "oauth"):
        raise ctx.err(f"{p}.auth", "must be one of none, bearer, oauth")
    integration = _get(ctx, raw, p, "integration", str, "personal")
    if integration not in ("personal", "system"):
        raise ctx.err(f"{p}.integration", "must be 'personal' or 'system'")
    token_env = _get(ctx, raw, p, "token_env", str)
    token_header = _get(ctx, raw, p, "token_header", str, "Authorization")
    token_prefix = _get(
        ctx,
        raw,
        p,
        "token_prefix",
        str,
        "Bearer " if token_header.lower() == "authorization" else "",
    )
    for k in ("token_header", "token_prefix"):
        if k in raw and auth != "bearer":
            raise ctx.err(
                f"{p}.{k}",
                "only a bearer provider (token_env) sets how its token is sent; OAuth uses Authorization: Bearer",
            )
    if not re.fullmatch(r"[A-Za-z0-9-]+", token_header):
        raise ctx.err(f"{p}.token_header", "must be an HTTP header name")
    if auth == "bearer" and not token_env:
        raise ctx.err(
            f"{p}.token_env", "a bearer provider needs token_env (the variable holding the token)"
        )
    client_id = _get(ctx, raw, p, "client_id", str)
    issuer = _get(ctx, raw, p, "issuer", str)
    endpoints = {
        k: _url(ctx, f"{p}.{k}", _get(ctx, raw, p, k, str))
        for k in (
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "device_authorization_endpoint",
        )
    }
    grant = _get(ctx, raw, p, "grant", str, "authorization_code")
    if grant not in ("authorization_code", "client_credentials"):
        raise ctx.err(f"{p}.grant", "must be 'authorization_code' or 'client_credentials'")
    if grant == "client_credentials" and integration != "system":
        raise ctx.err(
            f"{p}.grant",
            'client_credentials gives one shared token: it needs integration = "system"',
        )
    if auth == "oauth":
        if not client_id:
            raise ctx.err(f"{p}.client_id", "an OAuth provider needs client_id")
        if not issuer and not endpoints["token_endpoint"]:
            raise ctx.err(
                f"{p}.issuer", "an OAuth provider needs issuer (for discovery) or token_endpoint"
            )
        if not issuer and grant == "authorization_code" and not endpoints["authorization_endpoint"]:
            raise ctx.err(
                f"{p}.authorization_endpoint", "needed when no issuer is given for discovery"
            )
    if issuer is not None:
        _url(ctx, f"{p}.issuer", issuer)
    method = _get(ctx, raw, p, "token_endpoint_auth_method", str)
    if method is not None and method not in ("none", "client_secret_basic", "client_secret_post"):
        raise ctx.err(
            f"{p}.token_endpoint_auth_method",
            "must be none, client_secret_basic or client_secret_post",
        )
    scopes = _get(ctx, raw, p, "scopes", (list, str), [])
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not all(isinstance(s, str) for s in scopes):
        raise ctx.err(f"{p}.scopes", "must be a list of strings")
    extra = _str_map(
        ctx, f"{p}.extra_authorize_params", _get(ctx, raw, p, "extra_authorize_params", dict, {})
    )
    extra_token = _str_map(
        ctx, f"{p}.extra_token_params", _get(ctx, raw, p, "extra_token_params", dict, {})
    )
    headers = _str_map(ctx, f"{p}.headers", _get(ctx, raw, p, "headers", dict, {}))
    for h in dict(headers):
        if h.lower() in ("authorization", token_header.lower()):
            raise ctx.err(
                f"{p}.headers.{h}",
                "this header carries the token and is set by remotetables; never put credentials in headers",
            )
    origins = _get(ctx, raw, p, "api_origins", list, [])
    for i, o in enumerate(origins):
        if not isinstance(o, str):
            raise ctx.err(f"{p}.api_origins[{i}]", "must be a string URL")
        _url(ctx, f"{p}.api_origins[{i}]", o)
    max_retries = _get(ctx, raw, p, "max_retries", int, 3)
    if not 0 <= max_retries <= 10:
        raise ctx.err(f"{p}.max_retries", "must be between 0 and 10")
    for k in ("connect_timeout", "read_timeout", "request_timeout", "max_retry_wait"):
        v = _get(ctx, raw, p, k, float, 1.0)
        if v <= 0:
            raise ctx.err(f"{p}.{k}", "must be > 0")
    return ProviderConfig(
        name=name,
        auth=auth,
        integration=integration,
        token_env=token_env,
        token_header=token_header,
        token_prefix=token_prefix,
        issuer=issuer,
        client_id=client_id,
        client_secret_env=_get(ctx, raw, p, "client_secret_env", str),
        scopes=tuple(scopes),
        extra_authorize_params=tuple(extra.items()),
        extra_token_params=tuple(extra_token.items()),
        token_endpoint_auth_method=method,
        system_grant=grant,
        send_scope_on_refresh=_get(ctx, raw, p, "send_scope_on_refresh", bool, False),
        redirect_uri=_url(ctx, f"{p}.redirect_uri", _get(ctx, raw, p, "redirect_uri", str)),
        api_origins=tuple(origins),
        headers=tuple(headers.items()),
        connect_timeout=_get(ctx, raw, p, "connect_timeout", float, 10.0),
        read_timeout=_get(ctx, raw, p, "read_timeout", float, 30.0),
        request_timeout=_get(ctx, raw, p, "request_timeout", float, 120.0),
        max_retries=max_retries,
        max_retry_wait=_get(ctx, raw, p, "max_retry_wait", float, 60.0),
        **endpoints,
    )


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
        raise ctx.err(key, f"must be an absolute http(s) URL, not {value!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ctx.err(key, "plain http is only allowed for loopback addresses; use https")
    if parts.username or parts.password:
        raise ctx.err(key, "credentials in URLs are not allowed")
    return value


_TABLE_KEYS = {
    "provider", "url", "rows", "pagination", "page_size_param", "max_page_size", "params",
    "cache_ttl", "max_pages", "columns", "concurrency", "key", "write", "description",
}  # fmt: skip
_COLUMN_KEYS = {"type", "path", "param", "required", "exact", "in", "on_error", "writable"}


def _table_spec(
    ctx: _Ctx, name: str, raw: Mapping[str, Any], providers: Mapping[str, ProviderConfig]
) -> TableSpec:
    p = f"tables.{name}"
    _only(ctx, p, raw, _TABLE_KEYS)
    provider = _get(ctx, raw, p, "provider", str)
    if provider is None:
        if len(providers) == 1:
            provider = next(iter(providers))
        elif not providers:
            provider = "__none__"
        else:
            raise ctx.err(f"{p}.provider", "missing: say which provider's token this table uses")
    if provider != "__none__" and provider not in providers:
        known = ", ".join(sorted(providers)) or "none"
        raise ctx.err(f"{p}.provider", f"unknown provider {provider!r} (configured: {known})")
    url = _get(ctx, raw, p, "url", str)
    if not url:
        raise ctx.err(f"{p}.url", "missing: every table needs the URL of its API resource")
    _url(ctx, f"{p}.url", url)
    rows_path = _path(ctx, f"{p}.rows", _get(ctx, raw, p, "rows", str, ""))
    pagination = _pagination(ctx, p, raw.get("pagination", "none"))
    max_page_size = _get(ctx, raw, p, "max_page_size", int)
    if max_page_size is not None and max_page_size < 1:
        raise ctx.err(f"{p}.max_page_size", "must be >= 1")
    params = _str_map(ctx, f"{p}.params", _get(ctx, raw, p, "params", dict, {}))
    for k in params:
        if _is_secret_name(k):
            raise ctx.err(
                f"{p}.params.{k}", "looks like a secret: secrets are never written in the config"
            )
    ttl = _get(ctx, raw, p, "cache_ttl", float, 30.0)
    if ttl < 0:
        raise ctx.err(f"{p}.cache_ttl", "must be >= 0 (0 disables the cache)")
    max_pages = _get(ctx, raw, p, "max_pages", int, 10_000)
    if max_pages < 1:
        raise ctx.err(f"{p}.max_pages", "must be >= 1")
    concurrency = _get(ctx, raw, p, "concurrency", int, 4)
    if not 1 <= concurrency <= 32:
        raise ctx.err(f"{p}.concurrency", "must be between 1 and 32")
    raw_cols = raw.get("columns")
    if raw_cols is None:
        raise ctx.err(
            f"{p}.columns",
            'missing: list the columns (name = "TYPE" or name = { type = ..., path = ... })',
        )
    cols = _columns(ctx, p, raw_cols)
    names = {c.name.lower() for c in cols}
    key = _get(ctx, raw, p, "key", str)
    if key is not None and key.lower() not in names:
        raise ctx.err(f"{p}.key", f"no column named {key!r}")
    write = _write(ctx, p, raw.get("write"), key, names)
    return TableSpec(
        name=name,
        provider=provider,
        url=url,
        rows_path=rows_path,
        columns=cols,
        pagination=pagination,
        page_size_param=_get(ctx, raw, p, "page_size_param", str),
        max_page_size=max_page_size,
        params=tuple(params.items()),
        cache_ttl=ttl,
        max_pages=max_pages,
        concurrency=concurrency,
        key=key,
        write=write,
        description=_get(ctx, raw, p, "description", str),
    )


def _is_secret_name(name: str) -> bool:
    return bool(re.search(r"(token|secret|password|api[_-]?key|apikey)", name, re.IGNORECASE))


def _path(ctx: _Ctx, key: str, text: str) -> JsonPath:
    try:
        return parse_path(text)
    except ValueError as exc:
        raise ctx.err(key, f"bad JSON path {text!r}: {exc}") from None


def _pagination(ctx: _Ctx, p: str, raw: Any) -> PaginationSpec:
    key = f"{p}.pagination"
    if isinstance(raw, str):
        raw = {"style": raw}
    raw = _table(ctx, key, raw)
    allowed = {
        "style", "next_path", "cursor_path", "cursor_param", "offset_param", "page_param",
        "first_page", "total_path", "total_pages_path", "total_header", "next_header",
        "cursor_header", "has_more_path",
    }  # fmt: skip
    _only(ctx, key, raw, allowed)
    style = _get(ctx, raw, key, "style", str, "none")
    if style not in PAGINATION_STYLES:
        raise ctx.err(
            f"{key}.style",
            f"unknown pagination style {style!r}; one of {', '.join(PAGINATION_STYLES)}",
        )

    def opt_path(name: str) -> JsonPath | None:
        text = _get(ctx, raw, key, name, str)
        return None if text is None else _path(ctx, f"{key}.{name}", text)

    spec = PaginationSpec(
        style=style,
        next_path=opt_path("next_path"),
        cursor_path=opt_path("cursor_path"),
        cursor_param=_get(ctx, raw, key, "cursor_param", str, "cursor"),
        offset_param=_get(ctx, raw, key, "offset_param", str, "offset"),
        page_param=_get(ctx, raw, key, "page_param", str, "page"),
        first_page=_get(ctx, raw, key, "first_page", int, 1),
        total_path=opt_path("total_path"),
        total_pages_path=opt_path("total_pages_path"),
        total_header=_get(ctx, raw, key, "total_header", str),
        next_header=_get(ctx, raw, key, "next_header", str),
        cursor_header=_get(ctx, raw, key, "cursor_header", str),
        has_more_path=opt_path("has_more_path"),
    )
    if style == "next_url" and spec.next_path is None and spec.next_header is None:
        raise ctx.err(
            f"{key}.next_path",
            "style next_url needs next_path (where the next URL is in the body) or next_header",
        )
    if style == "cursor" and spec.cursor_path is None and spec.cursor_header is None:
        raise ctx.err(
            f"{key}.cursor_path",
            "style cursor needs cursor_path (where the cursor is in the body) or cursor_header",
        )
    return spec


def _columns(ctx: _Ctx, p: str, raw: Any) -> tuple[ColumnSpec, ...]:
    key = f"{p}.columns"
    raw = _table(ctx, key, raw)
    if not raw:
        raise ctx.err(key, "a table needs at least one column")
    seen: set[str] = set()
    out: list[ColumnSpec] = []
    for name, value in raw.items():
        ck = f"{key}.{name}"
        if not IDENT.match(name):
            raise ctx.err(ck, "a column name must be a plain SQL identifier (letters, digits, _)")
        if name.lower() in seen:
            raise ctx.err(ck, "duplicate column (names are case-insensitive in SQL)")
        if name.lower() == "rowid":
            raise ctx.err(ck, "rowid is reserved by SQLite")
        seen.add(name.lower())
        if isinstance(value, str):
            value = {"type": value}
        value = _table(ctx, ck, value)
        _only(ctx, ck, value, _COLUMN_KEYS)
        typ = str(_get(ctx, value, ck, "type", str, "TEXT")).upper()
        if typ not in SQL_TYPES:
            raise ctx.err(f"{ck}.type", f"unknown type {typ!r}; one of {', '.join(SQL_TYPES)}")
        in_style = _get(ctx, value, ck, "in", str, "separate")
        if in_style not in IN_STYLES:
            raise ctx.err(f"{ck}.in", f"must be one of {', '.join(IN_STYLES)}")
        on_error = _get(ctx, value, ck, "on_error", str, "error")
        if on_error not in ("error", "null"):
            raise ctx.err(f"{ck}.on_error", "must be 'error' or 'null'")
        param = _get(ctx, value, ck, "param", (str, bool))
        if param is True:
            param = name
        elif param is False:
            param = None
        required = _get(ctx, value, ck, "required", bool, False)
        if required and not param:
            raise ctx.err(
                f"{ck}.required", "only a column mapped to an API parameter (param) can be required"
            )
        exact = _get(ctx, value, ck, "exact", bool, False)
        if exact and not param:
            raise ctx.err(
                f"{ck}.exact", "only a column mapped to an API parameter (param) can be exact"
            )
        out.append(
            ColumnSpec(
                name=name,
                type=typ,
                path=_path(ctx, f"{ck}.path", _get(ctx, value, ck, "path", str, name)),
                param=param,
                required=required,
                exact=exact,
                in_style=in_style,
                on_error=on_error,
                writable=_get(ctx, value, ck, "writable", bool, True),
            )
        )
    return tuple(out)


def _write(ctx: _Ctx, p: str, raw: Any, key: str | None, names: set[str]) -> WriteSpec | None:
    if raw is None:
        return None
    wk = f"{p}.write"
    raw = _table(ctx, wk, raw)
    _only(ctx, wk, raw, {"insert", "update", "delete", "body_path", "idempotency_header"})
    ops: dict[str, tuple[str, str] | None] = {}
    for op, default_method in (("insert", "POST"), ("update", "PATCH"), ("delete", "DELETE")):
        v = raw.get(op)
        if v is None or v is False:
            ops[op] = None
            continue
        if v is True:
            v = {}
        v = _table(ctx, f"{wk}.{op}", v)
        _only(ctx, f"{wk}.{op}", v, {"method", "url"})
        method = str(_get(ctx, v, f"{wk}.{op}", "method", str, default_method)).upper()
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            raise ctx.err(f"{wk}.{op}.method", "must be POST, PUT, PATCH or DELETE")
        url = _get(ctx, v, f"{wk}.{op}", "url", str, "{url}" if op == "insert" else "{url}/{key}")
        if op != "insert" and "{key}" not in url:
            raise ctx.err(f"{wk}.{op}.url", "must contain {key} (the row's key)")
        ops[op] = (method, url)
    if (ops["update"] or ops["delete"]) and key is None:
        raise ctx.err(f"{p}.key", "update and delete need the table's key column")
    body_text = _get(ctx, raw, wk, "body_path", str)
    return WriteSpec(
        key=key,
        insert=ops["insert"],
        update=ops["update"],
        delete=ops["delete"],
        body_path=None if body_text is None else _path(ctx, f"{wk}.body_path", body_text),
        idempotency_header=_get(ctx, raw, wk, "idempotency_header", str),
    )
