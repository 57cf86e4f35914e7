"""Crash safety: SIGKILL a process at random points while it refreshes, 50 times.

A worker process refreshes one rotating grant in a loop through the real token store and
:class:`TokenManager` (OAuthClient against a loopback rotating AS). After each kill a fresh
store must open cleanly (integrity_check ok), hold an active row whose refresh token the AS
still honours, and a fresh manager must get a working access token from it.

The AS is :class:`tests.auth.rotating_as.RotatingAS` with a grace window for the immediately
previous refresh token (FAPI 2.0 recommends one): a kill between the AS rotating and our commit
loses the answer, which no client can prevent (fault F4); with the grace window the stored,
previous RT still works once. Replays of any older RT still revoke the family.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import httpx2
import pytest

from remotetables.auth.manager import TokenManager
from remotetables.auth.oauth import OAuthClient, OAuthSettings
from remotetables.auth.store import SQLiteTokenStore, TokenKey, TokenSet
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from tests.auth.rotating_as import RotatingAS

WORKER = r"""
import sys, time
from pathlib import Path
import httpx2
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.auth.manager import TokenManager
from remotetables.auth.oauth import OAuthClient, OAuthSettings
from remotetables.auth.store import SQLiteTokenStore, TokenKey

db, key_file, token_url, client_id = sys.argv[1:5]
key_id, key = load_key(key_file=Path(key_file), use_keyring=False, default_key_file=Path(key_file))
store = SQLiteTokenStore(Path(db), TokenCipher({key_id: key}, current=key_id))
manager = TokenManager(store, lease_seconds=1.0, wait_deadline=20.0)
http = httpx2.Client()
client = OAuthClient(OAuthSettings(name="rot", client_id=client_id, token_endpoint=token_url, authorization_endpoint=token_url + "/authorize", timeout=0.8), http)
tkey = TokenKey(token_url, client_id, "alice")
print("ready", flush=True)
n = 0
while True:
    rec = store.get(tkey)
    manager.refresh_if_current(tkey, rec.tokens.access_token, client.refresh)
    n += 1
    if n == 1:
        print("refreshing", flush=True)
"""


class GraceAS(RotatingAS):
    """RotatingAS that honours the immediately previous RT once more (grace window)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.grace_used = 0
        self._previous: dict[int, str] = {}  # id(family) -> the RT it rotated away last

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        rt = form.get("refresh_token", "")
        with self._lock:
            fam_id = self._by_rt.get(rt)
            fam = self._families.get(fam_id) if fam_id else None
            if fam is not None and not fam.revoked and self._previous.get(id(fam)) == rt:
                fam.refresh_token = rt  # the answer to this RT was lost: rotate from it again
                self.grace_used += 1
        status, body = super()._refresh(form)
        if status == 200 and fam is not None:
            with self._lock:
                self._previous[id(fam)] = rt
        return status, body

    def previous_of(self, rt: str) -> str | None:
        with self._lock:
            fam = self._families[self._by_rt[rt]]
            return self._previous.get(id(fam))


def integrity_ok(db: Path) -> bool:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.mark.timeout(600)
def test_sigkill_during_refresh_50_times_never_loses_the_grant(tmp_path: Path) -> None:
    rng = random.Random(1234)
    db = tmp_path / "state" / "tokens.db"
    key_file = tmp_path / "token.key"
    key_id, key = load_key(key_file=key_file, use_keyring=False, default_key_file=key_file)
    cipher = TokenCipher({key_id: key}, current=key_id)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with GraceAS() as server:
        tkey = TokenKey(server.token_url, server.client_id, "alice")
        at0, rt0 = server.seed("alice")
        seed_store = SQLiteTokenStore(db, cipher)
        seed_store.put(tkey, TokenSet(at0, rt0, expires_at=time.time() + 3600), now=time.time())
        seed_store.close()
        http = httpx2.Client()
        client = OAuthClient(
            OAuthSettings(
                name="rot",
                client_id=server.client_id,
                token_endpoint=server.token_url,
                authorization_endpoint=server.url + "/authorize",
                timeout=0.8,
            ),
            http,
        )
        kills_mid_loop = 0
        for i in range(50):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(db),
                    str(key_file),
                    server.token_url,
                    server.client_id,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
            if proc.stdout.readline().strip() == "refreshing":
                kills_mid_loop += 1
            time.sleep(rng.uniform(0.0, 0.15))  # land anywhere in the refresh loop
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL

            assert integrity_ok(db), f"kill {i}: the store is damaged"
            store = SQLiteTokenStore(db, cipher)  # a fresh process's view
            rec = store.get(tkey)
            assert rec is not None and rec.status == "active" and rec.tokens is not None, (i, rec)
            stored_rt = rec.tokens.refresh_token
            assert stored_rt is not None
            family = server.family_of(stored_rt)
            assert not family.revoked, f"kill {i}: the grant was revoked"
            assert stored_rt in (family.refresh_token, server.previous_of(family.refresh_token)), i
            # a fresh manager (after the dead holder's lease runs out) gets a working token
            at = TokenManager(store, wait_deadline=20.0).refresh_if_current(
                tkey, rec.tokens.access_token, client.refresh
            )
            assert (
                httpx2.get(server.api_url, headers={"Authorization": f"Bearer {at}"}).status_code
                == 200
            )
            store.close()
        http.close()
        assert server.reuse_detected == 0
        assert kills_mid_loop >= 40  # the kills really landed while refreshing
        assert server.rotations >= 100
