"""The one pooled HTTP client: retries, Retry-After, deadlines, origin checks, error mapping.

This module is the boundary where httpx2's exceptions become remotetables errors (chained with
``from exc``). Every error names the table, the provider and a redacted URL, never a token.
"""

from __future__ import annotations

import http.cookiejar
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import orjson

from remotetables.config import origin_of
from remotetables.errors import (
    RateLimited,
    RemoteError,
    RemoteProtocolError,
    TransportError,
    redact_url,
)
from remotetables.http.hops import (
    EXTRA_HEADERS,
    SECRET_HEADER,
    SECRET_PARAM,
    strip_off_origin_headers,
    transport_allowed,
)
from remotetables.http.limits import (
    MAX_RESPONSE_BYTES,
    ResponseTooLarge,
    deadline,
    deadline_passed,
    deadline_transport,
    read_limited,
)
from remotetables.http.ratelimit import (
    RateLimits,
    describe_reset,
    error_json,
    is_rate_limit,
    limit_wait,
    newer,
    parse_retry_after,
    read_budget,
)
from remotetables.http.response import Counters, JsonResponse, loads_json
from remotetables.http.text import describe_transport, error_reason

__all__ = [
    "SECRET_HEADER",
    "SECRET_PARAM",
    "Counters",
    "HttpClient",
    "JsonResponse",
    "RequestContext",
    "RetryPolicy",
    "check_url_allowed",
]

log = logging.getLogger("remotetables.http")
E = TypeVar("E", bound=RemoteError)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RequestContext:
    """Who and what a request is for; goes into error messages (never a secret)."""

    table: str | None = None
    provider: str | None = None
    user: str | None = None

    def error(
        self,
        cls: type[E],
        message: str,
        *,
        url: str,
        status_code: int | None = None,
        retryable: bool = False,
    ) -> E:
        """``cls`` with this context's table, provider and user; ``message`` after the prefix."""
        prefix = self.prefix()
        return cls(
            f"{prefix}: {message}" if prefix else message,
            status_code=status_code,
            url=url,
            table=self.table,
            provider=self.provider,
            user=self.user,
            retryable=retryable,
        )

    def prefix(self) -> str:
        bits = []
        if self.table:
            bits.append(f"table {self.table}")
        if self.provider and self.provider != "__none__":  # "__none__": a table without a provider
            bits.append(f"provider {self.provider}")
        if self.user:
            bits.append(f"user {self.user}")
        return ", ".join(bits)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_wait: float = 60.0  # cap on a Retry-After the server asks for
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    request_timeout: float = 120.0  # each attempt: connect, headers and body (redirects too)
    max_response_bytes: int = MAX_RESPONSE_BYTES  # decoded size of one answer


def check_url_allowed(url: str, ctx: RequestContext) -> None:
    """https everywhere; plain http only to loopback addresses."""
    parts = urlsplit(url)
    if transport_allowed(parts.scheme, parts.hostname):
        return
    raise ctx.error(
        RemoteError,
        f"refusing {parts.scheme or 'a relative'} URL {redact_url(url)}: "
        "only https (or http to a loopback address) is allowed",
        url=url,
    )


class HttpClient:
    """One pooled ``httpx2.Client`` shared by every table, user and thread of a runtime.

    Per-user auth is passed per request (an ``httpx2.Auth``), never stored on the client.
    """

    def __init__(
        self,
        *,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        max_connections: int = 32,
        user_agent: str = "remotetables",
        poll_interval: float = 0.25,
    ) -> None:
        common: dict[str, Any] = {
            # only the encodings http/limits.py decodes in bounded steps
            "headers": {
                "User-Agent": user_agent,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            },
            "trust_env": False,
            # One client serves every user: a cookie set for one user must never be sent
            # with another user's request (session cookies can authenticate on their own).
            "cookies": _no_cookies(),
        }
        # Without an injected transport, every socket operation obeys the deadline a call
        # sets (http/limits.py): a server trickling its headers cannot outlast request_timeout.
        tls = None if transport is not None else httpx2.create_ssl_context(trust_env=False)
        self._client = httpx2.Client(
            transport=transport
            or deadline_transport(max_connections=max_connections, ssl_context=tls),
            follow_redirects=True,  # httpx strips Authorization on cross-origin hops ...
            event_hooks={"request": [strip_off_origin_headers]},  # ... this the other ones
            max_redirects=5,
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            **common,
        )
        # Token endpoint calls get their own small pool: a refresh runs while an API
        # connection is held (httpx keeps the 401 answer open while the auth flow runs),
        # so sharing the API pool could starve the refresh when every connection is busy.
        self._oauth_client = httpx2.Client(
            transport=transport or deadline_transport(max_connections=8, ssl_context=tls),
            follow_redirects=False,
            limits=httpx2.Limits(max_connections=8, max_keepalive_connections=8),
            **common,
        )
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.monotonic = monotonic
        self.poll_interval = poll_interval
        self.limits = RateLimits()

    @property
    def raw(self) -> httpx2.Client:
        """A client for the OAuth code (token endpoint calls), with its own connection pool."""
        return self._oauth_client

    @property
    def api_client(self) -> httpx2.Client:
        """The pooled client for API requests."""
        return self._client

    def close(self) -> None:
        self._client.close()
        self._oauth_client.close()

    def request_json(
        self,
        method: str,
        url: str,
        *,
        ctx: RequestContext,
        policy: RetryPolicy,
        auth: httpx2.Auth | None = None,
        headers: Sequence[tuple[str, str]] = (),
        json_body: Any = None,
        idempotent: bool = True,
        counters: Counters | None = None,
        interrupted: Callable[[], bool] | None = None,
        history: list[int | None] | None = None,
        retry_conflict: bool = False,
        decode: Callable[[bytes | bytearray], Any] | None = None,
        principal: str = "public",
        keep: bool = False,
    ) -> JsonResponse:
        """Send, retry what is safe to retry, decode JSON; raise a clear error otherwise.

        ``history`` (when given) gets each attempt's HTTP status, or None for an attempt that
        got no answer: a writer tells from it whether an earlier attempt may have been applied.
        ``retry_conflict``: after an attempt that got no answer (or a 5xx), a 409 is retried
        like a 503 (an API still carrying out the first attempt of a request with the same
        idempotency key answers 409 until it is done, then replays its answer).
        ``decode``: a fast decoder tried first on a successful body (its result is the
        response's ``fast`` and must carry the paginator's view as ``.body``); when it returns
        None the body is decoded the general way.
        ``principal`` names whose rate limit the request spends (http/ratelimit.py): a
        request never waits for another principal's budget.
        ``keep``: the answer keeps its bytes as ``content``, whichever way it was decoded (a
        page kept for revalidation is kept as it came; a keyless table's partial fast rows
        find their whole rows there).
        """
        check_url_allowed(url, ctx)
        key = (principal, origin_of(url))
        attempt = 0
        garbled = False
        unanswered = False  # an earlier attempt got no answer or a 5xx: it may be in progress
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._send_paced(
                    key,
                    interrupted,
                    lambda: self._send_once(
                        method, url, ctx, policy, auth, headers, json_body, counters
                    ),
                    url=url,
                    ctx=ctx,
                    policy=policy,
                    counters=counters,
                )
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "%s %s -> %d (%d bytes)%s",
                        method,
                        redact_url(url),
                        response.status,
                        len(response.content),
                        f" [{ctx.prefix()}]" if ctx.prefix() else "",
                    )
            except TransportError as exc:
                if history is not None:
                    history.append(None)
                unanswered = True
                if not idempotent:
                    raise
                if attempt > policy.max_retries:
                    raise _gave_up(exc, attempt) from exc
                failure: RemoteError = exc
            else:
                if history is not None:
                    history.append(response.status)
                retry_status = response.status in RETRY_STATUSES or (
                    retry_conflict and unanswered and response.status == 409
                )
                unanswered = unanswered or response.status >= 500
                if response.status < 400 and idempotent and not garbled:
                    # a garbled body (not JSON, wrong type) is retried once: it may be a glitch
                    try:
                        return self._finish(response, ctx, auth, decode, keep)
                    except RemoteProtocolError as exc:
                        if attempt > policy.max_retries:
                            raise
                        garbled = True
                        failure = exc
                elif response.status >= 400 and is_rate_limit(
                    response.status,
                    response.headers,
                    self.clock(),
                    error_json(response.status, response.content),
                ):
                    # not processed: safe to send again, whatever the method
                    retry_after = self._rate_limit_wait(response, ctx, auth, policy)
                    failure = self._error_for(response, ctx, auth)
                    if attempt > policy.max_retries:
                        raise _gave_up(failure, attempt)
                elif (
                    response.status < 400
                    or not retry_status
                    or (not idempotent and response.status != 429)
                ):
                    return self._finish(response, ctx, auth)
                elif attempt > policy.max_retries:
                    raise _gave_up(self._error_for(response, ctx, auth), attempt)
                else:
                    retry_after = parse_retry_after(
                        response.headers.get("retry-after"), self.clock()
                    )
                    failure = self._error_for(response, ctx, auth)
            if counters is not None:
                counters.add(retries=1)
            delay = self.retry_delay(policy, attempt, retry_after)
            log.info("%s; retry %d in %.1f s", failure, attempt, delay)
            self._wait(delay, interrupted, failure)

    def _send_paced(
        self,
        key: tuple[str, str],
        interrupted: Callable[[], bool] | None,
        send: Callable[[], _Raw],
        *,
        url: str,
        ctx: RequestContext,
        policy: RetryPolicy,
        counters: Counters | None,
    ) -> _Raw:
        """``send()`` within the principal's rate limit (http/ratelimit.py): one at a time
        while the budget is low, after the reset when it is spent, or a :class:`RateLimited`
        error without sending when the reset is further than ``max_retry_wait``."""
        with self.limits.turn(key, self.poll_interval, interrupted) as ours:
            if not ours:
                raise ctx.error(
                    RemoteError,
                    "query interrupted while waiting for the API's "
                    "rate limit (requests go one at a time)",
                    url=url,
                )
            now = self.clock()
            wait = self.limits.reserve(key, now)
            if wait > policy.max_retry_wait:
                whose = "user" if key[0].startswith("user:") else "token"
                raise ctx.error(
                    RateLimited,
                    f"not sending {redact_url(url)}: the API's rate limit for this {whose} is "
                    f"spent until {describe_reset(now + wait, now)}, longer than "
                    f"max_retry_wait ({policy.max_retry_wait:g} s); try again then",
                    url=url,
                )
            if wait > 0:
                self._wait(wait, interrupted, ctx.error(RateLimited, "rate limited", url=url))
            raw = send()
            budget = read_budget(raw.headers, self.clock())
            self.limits.note(key, budget, self.clock())
            if budget is not None and counters is not None:
                with counters.lock:
                    counters.budget = newer(counters.budget, budget)
            return raw

    def _rate_limit_wait(
        self, raw: _Raw, ctx: RequestContext, auth: httpx2.Auth | None, policy: RetryPolicy
    ) -> float | None:
        """Seconds to wait before sending a rate-limited request again (None: back off as
        usual); a :class:`RateLimited` error when that is longer than ``max_retry_wait``."""
        now = self.clock()
        retry_after = parse_retry_after(raw.headers.get("retry-after"), now)
        wait = limit_wait(raw.headers, now, retry_after)
        if wait is not None and wait > policy.max_retry_wait:
            raise ctx.error(
                RateLimited,
                f"{raw.method} {redact_url(raw.url)} answered HTTP {raw.status}{error_reason(raw.content, raw.headers)} "
                f"(rate limited until {describe_reset(now + wait, now)}, longer than "
                f"max_retry_wait ({policy.max_retry_wait:g} s); try again then)",
                status_code=raw.status,
                url=raw.url,
            )
        return wait

    def retry_delay(self, policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number ``attempt`` (1-based).

        The server's ``Retry-After`` wins, capped at ``max_retry_wait``; otherwise exponential
        backoff with "equal jitter": uniform in [cap/2, cap] with cap = base * 2^(attempt-1)
        (bounded by ``max_delay``), so waits grow while clients stay spread out.
        """
        if retry_after is not None:
            return max(0.0, min(retry_after, policy.max_retry_wait))
        cap = min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))
        return cap / 2 + self.rng() * cap / 2

    def _wait(
        self, delay: float, interrupted: Callable[[], bool] | None, failure: RemoteError
    ) -> None:
        """Sleep ``delay`` seconds in slices of at most ``poll_interval``; stop if interrupted.

        The time left is counted from the slices slept, not from the clock, so an injected
        ``sleep`` that does not move the injected ``clock`` still ends.
        """
        left = delay
        while True:
            if interrupted is not None and interrupted():
                raise type(failure)(
                    f"{failure} (query interrupted while waiting {delay:g} s to retry)",
                    status_code=failure.status_code,
                    url=failure.url,
                    table=failure.table,
                    provider=failure.provider,
                    user=failure.user,
                    retryable=False,
                ) from failure
            if left <= 0:
                return
            step = min(left, self.poll_interval)
            self.sleep(step)
            left -= step

    def _send_once(
        self,
        method: str,
        url: str,
        ctx: RequestContext,
        policy: RetryPolicy,
        auth: httpx2.Auth | None,
        headers: Sequence[tuple[str, str]],
        json_body: Any,
        counters: Counters | None,
    ) -> _Raw:
        timeout = httpx2.Timeout(policy.read_timeout, connect=policy.connect_timeout)
        try:
            with deadline(policy.request_timeout):
                try:
                    content, response = self._exchange(
                        method, url, policy, auth, headers, json_body, timeout
                    )
                except httpx2.TimeoutException as exc:
                    if not deadline_passed():
                        what = f"timed out ({type(exc).__name__})"
                        raise self._transport_error(what, url, ctx) from exc
                    raise self._too_slow(method, url, ctx, policy) from exc
        except ResponseTooLarge as exc:
            raise self._too_large(method, url, ctx, policy, exc) from None
        except httpx2.DecodingError as exc:
            raise ctx.error(
                RemoteProtocolError,
                f"{method} {redact_url(url)} answered with a body that does not decode as its "
                f"Content-Encoding says ({exc})",
                url=url,
            ) from exc
        except httpx2.TransportError as exc:
            raise self._transport_error(describe_transport(exc), url, ctx) from exc
        except httpx2.HTTPError as exc:  # e.g. too many redirects
            raise ctx.error(
                RemoteError, f"{method} {redact_url(url)} failed: {type(exc).__name__}", url=url
            ) from exc
        except (httpx2.InvalidURL, httpx2.CookieConflict, httpx2.StreamError) as exc:
            # a redirect to a URL httpx2 cannot use, and the like: the server's doing
            raise ctx.error(
                RemoteProtocolError,
                f"{method} {redact_url(url)} failed: the server's answer could not be used "
                f"({type(exc).__name__})",
                url=url,
            ) from exc
        if counters is not None:
            counters.add(requests=1, nbytes=len(content))
        return _Raw(response.status_code, response.headers, str(response.url), content, method)

    def _exchange(
        self,
        method: str,
        url: str,
        policy: RetryPolicy,
        auth: httpx2.Auth | None,
        headers: Sequence[tuple[str, str]],
        json_body: Any,
        timeout: httpx2.Timeout,
    ) -> tuple[bytearray, httpx2.Response]:
        """One attempt, redirects included, under the thread's deadline."""
        request = self._client.build_request(
            method, url, headers=list(headers), json=json_body, timeout=timeout
        )
        if headers:  # redirects keep the extensions: see strip_off_origin_headers
            request.extensions = {
                **request.extensions,
                EXTRA_HEADERS: (tuple(name for name, _ in headers), origin_of(url)),
            }
        response = self._client.send(request, auth=auth, stream=True)
        try:
            content = read_limited(response, policy.max_response_bytes)
            if deadline_passed():  # an injected transport does not see the deadline
                raise httpx2.ReadTimeout("the request's deadline has passed", request=request)
        finally:
            response.close()
        return content, response

    def _too_slow(
        self, method: str, url: str, ctx: RequestContext, policy: RetryPolicy
    ) -> TransportError:
        return ctx.error(
            TransportError,
            f"{method} {redact_url(url)} took longer than {policy.request_timeout:g} s "
            "(request_timeout: connect, headers and body); the server is too slow",
            url=url,
            retryable=True,
        )

    def _too_large(
        self,
        method: str,
        url: str,
        ctx: RequestContext,
        policy: RetryPolicy,
        exc: ResponseTooLarge,
    ) -> RemoteProtocolError:
        said = f" (it announced {exc.declared} bytes)" if exc.declared is not None else ""
        return ctx.error(
            RemoteProtocolError,
            f"{method} {redact_url(url)}: the answer is larger than max_response_bytes = "
            f"{policy.max_response_bytes} bytes decoded{said}; not reading it (raise "
            "max_response_bytes for this provider, or ask for smaller pages)",
            url=url,
        )

    def _transport_error(self, what: str, url: str, ctx: RequestContext) -> TransportError:
        return ctx.error(
            TransportError, f"no answer from {redact_url(url)}: {what}", url=url, retryable=True
        )

    def _finish(
        self,
        raw: _Raw,
        ctx: RequestContext,
        auth: httpx2.Auth | None,
        decode: Callable[[bytes | bytearray], Any] | None = None,
        keep: bool = False,
    ) -> JsonResponse:
        if raw.status >= 400:
            raise self._error_for(raw, ctx, auth)
        if raw.status == 204 or not raw.content or raw.content.isspace():  # strip() would copy
            return JsonResponse(None, raw.headers, raw.url, raw.status, len(raw.content))
        ctype = raw.headers.get("content-type", "").lower()
        if ctype and "json" not in ctype and "javascript" not in ctype:
            raise ctx.error(
                RemoteProtocolError,
                f"{raw.method} {redact_url(raw.url)} answered {raw.status} with "
                f"{ctype.split(';')[0]}, not JSON",
                status_code=raw.status,
                url=raw.url,
            )
        content = bytes(raw.content) if keep else None
        if decode is not None:
            fast = decode(raw.content)
            if fast is not None:
                return JsonResponse(
                    fast.body, raw.headers, raw.url, raw.status, len(raw.content), fast, content
                )
        try:
            body = loads_json(raw.content)
        except orjson.JSONDecodeError as exc:
            what = f"{exc.msg} at byte {exc.pos}"
            try:
                bytes(raw.content).decode()
            except UnicodeDecodeError as bad:  # orjson names neither the byte nor the cause
                what = f"text that is not UTF-8 at byte {bad.start}"
            raise ctx.error(
                RemoteProtocolError,
                f"{raw.method} {redact_url(raw.url)} answered {raw.status} with a body "
                f"that is not valid JSON ({len(raw.content)} bytes; {what})",
                status_code=raw.status,
                url=raw.url,
            ) from exc
        return JsonResponse(body, raw.headers, raw.url, raw.status, len(raw.content), None, content)

    def _error_for(self, raw: _Raw, ctx: RequestContext, auth: httpx2.Auth | None) -> RemoteError:
        reason = error_reason(raw.content, raw.headers)
        hint = ""
        if raw.status == 401:
            hint = f" ({_unauthorized_hint(auth, ctx)})"
        elif raw.status == 403 and is_rate_limit(
            403, raw.headers, self.clock(), error_json(raw.status, raw.content)
        ):
            ra = raw.headers.get("retry-after")
            hint = f" (rate limited; retry after {ra})" if ra else " (rate limited)"
        elif raw.status == 403:
            hint = " (the user is not allowed to do this, or the token lacks a scope)"
        elif raw.status == 429:
            ra = raw.headers.get("retry-after")
            hint = f" (rate limited; retry after {ra})" if ra else " (rate limited)"
        return ctx.error(
            RemoteError,
            f"{raw.method} {redact_url(raw.url)} answered HTTP {raw.status}{reason}{hint}",
            status_code=raw.status,
            url=raw.url,
            retryable=raw.status in RETRY_STATUSES,
        )


def _unauthorized_hint(auth: httpx2.Auth | None, ctx: RequestContext) -> str:
    """What a 401 means for this request's credentials. The auth says which token it sent
    (auth/flow.py's ``BearerAuth.unauthorized_hint``: a refreshed OAuth token, a static one)."""
    if auth is None:
        if ctx.provider and ctx.provider != "__none__":
            return f'no token was sent: provider {ctx.provider} has auth = "none"'
        return "no token was sent: the table has no provider"
    hint = getattr(auth, "unauthorized_hint", None)
    return hint if isinstance(hint, str) else "the credentials were refused"


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that refuses every cookie."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _gave_up(exc: RemoteError, attempts: int) -> RemoteError:
    """The last failure, said to be final: same type and context, attempts counted (a single
    attempt, with retries off, is the failure as it is)."""
    return type(exc)(
        f"{exc} (gave up after {attempts} attempts)" if attempts > 1 else str(exc),
        status_code=exc.status_code,
        url=exc.url,
        table=exc.table,
        provider=exc.provider,
        user=exc.user,
        retryable=exc.retryable,
    )


@dataclass
class _Raw:
    status: int
    headers: httpx2.Headers
    url: str
    content: bytes | bytearray  # bytearray: read in place, never copied
    method: str
