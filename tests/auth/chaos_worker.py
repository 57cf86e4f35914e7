"""One worker process of tests/auth/test_chaos.py: threads that query until told to stop.

``python chaos_worker.py KIND WHERE TOKEN_URL API_URL CLIENT_ID THREADS DURATION`` with the
key in ``$CHAOS_KEY`` (hex). Each "query" gets the access token from a TokenManager over the
shared store (SQLite file or PostgreSQL URL) and calls the rotating server's API with it
(a 401 refreshes once if the token is still current, and retries once), like a remote table
page. Prints ``ready``, waits for a line on stdin, runs DURATION seconds, prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx2

from remotetables.auth.manager import TokenManager
from remotetables.auth.store import SQLiteTokenStore, TokenKey
from remotetables.auth.store.base import TokenStore
from remotetables.auth.store.crypto import TokenCipher
from remotetables.errors import Error
from tests.auth.rotating_as import make_refresher

# the scaled deadlines of the chaos test (the defaults are 10 s / 120 s / 45 s / 5 s)
STORE_TIMEOUT = 1.0
LEASE = 3.0
MIN_LEFT = 1.5
WAIT = 6.0
GRACE = 1.0
REFRESH_TIMEOUT = 1.0


def open_store(kind: str, where: str, cipher: TokenCipher) -> TokenStore:
    if kind == "sqlite":
        return SQLiteTokenStore(Path(where), cipher, busy_timeout_ms=int(STORE_TIMEOUT * 1000))
    from remotetables.auth.store.postgres import PostgresTokenStore

    return PostgresTokenStore(where, cipher, timeout=STORE_TIMEOUT, pool_size=4)


def main() -> None:
    kind, where, token_url, api_url, client_id, threads, duration = sys.argv[1:8]
    cipher = TokenCipher.from_key(bytes.fromhex(os.environ["CHAOS_KEY"]))
    store = open_store(kind, where, cipher)
    manager = TokenManager(
        store,
        lease_seconds=LEASE,
        min_lease_left=MIN_LEFT,
        wait_deadline=WAIT,
        takeover_grace=GRACE,
        flush_interval=0.1,
        commit_attempts=2,
    )
    refresher = make_refresher(
        token_url, client_id, timeout=REFRESH_TIMEOUT, headers={"X-Worker-Pid": str(os.getpid())}
    )
    key = TokenKey("rotating", client_id, "alice")
    lock = threading.Lock()
    ok = 0
    failed: Counter[str] = Counter()
    samples: dict[str, str] = {}
    longest = 0.0
    print("ready", flush=True)
    sys.stdin.readline()
    stop = time.monotonic() + float(duration)

    def query(client: httpx2.Client) -> None:
        at = manager.access_token(key, refresher)
        r = client.get(api_url, headers={"Authorization": f"Bearer {at}"})
        if r.status_code == 401:
            at = manager.refresh_if_current(key, at, refresher)
            r = client.get(api_url, headers={"Authorization": f"Bearer {at}"})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}")

    def work() -> None:
        nonlocal ok, longest
        with httpx2.Client(timeout=5.0) as client:
            while time.monotonic() < stop:
                t0 = time.monotonic()
                try:
                    query(client)
                    outcome = None
                except Error as exc:
                    outcome, text = type(exc).__name__, str(exc)
                except Exception as exc:  # reported as such: the test fails on it
                    outcome, text = f"UNEXPECTED {type(exc).__name__}", str(exc)
                took = time.monotonic() - t0
                with lock:
                    longest = max(longest, took)
                    if outcome is None:
                        ok += 1
                    else:
                        failed[outcome] += 1
                        samples.setdefault(outcome, text[:300])
                time.sleep(0.02)

    pool = [threading.Thread(target=work) for _ in range(int(threads))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    manager.close()
    store.close()
    out = {"pid": os.getpid(), "ok": ok, "failed": dict(failed), "samples": samples}
    print(json.dumps({**out, "longest": round(longest, 2)}), flush=True)


if __name__ == "__main__":
    main()
