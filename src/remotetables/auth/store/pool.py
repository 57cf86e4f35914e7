"""The PostgreSQL token store's connections: a small per-process pool (LIFO, bounded,
fork-aware) and the connection parameters that bound every call (lock and statement timeouts,
TCP keepalives), keeping what the store's URL sets itself."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from remotetables.errors import TokenStoreError

Conn = psycopg.Connection[tuple[Any, ...]]


class _Pool:
    """A small per-process pool of autocommit connections (LIFO, bounded, fork-aware)."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int,
        timeout: float,
        connect_timeout: int,
        options: dict[str, Any] | None = None,
    ):
        self._conninfo = conninfo
        self._options = dict(options or {})
        self._max = max_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._cond = threading.Condition()
        self._idle: list[Conn] = []
        self._count = 0
        self._pid = os.getpid()
        self._inherited: list[Conn] = []  # kept referenced: closing them would end the parent's
        self.closed = False

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            self._inherited.extend(self._idle)
            self._idle, self._count, self._pid = [], 0, os.getpid()

    @contextlib.contextmanager
    def connection(self, deadline: float | None = None) -> Iterator[Conn]:
        conn = self._checkout(deadline)
        try:
            yield conn
        finally:
            self._checkin(conn)

    def _checkout(self, deadline: float | None = None) -> Conn:
        mine = time.monotonic() + self._timeout
        deadline = mine if deadline is None else min(deadline, mine)
        with self._cond:
            self._after_fork()
            while True:
                if self.closed:
                    raise TokenStoreError("the token store is closed")
                while self._idle:
                    idle = self._idle.pop()
                    if not idle.closed and not idle.broken:
                        return idle
                    self._count -= 1
                if self._count < self._max:
                    self._count += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TokenStoreError(
                        f"no free token store connection in time (pool size {self._max}, "
                        "every connection busy)"
                    )
                self._cond.wait(left)
        try:
            left = max(1.0, deadline - time.monotonic())
            conn: Conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(2, min(self._connect_timeout, int(left + 0.999))),
                application_name="remotetables",
                **self._options,
            )
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        return conn

    def _checkin(self, conn: Conn) -> None:
        with self._cond:
            if self._pid != os.getpid():  # forked while checked out: not ours to reuse
                self._inherited.append(conn)
                return
            ok = not conn.closed and not conn.broken and not self.closed
            if ok and conn.info.transaction_status != TransactionStatus.IDLE:
                try:
                    conn.rollback()
                except psycopg.Error:
                    ok = False
            if ok:
                self._idle.append(conn)
            else:
                self._count -= 1
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            idle, self._idle = self._idle, []
            if self._pid == os.getpid():
                for conn in idle:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
            self._cond.notify_all()


def _bounded(url: str, ms: int) -> dict[str, Any]:
    """Connection parameters that bound every call to ``ms`` milliseconds; what the URL sets
    itself wins (its own ``options`` are kept, after ours)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}
    # a lock wait ends first, so that it is named as such
    ours = (
        f"-c lock_timeout={max(1, ms * 4 // 5)} -c statement_timeout={ms}"
        f" -c idle_in_transaction_session_timeout={max(ms, 1000) * 2}"
    )
    params: dict[str, Any] = {"options": f"{ours} {given.get('options') or ''}".strip()}
    # a server that stops answering mid-call: give up when TCP does
    for name, value in (
        ("keepalives", 1),
        ("keepalives_idle", max(1, ms // 1000)),
        ("keepalives_interval", 1),
        ("keepalives_count", 3),
        ("tcp_user_timeout", ms),
    ):
        if name not in given:
            params[name] = value
    return params
