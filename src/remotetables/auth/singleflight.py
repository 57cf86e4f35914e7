"""One consent at a time per grant, across processes and hosts, through the token store.

Two processes (two shells, two cron jobs, two hosts of a BI server) that both find no grant
for alice would each ask her to consent. :func:`consent_once` takes the store's pending-consent
lease (:class:`~remotetables.auth.store.ConsentLeases`) first: the process that gets it asks
and stores the grant, then gives the lease back saying how it ended; the others wait, and
return the grant it stored, or fail with its failure. A lease whose holder died (same host,
process gone) is taken over at once; any other runs out after ``lease_seconds``.

A consent that hands the user to a web app (``ConsentRequired``) ends the lease without an
error: each waiting process then asks with its own transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable

from remotetables.auth.store import ConsentLeases, TokenKey, TokenSet, TokenStore
from remotetables.errors import ConsentFailed, ConsentRequired, Error, redact_text

__all__ = ["consent_once", "lease_owner"]

log = logging.getLogger("remotetables.auth")

POLL_SECONDS = 0.25


def lease_owner() -> str:
    """``host:pid:random``: who holds a lease (the host and pid let a dead holder be seen)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead(owner: str) -> bool:
    """Whether ``owner`` is a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _how_it_failed(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "it was interrupted"
    if isinstance(exc, Error):
        return redact_text(str(exc))[:300]
    return f"{type(exc).__name__}"


def _grant_mark(store: TokenStore, key: TokenKey) -> tuple[int, float] | None:
    record = store.get(key)
    return None if record is None else (record.version, record.updated_at)


def _new_grant(store: TokenStore, key: TokenKey, seen: tuple[int, float] | None) -> TokenSet | None:
    """The grant stored for ``key`` since ``seen`` was read, if it is usable."""
    record = store.get(key)
    if record is None or record.status != "active" or record.tokens is None:
        return None
    if (record.version, record.updated_at) == seen:
        return None
    return record.tokens


def consent_once(
    store: TokenStore,
    key: TokenKey,
    obtain: Callable[[], TokenSet],
    *,
    provider: str,
    user: str,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    lease_seconds: float,
    notify: Callable[[str], None] | None = None,
) -> TokenSet:
    """Run ``obtain`` (a consent) and store its grant, unless another process is doing so for
    ``key``: then wait for its grant (returned) or its failure (:class:`ConsentFailed`)."""
    if not isinstance(store, ConsentLeases):  # a store of one's own: per process only
        tokens = obtain()
        store.put(key, tokens, now=clock())
        return tokens
    owner = lease_owner()
    started = clock()
    seen = _grant_mark(store, key)
    told = False
    while not store.try_consent_lease(key, owner=owner, now=clock(), lease_seconds=lease_seconds):
        lease = store.consent_lease(key)
        holder = lease.owner if lease is not None else None
        if holder is not None and _dead(holder):
            log.info(
                "the process asking %s to consent at %s has ended; taking over", user, provider
            )
            store.end_consent_lease(key, owner=holder, now=clock())
            continue
        if not told:
            told = True
            message = (
                f"Waiting for {user}'s consent at {provider}: another process "
                f"({holder or 'unknown'}) is asking for it; its grant will be used here."
            )
            log.info("%s", message)
            if notify is not None:
                notify(message)
        sleep(POLL_SECONDS)
        theirs = _new_grant(store, key, seen)
        if theirs is not None:
            return theirs
        lease = store.consent_lease(key)
        if (
            lease is not None
            and lease.owner is None
            and lease.error
            and (lease.ended_at or 0) >= started
        ):
            raise ConsentFailed(
                f"{provider}: the consent for {user} that another process asked for failed "
                f"({lease.error}); nothing was stored, run the command again to retry",
                provider=provider,
                user=user,
            )
    error: str | None = None
    try:
        theirs = _new_grant(store, key, seen)  # stored while this one was taking the lease
        if theirs is not None:
            return theirs
        tokens = obtain()
        store.put(key, tokens, now=clock())
        return tokens
    except ConsentRequired:
        raise  # handed to a web app: the others ask with their own transactions
    except BaseException as exc:
        error = _how_it_failed(exc)
        raise
    finally:
        with contextlib.suppress(Error):
            store.end_consent_lease(key, owner=owner, now=clock(), error=error)
