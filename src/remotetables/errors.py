"""One exception tree for remotetables, with PEP 249 names at the top.

::

    Error                                  (PEP 249 Error)
    ├── InterfaceError                     misuse of the DB-API objects (closed cursor ...)
    └── DatabaseError
        ├── DataError
        │   ├── CoercionError              a JSON value does not fit the declared SQL type
        │   └── ValueNotTaken              the API accepted a write but answered another value
        ├── OperationalError
        │   ├── RemoteError                the API answered with an error status
        │   │   ├── RemoteProtocolError    ... or with a body that is not what was promised
        │   │   └── RateLimited            ... or said its rate limit is spent (until reset_at)
        │   ├── TransportError             connection refused, reset, timeout
        │   ├── PaginationError            a next link loops or pages never end
        │   ├── AuthError                  anything about tokens
        │   │   ├── ConsentRequired        no usable token: the user must consent (carries the URL)
        │   │   ├── ConsentDenied          the user (or the server) said no
        │   │   ├── ConsentFailed          the consent transaction failed (bad state, timeout ...)
        │   │   │   └── AccountMismatch    someone else's account signed in: the grant is not stored
        │   │   ├── ProviderError          the authorization server refused us (invalid_client ...)
        │   │   └── ProviderUnavailable    the authorization server is down or answering garbage
        │   └── TokenStoreError            the token store cannot be read or written
        │       ├── CorruptTokenError      a stored ciphertext does not decrypt (tampered, wrong key)
        │       ├── KeyMismatchError       the store was created with another encryption key
        │       └── LeaseLostError         another worker took over a refresh lease we held
        ├── IntegrityError
        ├── InternalError
        ├── ProgrammingError
        │   ├── ConfigError                bad configuration (names the file and key)
        │   ├── UnknownTableError          a remote table that the config does not define
        │   ├── MissingParameterError      a required API parameter is not in the WHERE clause
        │   ├── NoSessionUser              a personal table queried before set_user()
        │   └── NotAuthorized              SQL this session may not run (set_user when locked,
        │                                  ATTACH of the token store ...)
        └── NotSupportedError
            └── ReadOnlyError              a write to a table that allows none

Errors carry context (table, provider, user, status, URL) and never a secret: URLs are
redacted with :func:`redact_url` before they are stored on an exception, and every message is
cleaned of each secret value the process knows (:func:`register_secret`: access and refresh
tokens, static keys, client secrets, codes, verifiers), whatever path brought it there (an
API echoing the token in its error body, say).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "AccountMismatch",
    "AuthError",
    "CoercionError",
    "ConfigError",
    "ConsentDenied",
    "ConsentFailed",
    "ConsentRequired",
    "CorruptTokenError",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "KeyMismatchError",
    "LeaseLostError",
    "MissingParameterError",
    "NoSessionUser",
    "NotAuthorized",
    "NotSupportedError",
    "OperationalError",
    "PaginationError",
    "ProgrammingError",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "ReadOnlyError",
    "RemoteError",
    "RemoteProtocolError",
    "TokenStoreError",
    "TransportError",
    "UnknownKeyError",
    "UnknownTableError",
    "ValueNotTaken",
    "Warning",
    "redact_secrets",
    "redact_url",
    "register_secret",
]

# ---------------------------------------------------------------- known secret values

_MIN_SECRET = 6  # shorter values are not redacted (they would blank ordinary words)
_MAX_SECRETS = 4096  # the most recently seen secrets are kept; older ones are seen again on use
_secrets: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` as a secret: no remotetables error message will contain it
    (nor its URL-encoded form). Tokens, keys and client secrets are registered where the
    runtime gets them."""
    if not isinstance(value, str) or len(value) < _MIN_SECRET:
        return
    forms = {value, quote_plus(value), quote(value, safe="")}
    with _secrets_lock:
        for form in forms:
            _secrets[form] = None
            _secrets.move_to_end(form)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)


def redact_secrets(text: str) -> str:
    """``text`` with every registered secret value replaced by ``***`` (longest first).

    >>> register_secret("s3cr3t-t0ken")
    >>> redact_secrets('{"message": "bad key s3cr3t-t0ken"}')
    '{"message": "bad key ***"}'
    """
    if not _secrets or not text:
        return text
    with _secrets_lock:
        found = [s for s in _secrets if s in text]
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _clean_args(args: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(redact_secrets(a) if isinstance(a, str) else a for a in args)


class Warning(Exception):
    """PEP 249 ``Warning``."""


class Error(Exception):
    """Base of every exception remotetables raises (PEP 249 ``Error``).

    Its message never holds a registered secret (see :func:`register_secret`).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*_clean_args(args))


class InterfaceError(Error):
    """The DB-API objects were used wrongly (closed cursor, bad parameter count ...)."""


class DatabaseError(Error):
    """An error related to the database."""


class DataError(DatabaseError):
    """A value could not be processed."""


class OperationalError(DatabaseError):
    """An error in the database's operation, not the programmer's fault: network, auth ..."""


class IntegrityError(DatabaseError):
    """A constraint failed."""


class InternalError(DatabaseError):
    """The database hit an internal error."""


class ProgrammingError(DatabaseError):
    """A programming error: bad SQL, unknown table, bad configuration."""


class NotSupportedError(DatabaseError):
    """An operation the database or the remote table does not support."""


# ---------------------------------------------------------------- domain errors


class CoercionError(DataError):
    """A JSON value could not be converted to the column's declared SQL type."""

    def __init__(self, message: str, *, table: str, column: str, row: int) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.row = row


class ValueNotTaken(DataError):
    """The API accepted a written row (2xx) but its answer holds another value for a column
    than the one sent: it ignored the field (a read-only or access-controlled field) or changed
    it. The row counts as applied (``applied``); ``row`` names it, ``column`` the column."""

    def __init__(self, message: str, *, table: str, column: str, row: str) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.row = row


class RemoteError(OperationalError):
    """The remote API answered with an error status.

    ``url`` is always redacted; ``status_code`` is ``None`` when no HTTP answer arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        url: str | None = None,
        table: str | None = None,
        provider: str | None = None,
        user: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = redact_secrets(redact_url(url)) if url else url
        self.table = table
        self.provider = provider
        self.user = user
        self.retryable = retryable


class RemoteProtocolError(RemoteError):
    """The body was not what the table promised: not JSON, truncated, rows not where configured."""


class RateLimited(RemoteError):
    """The API's rate limit for this principal is spent for longer than ``max_retry_wait``
    (a 429, a 403 with ``Retry-After`` or nothing remaining); the message names the reset."""


class TransportError(RemoteError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""


class PaginationError(RemoteError):
    """Pagination went wrong: a next link that loops, or more pages than allowed."""


class AuthError(OperationalError):
    """Something about tokens: base of the OAuth errors."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        user: str | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.user = user
        self.error_code = error_code


class ConsentRequired(AuthError):
    """The user must consent before this query can run.

    ``authorization_url`` is where to send the user's browser; the web app finishes the
    transaction later by passing the redirect URL to ``remotetables.complete_consent``.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        user: str | None = None,
        authorization_url: str | None = None,
        state: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, user=user, error_code="consent_required")
        self.authorization_url = authorization_url
        # The state identifies the pending transaction; it is not a secret on its own
        # (the verifier never leaves the token store).
        self.state = state


class ConsentDenied(AuthError):
    """The user, or the authorization server, refused consent (``access_denied``)."""


class ConsentFailed(AuthError):
    """The consent transaction failed: wrong or reused state, issuer mismatch, timeout."""


class AccountMismatch(ConsentFailed):
    """The account that signed in at the provider is not the one the config expects for this
    user (``providers.X.account``): the grant was not stored.

    ``account`` is the account that signed in, ``expected`` the one the config asked for.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        user: str | None = None,
        account: str | None = None,
        expected: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, user=user, error_code="account_mismatch")
        self.account = account
        self.expected = expected


class ProviderError(AuthError):
    """The authorization server refused the client itself (invalid_client ...): a config problem."""


class ProviderUnavailable(AuthError):
    """The authorization server is unreachable or answered garbage; stored tokens are kept."""


class TokenStoreError(OperationalError):
    """The token store could not be opened, read or written."""


class CorruptTokenError(TokenStoreError):
    """A stored ciphertext failed to decrypt: tampered, moved to another row, or unknown key."""


class UnknownKeyError(CorruptTokenError):
    """A ciphertext names a key id that is not configured here.

    When the row says the same key wrote it, the wrong key is configured: the stores raise this
    and change nothing. Otherwise the blob was tampered with and the row needs consent.
    """

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class KeyMismatchError(TokenStoreError):
    """The store's metadata records another key's fingerprint: nothing is written with this key."""


class LeaseLostError(TokenStoreError):
    """A refresh result could not be committed: this worker no longer holds the refresh lease."""


class ConfigError(ProgrammingError):
    """The configuration is wrong. ``file`` and ``key`` say where."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ", ".join(part for part in (file, f"key {key!r}" if key else None) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.key = key
        self.detail = redact_secrets(message)


class UnknownTableError(ProgrammingError):
    """A remote table that the configuration does not define."""


class MissingParameterError(ProgrammingError):
    """A query on a table whose API needs a parameter that the WHERE clause does not give."""


class NoSessionUser(ProgrammingError):
    """A personal-integration table was queried before ``set_user()``."""


class NotAuthorized(ProgrammingError):
    """SQL or a shell command this session may not run: ``set_user()`` on a session locked to
    its user, ATTACH of the token store, and in a locked session ATTACH, extension loading and
    the PRAGMAs that reach other files."""


class ReadOnlyError(NotSupportedError):
    """A write to a remote table, or an operation on it, that its config does not allow."""


_SECRET_PARAM = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|apikey|key|signature|sig|code|verifier|auth|session|credential)",
    re.IGNORECASE,
)


_EXTRA_SECRET_PARAMS: set[str] = set()  # names configured to carry a token (token_param)


def register_secret_param(name: str) -> None:
    """Redact ``name``'s values too (a provider sends its key in that query parameter)."""
    _EXTRA_SECRET_PARAMS.add(name.lower())


def _is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.search(name)) or name.lower() in _EXTRA_SECRET_PARAMS


def redact_url(url: str) -> str:
    """Return ``url`` with user info and secret-looking query values replaced by ``***``.

    >>> redact_url("https://u:p@api.example.com/x?api_key=abc&page=2")
    'https://api.example.com/x?api_key=***&page=2'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if ":" in (parts.hostname or "") and not netloc.startswith("["):
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        # written out by hand: urlencode would turn the mask into %2A%2A%2A
        query = "&".join(
            f"{quote_plus(k)}={'***' if _is_secret_param(k) else quote_plus(v)}" for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# a query pair in free text: `?name=value` or `&name=value`; the value ends where a URL would
_QUERY_PAIR = re.compile(r"(?P<lead>[?&])(?P<name>[^=&#?\s'\"<>\\]+)=(?P<value>[^&#\s'\"<>\\]*)")
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s'\"<>\\]*@")


def redact_text(text: str) -> str:
    """``text`` (a log line, an API's message) with URLs redacted as :func:`redact_url` does:
    secret-looking query values become ``***`` (absolute or relative URLs) and user info goes.

    >>> redact_text("see <https://u:p@h.example/x?page=2&token=abc>; rel=next, /cb?code=xyz")
    'see <https://h.example/x?page=2&token=***>; rel=next, /cb?code=***'
    """

    def pair(m: re.Match[str]) -> str:
        if m["value"] and _is_secret_param(unquote_plus(m["name"])):
            return f"{m['lead']}{m['name']}=***"
        return m[0]

    return _QUERY_PAIR.sub(pair, _USERINFO.sub(r"\g<scheme>", text))
