"""The validated configuration: :class:`Config` and the specs it holds.

Built from TOML by :func:`remotetables.config.load_config` (which re-exports every name here);
the rest of the package reads these frozen dataclasses and never the TOML.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from remotetables.rows import JsonPath

__all__ = [
    "FILTER_FORMATS",
    "FILTER_MATCHES",
    "FILTER_OPS",
    "IDENT",
    "IN_STYLES",
    "PAGINATION_STYLES",
    "PROVIDER_NAME",
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
    "origin_of",
]

SQL_TYPES = ("INTEGER", "REAL", "TEXT", "BOOLEAN", "JSON")
PAGINATION_STYLES = ("link", "next_url", "cursor", "offset", "page", "none")
IN_STYLES = ("separate", "comma", "repeat")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would accept a trailing newline
PROVIDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")  # a CLI argument, in messages
# operators a column may map to API parameters besides = and IN (``param``)
FILTER_OPS = (">", ">=", "<", "<=", "!=", "LIKE", "GLOB", "IS NULL", "IS NOT NULL")
# how a value is written for the API: as SQLite has it, a date, an ISO 8601 UTC date-time
FILTER_FORMATS = ("text", "date", "datetime")
# which LIKE/GLOB patterns a parameter takes: %x% (contains), x% (prefix), %x (suffix)
FILTER_MATCHES = ("contains", "prefix", "suffix")


@dataclass(frozen=True)
class FilterSpec:
    """One operator of a column mapped to an API parameter (``filters = { ">=" = "since" }``).

    The API must keep at least the rows SQLite keeps for the term (it may keep more: they are
    re-checked locally unless the column is ``exact``); see the README's Pushdown chapter.
    """

    op: str  # one of FILTER_OPS
    param: str
    format: str = "text"  # one of FILTER_FORMATS
    match: str = "contains"  # LIKE/GLOB: the pattern form the parameter takes
    case: Literal["sensitive", "insensitive"] = "sensitive"  # LIKE: how the API compares case
    value: str | None = None  # IS NULL / IS NOT NULL: the parameter's fixed value


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
    filter_only: bool = False  # the API filters on it, its rows never carry it: echo the value sent
    on_error: Literal["error", "null"] = "error"
    writable: bool = True
    filters: tuple[FilterSpec, ...] = ()  # other operators pushed to API parameters
    sort: str | None = None  # the API's name for sorting by this column (the table's order_by)
    sort_exact: bool = False  # the API's order for it is SQLite's: ORDER BY is consumed
    query_field: str | None = None  # its name in the table's query language (QuerySpec)
    query_ops: tuple[str, ...] = ()  # operators it takes there (default: all the language has)
    query_format: str = "text"  # how its values are written there (FILTER_FORMATS)
    path_param: bool = False  # named in the table's URL as {name}: a path segment

    def filter_for(self, op: str) -> FilterSpec | None:
        for f in self.filters:
            if f.op == op:
                return f
        return None


@dataclass(frozen=True)
class OrderBySpec:
    """How the API is asked to sort: ``param`` takes ``template`` (``{field}``, ``{dir}``);
    the direction goes into ``direction_param`` when the API has one."""

    param: str
    template: str = "{field}"
    direction_param: str | None = None
    asc: str = "asc"
    desc: str = "desc"


@dataclass(frozen=True)
class QuerySpec:
    """A query language: one parameter holding every pushable term of a statement.

    ``terms`` maps an operator (``=``, ``IN``, FILTER_OPS) to a template with ``{field}`` and
    ``{value}`` (``{values}`` for IN: the values joined by ``list_separator``). A text value has
    ``escapes`` applied in order, then is put between ``quote``; a value holding one of
    ``local_if`` (or, in an IN list, the separator) is not sent: its term stays local.
    """

    param: str
    terms: tuple[tuple[str, str], ...]
    joiner: str
    quote: str = ""
    escapes: tuple[tuple[str, str], ...] = ()
    local_if: tuple[str, ...] = ()
    quote_numbers: bool = False
    list_separator: str = ","
    base: str | None = None  # a fixed first term (JQL: project = ACME)
    order_asc: str | None = None  # ORDER BY inside the expression: templates with {field}
    order_desc: str | None = None
    order_joiner: str | None = None  # between the terms and the order (default: joiner)
    like_case: Literal["sensitive", "insensitive"] = "sensitive"  # how LIKE's template compares

    def template(self, op: str) -> str | None:
        for name, text in self.terms:
            if name == op:
                return text
        return None


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
    offset_by: str = "page_size"  # offset: advance by the page size asked for, or "rows" returned


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
class BodySpec:
    """A listing asked with POST and a JSON body (config/listing.py).

    ``template`` is the JSON body; a string that is exactly ``"{name}"`` takes the value of the
    parameter ``name`` (a pushed column's ``param``, a static ``params`` entry, the page size,
    cursor, offset or page parameter), and is left out when it has none. Parameters the
    template does not place go into the object at ``params_at`` (the top level; GraphQL's
    ``variables``).
    """

    template: Any
    params_at: tuple[str, ...] = ()
    graphql: bool = False  # a GraphQL document: `errors` in the answer fail the query
    idempotent: bool = False  # safe to send again after a failure (a search, a GraphQL query)


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
    # incremental sync: (API parameter, column) where the parameter takes the greatest value
    # of the column already copied and the API answers rows updated at or after it
    updated_since: tuple[str, str] | None = None
    order_by: OrderBySpec | None = None  # how ORDER BY is sent (columns with `sort`)
    fields_param: str | None = None  # the API's column-list parameter (sysparm_fields, $select)
    fields_separator: str = ","
    query: QuerySpec | None = None  # a query language parameter (sysparm_query, $filter, jql)
    method: str = "GET"  # POST: a listing asked with a JSON body (body below)
    body: BodySpec | None = None

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
    token_param: str | None = None  # bearer: send it as this query parameter instead
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
    # which account signs in (authorization code): see README "Which account a grant belongs to"
    prompt: str = "auto"  # auto | always | never: ask to sign in (OIDC prompt=login)
    login_hint: str | None = None  # template, "{user}@example.com"
    account: str | None = None  # template the signed-in account must match; None: not checked
    account_claim: str | None = None  # the claim that names the account (default: see README)
    max_response_bytes: int = 64 * 1024 * 1024  # decoded size of one answer (API or OAuth)
    oauth_timeout: float = 20.0  # total time of one call to the authorization server

    def expand(self, template: str, user: str) -> str:
        """A ``login_hint`` / ``account`` template for ``user``."""
        return template.format(user=user)

    @property
    def per_user(self) -> bool:
        """Each user has their own token (and rows): personal OAuth."""
        return self.auth == "oauth" and self.integration == "personal"

    @property
    def refresh_deadline(self) -> float:
        """How long one refresh at this provider may take: its oauth_timeout (the total of each
        call to the authorization server), or connect plus read timeout if that is less."""
        return min(self.oauth_timeout, self.connect_timeout + self.read_timeout)

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
    # store each remote table's CREATE VIRTUAL TABLE in the database file (off: the
    # connection's temp schema, so the file stays openable by tools without the module)
    persist_tables: bool = False
    writes_in_transaction: bool = False  # allow remote writes inside BEGIN ... / SAVEPOINT
    token_store_timeout: float = 10.0  # bounds every token store call (lock, statement, total)
    refresh_lease: float = 120.0  # a refresh holds the grant this long at most (store clock)


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
