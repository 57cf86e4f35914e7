"""Single-flight token refresh across threads, processes and hosts (token-store-design.md §3).

A :class:`TokenManager` hands out access tokens for a :class:`TokenKey`. An access token is kept
in memory (per key, per process) until it is due for refresh, so the store is only on the
refresh path: a store outage or lock does not stop queries while the token works.

When the token is due, exactly one worker takes the store's lease (timed by the store's own
clock), checks right before calling the token endpoint that it still holds the lease with time
to spare and records that a refresh is in flight, calls the endpoint with **no transaction
open**, commits the new tokens, and only then returns the access token (persist-then-use).
Everyone else keeps using a token that still works, or waits and re-reads the store.

Tokens the server issued are never thrown away: if the lease was lost meanwhile they are
compared-and-set in while the stored grant is still the one refreshed from; if the store cannot
be written they are kept in memory and saved by the next call (or a background retry).

The ``refresher`` signals failures with :mod:`remotetables.errors` types:

- ``ConsentRequired`` or ``AuthError(error_code="invalid_grant")``: the grant is gone;
  the tokens are wiped (``needs_consent``) and ``ConsentRequired`` is raised.
- ``ProviderError``: a client configuration problem; tokens are kept, the error re-raised.
- ``ProviderUnavailable`` / ``TransportError``: an outage; tokens are kept, and a still
  valid access token is returned (proactive path only), else the error is re-raised.

Keep the refresher's total time well below ``lease_seconds`` (the config checks it).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from remotetables.auth.store import TokenKey, TokenRecord, TokenSet, TokenStore
from remotetables.errors import (
    AuthError,
    ConsentRequired,
    LeaseLostError,
    ProviderUnavailable,
    TokenStoreError,
    TransportError,
)

__all__ = ["Refresher", "TokenManager", "leeway_for"]

Refresher = Callable[[str], TokenSet]

_RETRY = object()  # sentinel: no lease now; wait, then read the store again
_REREAD = object()  # sentinel: the grant changed under us; read the store again at once

log = logging.getLogger("remotetables.auth")


def leeway_for(expires_at: float, issued_at: float, leeway: float) -> float:
    """How long before ``expires_at`` a token is refreshed: ``leeway``, but at most a tenth of
    the token's lifetime (a token that lives 60 s or less would otherwise never be fresh)."""
    lifetime = expires_at - issued_at
    return min(leeway, 0.1 * lifetime) if lifetime > 0 else leeway


@dataclass
class _Cached:
    access_token: str
    expires_at: float | None
    due: float | None  # refresh from then on; None: no expiry known (until a 401)


class TokenManager:
    """Gives out fresh access tokens, refreshing them single-flight through a :class:`TokenStore`.

    ``clock`` and ``sleep`` drive the waiting logic; ``rng`` the jitter. The in-process
    per-key lock waits at most ``wait_deadline`` real seconds. ``lease_seconds``: how long a
    refresh may hold the grant (by the store's clock); the holder calls the token endpoint only
    with at least ``min_lease_left`` (default half the lease) still to go. ``takeover_grace``:
    how long a successor whose token has expired waits, once it has the lease, before it replays
    the refresh token of a holder whose refresh was in flight when its lease ran out (that holder
    may still save its result, which voids the successor's lease).
    ``flush_interval``: retry saving unsaved refreshed tokens in the background this often
    (None: only on the next call).
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        leeway: float = 60.0,
        lease_seconds: float = 120.0,
        min_lease_left: float | None = None,
        wait_deadline: float = 45.0,
        takeover_grace: float = 5.0,
        owner_prefix: str | None = None,
        rng: random.Random | None = None,
        commit_attempts: int = 3,
        flush_interval: float | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._leeway = leeway
        self._lease_seconds = lease_seconds
        self._min_left = lease_seconds / 2 if min_lease_left is None else min_lease_left
        self._wait_deadline = wait_deadline
        self._grace = takeover_grace
        self._owner_prefix = owner_prefix
        self._rng = rng or random.Random()
        self._commit_attempts = max(1, commit_attempts)
        self._flush_interval = flush_interval
        self._locks: dict[TokenKey, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._cache: dict[TokenKey, _Cached] = {}
        # Refreshed tokens whose commit failed: (lease owner, tokens, version refreshed from).
        self._unsaved: dict[TokenKey, tuple[str, TokenSet, int]] = {}
        self._flushers: set[TokenKey] = set()
        self._doing: dict[TokenKey, str] = {}  # what the key's lock holder is waiting for
        self._closed = threading.Event()

    @classmethod
    def for_host(cls, store: TokenStore, host: Any) -> TokenManager:
        """The manager of a runtime (``host.clock``, ``host.sleep``, ``host.config.settings``):
        its configured ``refresh_lease``, unsaved tokens retried in the background."""
        lease = host.config.settings.refresh_lease
        return cls(
            store, clock=host.clock, sleep=host.sleep, lease_seconds=lease, flush_interval=0.25
        )

    def __repr__(self) -> str:
        return f"TokenManager(store={self._store!r}, leeway={self._leeway})"

    # -- public

    def access_token(self, key: TokenKey, refresher: Refresher) -> str:
        """A usable access token for ``key``, refreshing it single-flight if it is (nearly) expired.

        Raises ``ConsentRequired`` when there is no usable grant.
        """
        hit = self._from_memory(key)
        if hit is not None:
            return hit
        try:
            return self._obtain(key, refresher, failed=None)
        except TokenStoreError as exc:
            still = self._from_memory(key, usable=True)
            if still is None:
                raise
            log.warning(
                "provider %r, user %r: the token is due for refresh but the token store "
                "failed (%s); the current access token still works and is used meanwhile",
                key.provider,
                key.subject,
                exc,
            )
            return still

    def refresh_if_current(
        self, key: TokenKey, failed_access_token: str, refresher: Refresher
    ) -> str:
        """After a 401: refresh only if the stored token is still ``failed_access_token``.

        If another worker already replaced it, the newer stored token is returned.
        """
        self._forget_token(key, failed_access_token)
        return self._obtain(key, refresher, failed=failed_access_token)

    def save_grant(self, key: TokenKey, tokens: TokenSet, *, now: float) -> None:
        """Store a new grant (login, consent); the access token kept for ``key`` is dropped."""
        self._store.put(key, tokens, now=now)
        self.forget(key)

    def forget(self, key: TokenKey) -> TokenKey:
        """Drop the access token kept in memory for ``key`` (after login, logout, consent)."""
        with self._locks_guard:
            self._cache.pop(key, None)
        return key

    def close(self) -> None:
        """Stop background saving now (unsaved tokens stay in memory for the next call)."""
        self._closed.set()

    # -- memory

    def _from_memory(self, key: TokenKey, *, usable: bool = False) -> str | None:
        """The kept access token if it is not due yet (``usable``: if it has not expired)."""
        cached = self._cache.get(key)
        if cached is None:
            return None
        now = self._clock()
        if cached.due is None or now < cached.due:
            return cached.access_token
        if usable and cached.expires_at is not None and now < cached.expires_at:
            return cached.access_token
        return None

    def _remember(self, key: TokenKey, tokens: TokenSet, issued_at: float) -> str:
        due = None
        if tokens.expires_at is not None:
            due = tokens.expires_at - leeway_for(tokens.expires_at, issued_at, self._leeway)
        with self._locks_guard:
            self._cache[key] = _Cached(tokens.access_token, tokens.expires_at, due)
        return tokens.access_token

    def _forget_token(self, key: TokenKey, access_token: str) -> None:
        with self._locks_guard:
            cached = self._cache.get(key)
            if cached is not None and hmac.compare_digest(
                cached.access_token.encode(), access_token.encode()
            ):
                del self._cache[key]

    # -- internals

    def _lock_for(self, key: TokenKey) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _new_owner(self) -> str:
        prefix = self._owner_prefix or f"{socket.gethostname()}:{os.getpid()}"
        return f"{prefix}:{threading.get_ident()}:{secrets.token_hex(6)}"

    def _consent(self, key: TokenKey, why: str) -> ConsentRequired:
        self.forget(key)  # no usable grant: nothing of it is kept either
        return ConsentRequired(
            f"consent required for provider {key.provider!r}, user {key.subject!r}: {why}",
            provider=key.provider,
            user=key.subject,
        )

    @property
    def _store_name(self) -> str:
        return str(getattr(self._store, "_where", None) or repr(self._store))

    @contextlib.contextmanager
    def _waiting_for(self, key: TokenKey, what: str) -> Iterator[None]:
        """Note what this key's lock holder waits for (named if other threads time out)."""
        self._doing[key] = what
        try:
            yield
        finally:
            self._doing.pop(key, None)

    def _obtain(self, key: TokenKey, refresher: Refresher, failed: str | None) -> str:
        deadline = self._clock() + self._wait_deadline  # for this call, lock wait included
        lock = self._lock_for(key)
        if not lock.acquire(blocking=False):
            # another thread is refreshing: a token that still works is used meanwhile
            if failed is None:
                still = self._from_memory(key, usable=True)
                if still is not None:
                    return still
            # the holder gives up at its own deadline, plus at most one refresh and commit
            if not lock.acquire(timeout=self._wait_deadline * 1.5):
                raise self._lock_timeout(key)
        try:
            self._flush_unsaved(key)
            return self._obtain_locked(key, refresher, failed, deadline)
        finally:
            lock.release()

    def _lock_timeout(self, key: TokenKey) -> Exception:
        doing = self._doing.get(key)
        who = f"provider {key.provider!r}, user {key.subject!r}"
        if doing == "store":
            return TokenStoreError(
                f"token store {self._store_name} did not answer: after {self._wait_deadline * 1.5:g} s "
                f"another thread of this process was still waiting for it (token of {who})"
            )
        return ProviderUnavailable(
            f"timed out after {self._wait_deadline * 1.5:g} s waiting for another thread refreshing "
            f"the token of {who}" + (f" (it is waiting for the {doing})" if doing else ""),
            provider=key.provider,
            user=key.subject,
            error_code="refresh_wait_timeout",
        )

    def _get(self, key: TokenKey) -> TokenRecord | None:
        with self._waiting_for(key, "store"):
            return self._store.get(key)

    def _obtain_locked(
        self, key: TokenKey, refresher: Refresher, failed: str | None, deadline: float
    ) -> str:
        attempt = 0
        while True:
            record = self._get(key)
            if record is None:
                raise self._consent(key, "no stored grant")
            if record.status != "active" or record.tokens is None:
                raise self._consent(key, record.status.replace("_", " "))
            tokens = record.tokens
            now = self._clock()
            if failed is None:
                if self._is_fresh(tokens, record, now):
                    return self._remember(key, tokens, record.updated_at)
            elif not hmac.compare_digest(tokens.access_token.encode(), failed.encode()):
                # someone already replaced the failed token
                return self._remember(key, tokens, record.updated_at)
            if tokens.refresh_token is None:
                with self._waiting_for(key, "store"):
                    self._store.mark_needs_consent(key, reason="no_refresh_token", now=now)
                raise self._consent(key, "the access token expired and there is no refresh token")
            # due, but not expired: while another worker refreshes, it still works
            usable = failed is None and tokens.expires_at is not None and tokens.expires_at > now
            held = record.lease_owner is not None and record.lease_live
            if held or not self._may_take_over(key, record, now, usable):
                if usable:  # another worker refreshes (or may still save its refresh)
                    return tokens.access_token
            else:
                result = self._lease_and_refresh(key, record, refresher, proactive=failed is None)
                if isinstance(result, str):
                    return result
                if result is _REREAD and attempt < 20:
                    attempt += 1
                    continue
            if self._clock() >= deadline:
                raise ProviderUnavailable(
                    f"gave up after {self._wait_deadline:g}s waiting for another worker "
                    f"({record.lease_owner or 'unknown'}) to refresh the token of provider "
                    f"{key.provider!r}, user {key.subject!r}",
                    provider=key.provider,
                    user=key.subject,
                    error_code="refresh_wait_timeout",
                )
            self._sleep(self._backoff(attempt, deadline))
            attempt += 1

    def _may_take_over(self, key: TokenKey, record: TokenRecord, now: float, usable: bool) -> bool:
        """Whether to try for the lease now. A lease that ran out while its holder's refresh was
        in flight: the holder may have rotated the refresh token and may still save the result,
        so a token that still works is used instead (the successor's grace: _lease_and_refresh)."""
        return not (record.refreshing and record.lease_owner is not None and usable)

    def _lease_and_refresh(
        self, key: TokenKey, record: TokenRecord, refresher: Refresher, *, proactive: bool
    ) -> str | object:
        owner = self._new_owner()
        with self._waiting_for(key, "store"):
            if not self._store.try_lease(
                key, version=record.version, owner=owner, lease_seconds=self._lease_seconds
            ):
                return _RETRY
        if record.refreshing:
            # The last holder's refresh was in flight when its lease ran out: it may have rotated
            # the refresh token and still be trying to save the result (its compare-and-set needs
            # no lease). The grace starts now that the store took a write, so a stall or outage
            # does not use it up; if the holder saves meanwhile, our lease is void.
            self._sleep(self._grace)
        with self._waiting_for(key, "store"):
            # the last check before the token endpoint: still ours, with time to spare
            if not self._store.begin_refresh(key, owner=owner, min_left=self._min_left):
                self._release(key, owner, "lease_too_short")
                return _RETRY
        if record.refreshing:
            log.warning(
                "provider %r, user %r: the refresh by %s was interrupted (its lease ran out); "
                "refreshing again with the stored refresh token, which the server may have "
                "rotated already (then the user must consent again)",
                key.provider,
                key.subject,
                record.lease_owner,
            )
        return self._refresh(key, record, owner, refresher, proactive=proactive)

    def _is_fresh(self, tokens: TokenSet, record: TokenRecord, now: float) -> bool:
        # No expiry known: use it until the resource server says 401 (then refresh_if_current).
        if tokens.expires_at is None:
            return True
        return (
            tokens.expires_at - leeway_for(tokens.expires_at, record.updated_at, self._leeway) > now
        )

    def _backoff(self, attempt: int, deadline: float) -> float:
        cap = min(0.25, 0.05 * 2.0 ** min(attempt, 10))
        delay = cap * (0.5 + self._rng.random() / 2)
        return max(0.0, min(delay, deadline - self._clock()))

    def _refresh(
        self,
        key: TokenKey,
        record: TokenRecord,
        owner: str,
        refresher: Refresher,
        *,
        proactive: bool,
    ) -> str | object:
        """Holding the lease: call the token endpoint, then commit. ``_RETRY`` if the lease was lost."""
        old = record.tokens
        assert old is not None and old.refresh_token is not None
        try:
            with self._waiting_for(key, "token endpoint"):
                new = refresher(old.refresh_token)
        except BaseException as exc:
            return self._refresh_failed(key, record, owner, exc, proactive=proactive)
        return self._commit(key, owner, new, from_version=record.version)

    def _refresh_failed(
        self, key: TokenKey, record: TokenRecord, owner: str, exc: BaseException, *, proactive: bool
    ) -> str | object:
        old = record.tokens
        assert old is not None
        if isinstance(exc, ConsentRequired) or (
            isinstance(exc, AuthError) and exc.error_code == "invalid_grant"
        ):
            current = self._get(key)
            if current is not None and current.version != record.version:
                return _REREAD  # another worker saved a newer grant meanwhile: that one counts
            with self._waiting_for(key, "store"):
                self._store.mark_needs_consent(key, reason="invalid_grant", now=self._clock())
            self.forget(key)
            raise self._consent(key, "the authorization server rejected the refresh token") from exc
        code = exc.error_code if isinstance(exc, AuthError) else None
        self._release(key, owner, code or type(exc).__name__)
        still_valid = old.expires_at is None or old.expires_at > self._clock()
        if isinstance(exc, (ProviderUnavailable, TransportError)) and proactive and still_valid:
            return old.access_token  # outage, but the current token still works
        raise exc  # ProviderError (tokens kept), outage, or anything unexpected

    def _release(self, key: TokenKey, owner: str, error: str) -> None:
        with contextlib.suppress(TokenStoreError), self._waiting_for(key, "store"):
            self._store.release_lease(key, owner=owner, error=error[:200])

    def _superseded(self, key: TokenKey) -> None:
        log.warning(
            "provider %r, user %r: refreshed tokens arrived after this worker's lease was lost "
            "and another worker had already replaced the grant; the newer stored grant is kept",
            key.provider,
            key.subject,
        )

    def _commit(
        self, key: TokenKey, owner: str, new: TokenSet, *, from_version: int
    ) -> str | object:
        """Persist ``new`` before handing out its access token; retry, then fail loudly."""
        last: TokenStoreError | None = None
        for attempt in range(self._commit_attempts):
            now = self._clock()
            try:
                with self._waiting_for(key, "store"):
                    self._store.commit_refresh(
                        key, owner=owner, tokens=new, now=now, from_version=from_version
                    )
            except LeaseLostError:
                self._superseded(key)
                return _REREAD
            except TokenStoreError as exc:
                last = exc
                if attempt + 1 < self._commit_attempts:
                    self._sleep(0.05 * 2**attempt)
                continue
            return self._remember(key, new, now)
        self._unsaved[key] = (owner, new, from_version)
        self._start_flusher(key)
        raise TokenStoreError(
            f"could not save the refreshed tokens of provider {key.provider!r}, user "
            f"{key.subject!r} in token store {self._store_name} after {self._commit_attempts} "
            "attempts; they are kept in memory and saving will be retried (losing them means "
            "re-consent)"
        ) from last

    def _flush_unsaved(self, key: TokenKey) -> None:
        """Save refreshed tokens whose commit failed earlier (call with the key's lock held)."""
        pending = self._unsaved.get(key)
        if pending is None:
            return
        owner, tokens, from_version = pending
        now = self._clock()
        try:
            with self._waiting_for(key, "store"):
                self._store.commit_refresh(
                    key, owner=owner, tokens=tokens, now=now, from_version=from_version
                )
        except LeaseLostError:
            del self._unsaved[key]  # superseded: another worker replaced the grant
            self._superseded(key)
        except TokenStoreError as exc:
            raise TokenStoreError(
                f"refreshed tokens of provider {key.provider!r}, user {key.subject!r} are "
                f"still unsaved: token store {self._store_name} keeps failing"
            ) from exc
        else:
            del self._unsaved[key]
            self._remember(key, tokens, now)

    def _start_flusher(self, key: TokenKey) -> None:
        interval = self._flush_interval
        if interval is None or key in self._flushers:
            return
        self._flushers.add(key)

        def run() -> None:  # for at most 10 minutes; then the next call saves them
            stop = time.monotonic() + 600
            try:
                while key in self._unsaved and time.monotonic() < stop:
                    if self._closed.wait(interval):
                        break
                    lock = self._lock_for(key)
                    if not lock.acquire(timeout=interval):
                        continue
                    try:
                        with contextlib.suppress(TokenStoreError):
                            self._flush_unsaved(key)
                    finally:
                        lock.release()
            finally:
                self._flushers.discard(key)

        threading.Thread(target=run, name="remotetables-token-save", daemon=True).start()
