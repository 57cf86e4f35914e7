"""examples/webapp end to end: uvicorn on 127.0.0.1, the demo authorization server and the
incidents API on loopback, tokens in PostgreSQL, consent walked as a browser would."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import psycopg
import pytest
import uvicorn

from remotetables.auth.store.crypto import TokenCipher
from remotetables.auth.store.keys import load_key
from remotetables.auth.store.postgres import PostgresTokenStore
from remotetables.demo.api.data import generate_incidents
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DemoAuthServer
from tests.pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)
from tests.servers.walk import walk_consent

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
ENV = {"REMOTETABLES_NO_KEYRING": "1"}


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "webapp_example", ROOT / "examples" / "webapp" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Served:
    """One WebApp under uvicorn in a thread, on a socket bound before the app is made."""

    def __init__(self, module: ModuleType, config: Path, secret: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.web = module.WebApp(config, public_url=self.url, secret=secret, environ=ENV)
        cfg = uvicorn.Config(self.web.app, log_level="warning", ws="none", lifespan="on")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        for _ in range(200):  # bounded: 10 s
            if self.server.started:
                return self
            self.thread.join(timeout=0.05)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[tuple[DemoAuthServer, IncidentsAPI]]:
    with (
        DemoAuthServer() as das,
        IncidentsAPI(n_rows=120, seed=5, token_validator=das.validate_token) as api,
    ):
        yield das, api


@pytest.fixture
def setup(
    servers: tuple[DemoAuthServer, IncidentsAPI],
    pg_url: str,
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> tuple[Path, TokenCipher]:
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
        url = "{base}/styles/cursor/incidents"
        rows = "items"
        pagination = { style = "cursor", cursor_path = "next_cursor", cursor_param = "cursor" }
        page_size_param = "limit"
        max_page_size = 25
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
    return cfg, TokenCipher({key_id: key}, key_id)


def sign_in(app_url: str, user: str) -> httpx2.Client:
    client = httpx2.Client(base_url=app_url, follow_redirects=False, timeout=30)
    r = client.get("/login", params={"user": user})
    assert r.status_code == 303
    return client


def consent_redirect(client: httpx2.Client, das: DemoAuthServer) -> str:
    r = client.get("/tables/incidents")
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith(das.issuer + "/authorize?")
    return location


def rows_of(client: httpx2.Client, user: str) -> list[Any]:
    r = client.get("/tables/incidents")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == user and body["columns"] == ["number", "assigned_to"]
    return list(body["rows"])


def test_consent_redirect_callback_and_per_user_rows(
    servers: tuple[DemoAuthServer, IncidentsAPI],
    setup: tuple[Path, TokenCipher],
    pg_url: str,
) -> None:
    das, api = servers
    cfg, cipher = setup
    expected = {
        u: sum(
            1
            for row in generate_incidents(120, users=api.users, seed=5)
            if row.get("assigned_to") == u
        )
        for u in ("alice", "bob")
    }
    module = load_example()
    secret = os.urandom(32)
    with Served(module, cfg, secret) as one, Served(module, cfg, secret) as two:
        anonymous = httpx2.Client(base_url=one.url, follow_redirects=False, timeout=30)
        assert anonymous.get("/tables/incidents").status_code == 401
        anonymous.cookies.set("rt_user", "alice.AAAA")  # forged: no valid signature
        assert anonymous.get("/tables/incidents").status_code == 401
        anonymous.close()

        for user in ("alice", "bob"):
            client = sign_in(one.url, user)
            location = consent_redirect(client, das)
            callback = walk_consent(location, username=user, password=user)
            assert callback.startswith(one.url + "/callback?")
            r = client.get(callback)
            assert (r.status_code, r.headers["location"]) == (303, "/tables/incidents")
            rows = rows_of(client, user)
            assert len(rows) == expected[user] > 0
            assert {assigned for _, assigned in rows} == {user}
            # the second app server (another host) finds the grant in PostgreSQL: no consent
            with contextlib.closing(sign_in(two.url, user)) as other:
                rows_two = rows_of(other, user)
            assert sorted(rows_two) == sorted(rows)
            client.close()

        # carol's authorization cannot be finished from bob's session, and stays hers
        carol = sign_in(one.url, "carol")
        callback = walk_consent(consent_redirect(carol, das), username="carol", password="carol")
        bob = sign_in(one.url, "bob")
        refused = bob.get(callback)
        assert refused.status_code == 400
        assert "started from another session" in refused.json()["error"]
        assert das.stats.code_exchanges == 2  # nothing was exchanged for bob
        r = carol.get(callback)
        assert (r.status_code, r.headers["location"]) == (303, "/tables/incidents")
        assert {assigned for _, assigned in rows_of(carol, "carol")} == {"carol"}
        assert carol.get(callback).status_code == 400  # used once: a replay finds nothing
        assert das.stats.code_exchanges == 3
        carol.close()
        bob.close()

    store = PostgresTokenStore(pg_url, cipher)
    infos = {(i.subject, i.status, i.has_refresh_token) for i in store.list()}
    assert infos == {("alice", "active", True), ("bob", "active", True), ("carol", "active", True)}
    alice = store.records()[0].tokens
    assert alice is not None
    with psycopg.connect(pg_url) as conn:
        dump = repr(conn.execute("SELECT * FROM oauth_token").fetchall())
    assert alice.access_token not in dump and alice.access_token.encode().hex() not in dump
    store.close()
