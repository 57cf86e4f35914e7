"""Single-flight refresh across hosts, simulated by processes sharing one PostgreSQL token store.

8 processes x 4 threads, each process with its own runtime (its own connection pool), query
through ``remotetables.connect`` + SELECT while the stored access token is expired. The demo
authorization server rotates refresh tokens and revokes the whole family when an old one is
replayed; the incidents API validates every bearer token with it. Exactly one refresh may
happen, and every query must succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import remotetables
from remotetables.auth.consent import ConsentRequest
from remotetables.auth.store import TokenKey
from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.auth.store.postgres import PostgresTokenStore
from remotetables.demo.api.server import IncidentsAPI, token_fingerprint
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DemoAuthServer
from tests.pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)
from tests.servers.walk import walk_consent

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PROCESSES, THREADS = 8, 4
ENV = {"REMOTETABLES_NO_KEYRING": "1"}

WORKER = r"""
import json, sys, threading
import remotetables
from remotetables.config import load_config
from remotetables.session import Runtime

config_path, n_threads = sys.argv[1], int(sys.argv[2])
runtime = Runtime(load_config(config_path), environ={"REMOTETABLES_NO_KEYRING": "1"})
runtime.oauth_service().store  # open this process's pool (and check the schema) up front
conns = [remotetables.connect(":memory:", runtime=runtime, user="alice", consent="raise")
         for _ in range(n_threads)]
go = threading.Event()
results, lock = [], threading.Lock()

def work(conn):
    go.wait(60)
    try:
        rows = conn.execute("SELECT count(*), min(assigned_to), max(assigned_to) FROM incidents").fetchall()
        res = {"ok": True, "rows": list(rows[0])}
    except Exception as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with lock:
        results.append(res)

threads = [threading.Thread(target=work, args=(c,)) for c in conns]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for t in threads:
    t.join(120)
for c in conns:
    c.close()
runtime.close()
print(json.dumps(results), flush=True)
"""


@pytest.fixture
def servers() -> Iterator[tuple[DemoAuthServer, IncidentsAPI]]:
    with (
        DemoAuthServer() as das,
        IncidentsAPI(n_rows=200, seed=3, token_validator=das.validate_token) as api,
    ):
        yield das, api


def test_eight_processes_refresh_once(
    servers: tuple[DemoAuthServer, IncidentsAPI],
    pg_url: str,
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    das, api = servers
    key_file = tmp_path / "token.key"
    key_id, key = load_key(key_file=key_file, use_keyring=False, default_key_file=key_file)
    cfg = write_config(
        """
        [settings]
        token_store = "{store}"
        key_file = "{key}"
        [providers.demo]
        issuer = "{issuer}"
        client_id = "{client}"
        scopes = ["incidents.read"]
        [tables.incidents]
        provider = "demo"
        url = "{base}/styles/link/incidents"
        pagination = "link"
        page_size_param = "limit"
        max_page_size = 50
        [tables.incidents.columns]
        number = "TEXT"
        assigned_to = { type = "TEXT", param = "assigned_to" }
        """,
        store=pg_url,
        key=key_file,
        issuer=das.issuer,
        client=DEFAULT_CLIENT_ID,
        base=api.base_url,
    )

    # consent once (alice), then make the access token expired everywhere
    def consent(req: ConsentRequest) -> str:
        return walk_consent(req.authorization_url, username=req.user, password=req.user)

    with remotetables.connect(
        ":memory:", config=cfg, user="alice", consent=consent, environ=ENV
    ) as c:
        expected = list(
            c.execute(
                "SELECT count(*), min(assigned_to), max(assigned_to) FROM incidents"
            ).fetchall()[0]
        )
    assert expected[0] > 0 and expected[1] == expected[2] == "alice"
    das.expire_access_tokens()
    store = PostgresTokenStore(pg_url, TokenCipher({key_id: key}, key_id))
    tkey = TokenKey(das.issuer, DEFAULT_CLIENT_ID, "alice")
    rec = store.get(tkey)
    assert rec is not None and rec.tokens is not None
    old_at = rec.tokens.access_token
    store.put(tkey, replace(rec.tokens, expires_at=time.time() - 10), now=time.time())
    refreshes, reuse = das.stats.refreshes, das.stats.refresh_reuse_detected
    api.clear_requests()

    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(cfg), str(THREADS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(PROCESSES)
    ]
    results: list[dict[str, object]] = []
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read() if p.stderr else line
        for p in procs:  # release them all at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-2000:]
            results.extend(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    assert len(results) == PROCESSES * THREADS
    assert [r for r in results if not r["ok"]] == []
    assert all(r["rows"] == expected for r in results)
    assert das.stats.refreshes - refreshes == 1
    assert das.stats.refresh_reuse_detected == reuse
    rec = store.get(tkey)
    assert rec is not None and rec.tokens is not None and rec.status == "active"
    assert rec.tokens.access_token != old_at and rec.lease_owner is None
    # every API request of the workers used the one new access token
    fps = {r.token_fp for r in api.requests}
    assert fps == {token_fingerprint(rec.tokens.access_token)}
    store.close()
