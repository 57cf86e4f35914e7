"""Per-process runtime and per-connection session.

* :class:`Runtime` holds what connections share: the config, the one pooled HTTP client, the row
  cache, the credentials of every provider (token store, refresh locks), a small thread pool
  for parallel pages. It can serve many connections (a BI server's pool) at once.
* :class:`Session` is one connection's state: the session user, the consent callback, the
  statistics of the last statement, progress reporting.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx2

from remotetables.cache import RowCache
from remotetables.config import Config, ProviderConfig, TableSpec
from remotetables.decoders import PageDecoder, fast_path_enabled, page_decoder
from remotetables.errors import (
    ConfigError,
    NoSessionUser,
    NotAuthorized,
    UnknownTableError,
    register_secret,
)
from remotetables.http.client import Counters, HttpClient, RequestContext, RetryPolicy
from remotetables.http.ratelimit import describe_reset
from remotetables.rows import RowBuilder

if TYPE_CHECKING:
    from remotetables.auth.service import OAuthService

__all__ = ["Credentials", "Runtime", "Session", "StatementStats"]

T = TypeVar("T")


@dataclass
class StatementStats:
    """What the last statement on a connection did."""

    pages: int = 0
    rows: int = 0
    cache_hits: int = 0
    fast_pages: int = 0  # pages the fast path decoded (remotetables.decoders)
    net: Counters = field(default_factory=Counters)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    paused: float = 0.0  # seconds spent waiting for the user (consent), not counted as wall time
    urls: list[str] = field(default_factory=list)  # first page requests, redacted (at most 100)
    urls_omitted: int = 0

    def add_url(self, url: str) -> None:
        if len(self.urls) < 100:
            self.urls.append(url)
        else:
            self.urls_omitted += 1

    @property
    def requests(self) -> int:
        return self.net.requests

    @property
    def retries(self) -> int:
        return self.net.retries

    @property
    def bytes(self) -> int:
        return self.net.bytes

    @property
    def wall_time(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started - self.paused

    def as_dict(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {
            "requests": self.requests,
            "pages": self.pages,
            "rows": self.rows,
            "cache_hits": self.cache_hits,
            "revalidated": self.net.revalidated,
            "bytes": self.bytes,
            "retries": self.retries,
            "wall_time": round(self.wall_time, 6),
        }
        budget = self.net.budget
        if budget is not None:  # the rate limit, as the API's last answer told it
            if budget.remaining is not None:
                out["rate_limit_remaining"] = budget.remaining
            if budget.limit is not None:
                out["rate_limit"] = budget.limit
            if budget.reset_at is not None:
                out["rate_limit_reset"] = describe_reset(budget.reset_at, time.time())
            if budget.resource:
                out["rate_limit_resource"] = budget.resource
        return out


_HANDED_KEY = secrets.token_bytes(32)  # keys the tags of handed-in tokens (cache principals)


class Credentials(Protocol):
    """How a provider's requests are authenticated, for one principal at a time."""

    def principal(self, session: Session) -> str:
        """Whose token (and cached rows) a query uses: part of every cache key."""
        ...

    def auth(self, session: Session, ctx: RequestContext) -> httpx2.Auth | None:
        """The per-request auth for the current principal (None: no credentials)."""
        ...


class NoAuth:
    """A public API: no token, rows shared by everybody."""

    def principal(self, session: Session) -> str:
        return "public"

    def auth(self, session: Session, ctx: RequestContext) -> httpx2.Auth | None:
        return None


class StaticBearer:
    """One token from an environment variable, shared like a system integration."""

    def __init__(
        self,
        provider: ProviderConfig,
        environ: dict[str, str],
        origins: frozenset[str],
        config_path: str | None = None,
    ) -> None:
        self.provider = provider
        self._environ = environ
        self._origins = origins
        self._config_path = config_path  # named in errors

    def principal(self, session: Session) -> str:
        return "system"

    def auth(self, session: Session, ctx: RequestContext) -> httpx2.Auth | None:
        return self.static_auth()

    def static_auth(self) -> httpx2.Auth:
        """The same auth for everybody (``remotetables check`` uses it without a session)."""
        from remotetables.auth.flow import BearerAuth

        name = self.provider.token_env or ""
        token = self._environ.get(name)
        if not token:
            raise ConfigError(
                f"provider {self.provider.name}: environment variable {name} is not set (it holds the API token)",
                file=self._config_path,
                key=f"providers.{self.provider.name}.token_env",
            )
        register_secret(token)  # an API that echoes the key never puts it in an error
        return BearerAuth(
            lambda: token,
            None,
            self._origins,
            self.provider.name,
            header=self.provider.token_header,
            prefix=self.provider.token_prefix,
            param=self.provider.token_param,
            unauthorized_hint=(
                f"the static token from environment variable {name} was refused; it is never "
                "refreshed: check that it is current and meant for this API"
            ),
        )

    def __repr__(self) -> str:
        return (
            f"StaticBearer(provider={self.provider.name!r}, token_env={self.provider.token_env!r})"
        )


class Runtime:
    """What connections share. Thread-safe; close it when done."""

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx2.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        environ: dict[str, str] | None = None,
        token_store: Any = None,
        key_file: str | None = None,
        cache: RowCache | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.environ = dict(os.environ if environ is None else environ)
        self.http = HttpClient(transport=transport, sleep=sleep, clock=clock)
        self.cache = cache if cache is not None else RowCache(config.settings.cache_max_bytes)
        self._token_store = token_store
        self._key_file = key_file
        self._creds: dict[str, Credentials] = {}
        self._builders: dict[tuple[str, tuple[int, ...] | None, bool], RowBuilder] = {}
        self._decoders: dict[tuple[str, tuple[int, ...] | None, bool], PageDecoder | None] = {}
        # REMOTETABLES_FAST_PATH=off: every page the general way (the tests run both ways)
        self.fast_path = fast_path_enabled(self.environ)
        self.prefetch = self.fast_path  # one page ahead once a scan asks for page 2 ...
        # ... when the last page waited at least this long for its answer (wall time less the
        # fetching thread's CPU time). A wait shorter than the interpreter's switch interval
        # is not worth overlapping: the thread fetching ahead would wait about as long for
        # the GIL while SQLite reads (on a loopback API fetching ahead is measurably slower)
        self.prefetch_min_wait = sys.getswitchinterval()
        self._lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self.oauth: OAuthService | None = None  # made on first use

    # ------------------------------------------------------------ lookups

    def table(self, name: str) -> TableSpec:
        return self.config.table(name)

    def row_builder(
        self, spec: TableSpec, used: Sequence[int] | None = None, *, carry: bool = False
    ) -> RowBuilder:
        """The table's compiled row builder (for ``used`` columns only, when given; ``carry``:
        each tuple ends with its JSON item, see :class:`~remotetables.rows.RowBuilder`)."""
        key = (spec.name, None if used is None else tuple(used), carry)
        builder = self._builders.get(key)
        if builder is None:
            builder = RowBuilder(
                spec.name,
                [(c.name, c.type, c.path, c.on_error == "null") for c in spec.columns],
                used,
                carry=carry,
            )
            self._builders[key] = builder
        return builder

    def page_decoder(
        self, spec: TableSpec, used: Sequence[int] | None, *, distinct: bool = False
    ) -> PageDecoder | None:
        """The table's fast page decoder for ``used`` columns (None: all), if it has one;
        ``distinct``: see :func:`~remotetables.decoders.page_decoder`."""
        if not self.fast_path:
            return None
        key = (spec.name, None if used is None else tuple(used), distinct)
        if key not in self._decoders:
            self._decoders[key] = page_decoder(spec, used, distinct)
        return self._decoders[key]

    def provider(self, name: str) -> ProviderConfig:
        try:
            return self.config.providers[name]
        except KeyError:
            raise UnknownTableError(f"unknown provider {name!r}") from None

    def tables_sharing_origin(self, spec: TableSpec) -> tuple[str, ...]:
        """The tables whose rows a write to ``spec`` may change: every table on the same API
        origin (another table over the same resource, a filtered view of it, or a listing that
        the API's own rules update: linked records, business rules, counters)."""
        return tuple(t.name for t in self.config.tables.values() if t.origin == spec.origin)

    def after_write(self, spec: TableSpec) -> None:
        """Drop every user's cached rows that a write to ``spec`` may have made stale, and keep
        scans that started before it from storing theirs."""
        self.cache.invalidate(self.tables_sharing_origin(spec))

    def allowed_origins(self, provider: str) -> frozenset[str]:
        if provider == "__none__":
            return frozenset(
                t.origin for t in self.config.tables.values() if t.provider == provider
            )
        return self.config.allowed_origins(provider)

    def retry_policy(self, provider: str) -> RetryPolicy:
        if provider == "__none__":
            return RetryPolicy()
        p = self.provider(provider)
        return RetryPolicy(
            max_retries=p.max_retries,
            max_retry_wait=p.max_retry_wait,
            connect_timeout=p.connect_timeout,
            read_timeout=p.read_timeout,
            request_timeout=p.request_timeout,
            max_response_bytes=p.max_response_bytes,
        )

    def extra_headers(self, provider: str) -> list[tuple[str, str]]:
        if provider == "__none__":
            return []
        return list(self.provider(provider).headers)

    def credentials(self, provider: str) -> Credentials:
        creds = self._creds.get(provider)
        if creds is not None:
            return creds
        with self._lock:
            creds = self._creds.get(provider)
            if creds is None:
                creds = self._make_credentials(provider)
                self._creds[provider] = creds
        return creds

    def _make_credentials(self, provider: str) -> Credentials:
        if provider == "__none__":
            return NoAuth()
        p = self.provider(provider)
        if p.auth == "none":
            return NoAuth()
        if p.auth == "bearer":
            return StaticBearer(p, self.environ, self.allowed_origins(provider), self.config.path)
        return self.oauth_service().credentials(p)

    def oauth_service(self) -> OAuthService:
        """The OAuth machinery (token store, clients, single-flight refresh), made on first use."""
        with self._lock:
            if self.oauth is None:
                from remotetables.auth.service import OAuthService

                self.oauth = OAuthService(
                    self, token_store=self._token_store, key_file=self._key_file
                )
            return self.oauth

    def protected_files(self) -> list[Path]:
        """The files SQL must never reach: the token store's (when it is a file) and the key
        file, as configured and at their default places (see sqlguard.py)."""
        from remotetables.auth.store.factory import default_paths, is_postgres_url

        settings = self.config.settings
        default_store, default_key = default_paths(self.environ)
        files = [default_store, default_key]
        for store in (self._token_store, self.oauth._store if self.oauth is not None else None):
            path = getattr(store, "path", None)
            if isinstance(path, str | os.PathLike):
                files.append(Path(path))
        if settings.token_store and not is_postgres_url(settings.token_store):
            files.append(Path(os.path.expanduser(settings.token_store)))
        for key in (self._key_file, settings.key_file, self.environ.get("REMOTETABLES_KEY_FILE")):
            if key:
                files.append(Path(os.path.expanduser(key)))
        return files

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=16, thread_name_prefix="remotetables-page"
                )
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.oauth is not None:
            self.oauth.close()
        self.http.close()


class Session:
    """One connection's state: the session user, consent, last statement's statistics."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        user: str | None = None,
        consent: Any = None,
        progress: Callable[[StatementStats], None] | None = None,
        lock_user: bool = False,
        writes_in_transaction: bool | None = None,
    ) -> None:
        self.runtime = runtime
        self.user = user
        # locked: SQL (set_user()) cannot change the user, nor reach other files (sqlguard.py);
        # the host program still can, through Connection.set_user()
        self.lock_user = lock_user
        self.consent = consent
        self.progress = progress
        # a remote write inside an open transaction (which ROLLBACK cannot undo): refused
        # unless the config's settings.writes_in_transaction or this switch allows it
        self.writes_in_transaction = (
            runtime.config.settings.writes_in_transaction
            if writes_in_transaction is None
            else bool(writes_in_transaction)
        )
        # what the statement being run is (set by the exec trace, dbapi.install)
        self.statement_writes = False  # it may change the database (its scans skip the cache)
        self.statement_returning = False  # an INSERT ... RETURNING
        # a web app's session id: binds consent started by this connection to that browser
        self.web_session: str | None = None
        self.stats = StatementStats()
        self.last_stats: StatementStats | None = None  # the last statement that read a remote table
        self._interrupt = threading.Event()
        # access tokens an application obtained itself (Superset's OAuth2): (provider, user) ->
        # token, used for that user only, never stored, never refreshed here
        self._handed: dict[tuple[str, str], str] = {}

    def set_user(self, name: str | None) -> None:
        if name is not None:
            if isinstance(name, bytes | bytearray | memoryview):
                raise NoSessionUser("set_user(): a user name must be text, not a BLOB")
            name = str(name).strip()
            if not name:
                raise NoSessionUser("set_user() needs a non-empty user name (or NULL to clear it)")
            # printable by Unicode category: no controls (C0, DEL, C1), no format characters
            # (zero-width space and joiners, bidi overrides), no separators but the space
            if len(name) > 256 or not name.isprintable():
                raise NoSessionUser(
                    "set_user(): a user name must be printable (no control, format or "
                    "zero-width characters) and at most 256 characters"
                )
        self.user = name

    def set_user_from_sql(self, name: str | None) -> None:
        """``SELECT set_user(name)``: refused when the session is locked to its user."""
        if self.lock_user:
            who = f"user {self.user!r}" if self.user else "no user"
            raise NotAuthorized(
                f"set_user(): this connection is locked to {who}; SQL cannot change whose "
                "token and rows it uses (the program that opened it chose the user)"
            )
        self.set_user(name)

    def require_user(self, provider: str) -> str:
        if not self.user and self.lock_user:
            raise NoSessionUser(
                f"provider {provider} uses personal integration, and this connection is locked "
                "with no user: the program that opened it must set one (Connection.set_user)"
            )
        if not self.user:
            raise NoSessionUser(
                f"provider {provider} uses personal integration: say who you are first with "
                "SELECT set_user('name') (in the shell: .user NAME; in Python: "
                "connect(..., user='name'))"
            )
        return self.user

    def hand_token(self, provider: str, user: str, token: str) -> None:
        """Use ``token`` for ``user``'s requests to ``provider`` on this connection (and never
        for another user): an access token the application obtained and refreshes itself."""
        self._handed[(provider, user)] = token

    def handed_token(self, provider: str, user: str) -> str | None:
        return self._handed.get((provider, user))

    def handed_principal(self, provider: str, user: str) -> str | None:
        """The cache principal of ``user``'s handed-in token for ``provider`` (None: none):
        ``user:<name>#handed:<tag>``, the tag a keyed hash of the token, so that rows fetched
        with one token never answer a query made with another (a stale or wrong token must
        fail, not read what the store's token fetched) and the token cannot be guessed from it.
        """
        token = self._handed.get((provider, user))
        if token is None:
            return None
        tag = hmac.new(_HANDED_KEY, f"{provider}\0{token}".encode(), hashlib.sha256)
        return f"user:{user}#handed:{tag.hexdigest()[:24]}"

    def handed_principals(self) -> set[str]:
        """The cache principals of the current user's handed-in tokens."""
        out = set()
        for provider, user in self._handed:
            if user == self.user:
                principal = self.handed_principal(provider, user)
                if principal is not None:
                    out.add(principal)
        return out

    def new_statement(self, *, writes: bool = False, returning: bool = False) -> None:
        self.stats = StatementStats()
        self.statement_writes = writes
        self.statement_returning = returning
        self._interrupt.clear()

    def report_progress(self) -> None:
        if self.progress is not None:
            self.progress(self.stats)

    def interrupt(self) -> None:
        self._interrupt.set()

    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def __repr__(self) -> str:
        locked = ", locked" if self.lock_user else ""
        return f"Session(user={self.user!r}{locked})"
