"""Single-flight token refresh across threads, processes and hosts (token-store-design.md §3).

A :class:`TokenManager` hands out access tokens for a :class:`TokenKey`. When the stored
token is about to expire, exactly one worker takes the store's lease, calls the token
endpoint with **no transaction open**, commits the new tokens, and only then returns the
access token (persist-then-use). Everyone else waits and re-reads the store.

The ``refresher`` signals failures with :mod:`remotetables.errors` types:

- ``ConsentRequired`` or ``AuthError(error_code="invalid_grant")``: the grant is gone;
  the tokens are wiped (``needs_consent``) and ``ConsentRequired`` is raised.
- ``ProviderError``: a client configuration problem; tokens are kept, the error re-raised.
- ``ProviderUnavailable`` / ``TransportError``: an outage; tokens are kept, and a still
  valid access token is returned (proactive path only), else the error is re-raised.

Keep the refresher's HTTP timeout well below ``lease_seconds``.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable

from remotetables.auth.store import TokenKey, TokenRecord, TokenSet, TokenStore
from remotetables.errors import (
    AuthError,
    ConsentRequired,
    LeaseLostError,
    ProviderUnavailable,
    TokenStoreError,
    TransportError,
)

__all__ = ["Refresher", "TokenManager"]

Refresher = Callable[[str], TokenSet]

_RETRY = object()  # sentinel: the lease was lost, read the store again


class TokenManager:
    """Gives out fresh access tokens, refreshing them single-flight through a :class:`TokenStore`.

    ``clock`` and ``sleep`` drive the lease and waiting logic; ``rng`` the jitter. The
    in-process per-key lock waits at most ``wait_deadline`` real seconds.
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        leeway: float = 60.0,
        lease_seconds: float = 30.0,
        wait_deadline: float = 45.0,
        owner_prefix: str | None = None,
        rng: random.Random | None = None,
        commit_attempts: int = 3,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._leeway = leeway
        self._lease_seconds = lease_seconds
        self._wait_deadline = wait_deadline
        self._owner_prefix = owner_prefix
        self._rng = rng or random.Random()
        self._commit_attempts = max(1, commit_attempts)
        self._locks: dict[TokenKey, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Refreshed tokens whose commit failed: (lease owner, tokens). Retried first thing.
        self._unsaved: dict[TokenKey, tuple[str, TokenSet]] = {}

    def __repr__(self) -> str:
        return f"TokenManager(store={self._store!r}, leeway={self._leeway})"

    # -- public

    def access_token(self, key: TokenKey, refresher: Refresher) -> str:
        """A usable access token for ``key``, refreshing it single-flight if it is (nearly) expired.

        Raises ``ConsentRequired`` when there is no usable grant.
        """
        return self._obtain(key, refresher, failed=None)

    def refresh_if_current(
        self, key: TokenKey, failed_access_token: str, refresher: Refresher
    ) -> str:
        """After a 401: refresh only if the stored token is still ``failed_access_token``.

        If another worker already replaced it, the newer stored token is returned.
        """
        return self._obtain(key, refresher, failed=failed_access_token)

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
        return ConsentRequired(
            f"consent required for provider {key.provider!r}, user {key.subject!r}: {why}",
            provider=key.provider,
            user=key.subject,
        )

    def _obtain(self, key: TokenKey, refresher: Refresher, failed: str | None) -> str:
        lock = self._lock_for(key)
        if not lock.acquire(timeout=self._wait_deadline):
            raise ProviderUnavailable(
                f"timed out waiting for another thread refreshing provider {key.provider!r}, "
                f"user {key.subject!r}",
                provider=key.provider,
                user=key.subject,
                error_code="refresh_wait_timeout",
            )
        try:
            self._flush_unsaved(key)
            return self._obtain_locked(key, refresher, failed)
        finally:
            lock.release()

    def _obtain_locked(self, key: TokenKey, refresher: Refresher, failed: str | None) -> str:
        deadline = self._clock() + self._wait_deadline
        attempt = 0
        while True:
            record = self._store.get(key)
            if record is None:
                raise self._consent(key, "no stored grant")
            if record.status != "active" or record.tokens is None:
                raise self._consent(key, record.status.replace("_", " "))
            tokens = record.tokens
            now = self._clock()
            if failed is None:
                if self._is_fresh(tokens, now):
                    return tokens.access_token
            elif not hmac.compare_digest(tokens.access_token.encode(), failed.encode()):
                return tokens.access_token  # someone already replaced the failed token
            if tokens.refresh_token is None:
                self._store.mark_needs_consent(key, reason="no_refresh_token", now=now)
                raise self._consent(key, "the access token expired and there is no refresh token")
            owner = self._new_owner()
            if self._store.try_lease(
                key,
                version=record.version,
                owner=owner,
                now=now,
                lease_seconds=self._lease_seconds,
            ):
                result = self._refresh(key, record, owner, refresher, proactive=failed is None)
                if isinstance(result, str):
                    return result
            if self._clock() >= deadline:
                raise ProviderUnavailable(
                    f"gave up after {self._wait_deadline:g}s waiting for another worker to "
                    f"refresh the token of provider {key.provider!r}, user {key.subject!r}",
                    provider=key.provider,
                    user=key.subject,
                    error_code="refresh_wait_timeout",
                )
            self._sleep(self._backoff(attempt, deadline))
            attempt += 1

    def _is_fresh(self, tokens: TokenSet, now: float) -> bool:
        # No expiry known: use it until the resource server says 401 (then refresh_if_current).
        return tokens.expires_at is None or tokens.expires_at - self._leeway > now

    def _backoff(self, attempt: int, deadline: float) -> float:
        cap = min(1.0, 0.05 * 2.0 ** min(attempt, 10))
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
            new = refresher(old.refresh_token)
        except BaseException as exc:
            return self._refresh_failed(key, old, owner, exc, proactive=proactive)
        return self._commit(key, owner, new)

    def _refresh_failed(
        self, key: TokenKey, old: TokenSet, owner: str, exc: BaseException, *, proactive: bool
    ) -> str:
        if isinstance(exc, ConsentRequired) or (
            isinstance(exc, AuthError) and exc.error_code == "invalid_grant"
        ):
            self._store.mark_needs_consent(key, reason="invalid_grant", now=self._clock())
            raise self._consent(key, "the authorization server rejected the refresh token") from exc
        code = exc.error_code if isinstance(exc, AuthError) else None
        self._release(key, owner, code or type(exc).__name__)
        still_valid = old.expires_at is None or old.expires_at > self._clock()
        if isinstance(exc, (ProviderUnavailable, TransportError)) and proactive and still_valid:
            return old.access_token  # outage, but the current token still works
        raise exc  # ProviderError (tokens kept), outage, or anything unexpected

    def _release(self, key: TokenKey, owner: str, error: str) -> None:
        with contextlib.suppress(TokenStoreError):
            self._store.release_lease(key, owner=owner, error=error[:200])

    def _commit(self, key: TokenKey, owner: str, new: TokenSet) -> str | object:
        """Persist ``new`` before handing out its access token; retry, then fail loudly."""
        last: TokenStoreError | None = None
        for attempt in range(self._commit_attempts):
            try:
                self._store.commit_refresh(key, owner=owner, tokens=new, now=self._clock())
            except LeaseLostError:
                return _RETRY  # another worker took over (or consent replaced the grant)
            except TokenStoreError as exc:
                last = exc
                if attempt + 1 < self._commit_attempts:
                    self._sleep(0.05 * 2**attempt)
                continue
            return new.access_token
        self._unsaved[key] = (owner, new)
        raise TokenStoreError(
            f"could not save the refreshed tokens of provider {key.provider!r}, user "
            f"{key.subject!r} after {self._commit_attempts} attempts; they are kept in memory "
            "and saving will be retried on the next call (losing them means re-consent)"
        ) from last

    def _flush_unsaved(self, key: TokenKey) -> None:
        pending = self._unsaved.get(key)
        if pending is None:
            return
        owner, tokens = pending
        try:
            self._store.commit_refresh(key, owner=owner, tokens=tokens, now=self._clock())
        except LeaseLostError:
            del self._unsaved[key]  # superseded: another worker holds or replaced the grant
        except TokenStoreError as exc:
            raise TokenStoreError(
                f"refreshed tokens of provider {key.provider!r}, user {key.subject!r} are "
                "still unsaved: the token store keeps failing"
            ) from exc
        else:
            del self._unsaved[key]
