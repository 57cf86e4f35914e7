"""INSERT/UPDATE/DELETE on remote tables against the loopback test API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.auth.store import MemoryTokenStore
from remotetables.demo.api import IncidentsAPI
from remotetables.demo.api_faults import Fault
from remotetables.demo.authserver import DemoAuthServer
from remotetables.errors import ConfigError, ReadOnlyError, RemoteError
from remotetables.writes import key_rowid
from tests.servers.walk import walk_consent

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def make_rows() -> list[dict[str, Any]]:
    """a1, a2 (alice), s1 (shared: everyone sees it, nobody may change it), a3, b1, b2 (bob)."""
    rows: list[dict[str, Any]] = []
    for i, (sid, owner, state) in enumerate(
        [
            ("a1", "alice", "open"),
            ("a2", "alice", "open"),
            ("s1", None, "open"),
            ("a3", "alice", "open"),
            ("b1", "bob", "open"),
            ("b2", "bob", "closed"),
            ("a4", "alice", "closed"),
        ]
    ):
        row: dict[str, Any] = {
            "sys_id": sid,
            "number": f"INC{i:04d}",
            "state": state,
            "priority": 3,
            "caller": {"name": "Ada"},
        }
        if owner is not None:
            row["assigned_to"] = owner
        rows.append(row)
    return rows


COLUMNS = """
[tables.{name}.columns]
sys_id = { type = "TEXT", writable = false }
number = "TEXT"
state = { type = "TEXT", param = "state" }
priority = "INTEGER"
assigned_to = { type = "TEXT", param = "assigned_to" }
caller_name = { type = "TEXT", path = "caller.name" }
"""


def table_toml(name: str, base: str, write: str | None, *, provider: str = "demo") -> str:
    text = (
        f'[tables.{name}]\nprovider = "{provider}"\nurl = "{base}/styles/link/incidents"\n'
        'pagination = "link"\npage_size_param = "limit"\nmax_page_size = 2\nkey = "sys_id"\n'
    )
    if write is not None:
        text += f"[tables.{name}.write]\n{write}\n"
    return text + COLUMNS.replace("{name}", name)


@pytest.fixture
def wapi() -> Iterator[IncidentsAPI]:
    with IncidentsAPI({"incidents": make_rows()}, static_tokens=TOKENS) as server:
        yield server


@pytest.fixture
def wconfig(wapi: IncidentsAPI, write_config: Callable[..., Path]) -> Path:
    text = '[providers.demo]\ntoken_env = "API_TOKEN"\n'
    text += table_toml("inc", wapi.base_url, "insert = true\nupdate = true\ndelete = true")
    text += table_toml("inc_ro", wapi.base_url, None)
    text += table_toml("inc_nodelete", wapi.base_url, "update = true")
    text += table_toml(
        "inc_idem", wapi.base_url, 'insert = true\nidempotency_header = "Idempotency-Key"'
    )
    return write_config(text)


def open_conn(config: Path, token: str = "tok-alice") -> remotetables.Connection:
    return remotetables.connect(
        ":memory:", config, environ={"API_TOKEN": token}, sleep=lambda s: None
    )


def writes(api: IncidentsAPI) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in api.requests if r.method != "GET"]


def test_update_reads_matching_keys_then_writes_each(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        # warm the cache: the write must invalidate it
        assert conn.execute("SELECT sum(priority) FROM inc").fetchone() == (3 * 5,)
        wapi.clear_requests()
        cur = conn.execute(
            "UPDATE inc SET priority = 1 WHERE caller_name = 'Ada' AND sys_id <> 's1'"
        )
        assert cur.rowcount == 4
        log = [(r.method, r.path) for r in wapi.requests]
        methods = [m for m, _ in log]
        # SQLite runs the whole scan (a cache hit here: no GET) before the first write
        assert methods == ["PATCH"] * 4
        assert sorted(p.rsplit("/", 1)[1] for _, p in log) == ["a1", "a2", "a3", "a4"]
        wapi.clear_requests()
        cur = conn.execute("UPDATE inc SET priority = 2 WHERE state = 'open' AND sys_id <> 's1'")
        methods = [r.method for r in wapi.requests]
        first_write = methods.index("PATCH")
        assert "GET" in methods and "GET" not in methods[first_write:]
        assert methods.count("PATCH") == 3
        # later reads see the API's answer (the cache was dropped)
        rows = conn.execute("SELECT sys_id, priority FROM inc ORDER BY sys_id").fetchall()
        assert rows == [("a1", 2), ("a2", 2), ("a3", 2), ("a4", 1), ("s1", 3)]
    ds = wapi.dataset("incidents")
    assert ds.get("a4")["priority"] == 1 and ds.get("b1")["priority"] == 3


def test_update_sends_only_changed_columns_and_nested_paths(
    wapi: IncidentsAPI, wconfig: Path
) -> None:
    with open_conn(wconfig) as conn:
        conn.execute("UPDATE inc SET caller_name = 'Grace' WHERE sys_id = 'a1'")
        conn.execute("UPDATE inc SET priority = priority WHERE sys_id = 'a2'")  # no change
    assert writes(wapi) == [("PATCH", "/styles/link/incidents/a1", 200)]
    row = wapi.dataset("incidents").get("a1")
    assert row["caller"] == {"name": "Grace"} and row["priority"] == 3


def test_insert_returns_the_api_row_as_rowid(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        cur = conn.execute(
            "INSERT INTO inc (number, state, caller_name) VALUES ('mine', 'new', 'Linus')"
        )
        assert cur.rowcount == 1
        created = [r for r in wapi.dataset("incidents").snapshot.rows if r.get("state") == "new"]
        assert len(created) == 1
        sys_id = created[0]["sys_id"]
        assert created[0]["caller"] == {"name": "Linus"} and created[0]["assigned_to"] == "alice"
        assert "priority" not in created[0]  # NULLs are not sent
        assert cur.lastrowid == key_rowid(sys_id)
        got = conn.execute(
            "SELECT sys_id, caller_name FROM inc WHERE rowid = ?", (cur.lastrowid,)
        ).fetchall()
        assert got == [(sys_id, "Linus")]


def test_delete_by_non_key_column(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        cur = conn.execute("DELETE FROM inc WHERE state = 'closed'")
        assert cur.rowcount == 1
        assert writes(wapi) == [("DELETE", "/styles/link/incidents/a4", 204)]
        assert conn.execute("SELECT count(*) FROM inc").fetchone() == (4,)
    assert wapi.dataset("incidents").get("a4") is None


def test_read_only_tables_and_columns(wconfig: Path, wapi: IncidentsAPI) -> None:
    with open_conn(wconfig) as conn:
        for sql in (
            "INSERT INTO inc_ro (number) VALUES ('x')",
            "UPDATE inc_ro SET priority = 1 WHERE sys_id = 'a1'",
            "DELETE FROM inc_ro WHERE sys_id = 'a1'",
        ):
            with pytest.raises(ReadOnlyError, match="inc_ro is a read-only remote table"):
                conn.execute(sql)
        with pytest.raises(ReadOnlyError, match="does not allow DELETE"):
            conn.execute("DELETE FROM inc_nodelete WHERE sys_id = 'a1'")
        with pytest.raises(ReadOnlyError, match="does not allow INSERT"):
            conn.execute("INSERT INTO inc_nodelete (number) VALUES ('x')")
        with pytest.raises(ReadOnlyError, match="column sys_id is not writable"):
            conn.execute("INSERT INTO inc (sys_id, number) VALUES ('zz', 'x')")
        with pytest.raises(ReadOnlyError, match="key column sys_id cannot be changed"):
            conn.execute("UPDATE inc SET sys_id = 'zz' WHERE sys_id = 'a1'")
    assert writes(wapi) == []


def test_forbidden_row_stops_statement_and_names_applied_rows(
    wapi: IncidentsAPI, wconfig: Path
) -> None:
    with open_conn(wconfig) as conn, pytest.raises(RemoteError) as info:
        conn.execute("UPDATE inc SET priority = 9 WHERE state = 'open'")
    err = info.value
    assert err.status_code == 403 and err.table == "inc"
    msg = str(err)
    assert "PATCH of sys_id=s1 failed" in msg and "HTTP 403" in msg
    assert "2 earlier row(s) of this statement were already applied" in msg
    assert "sys_id=a1, sys_id=a2" in msg and "later rows were not attempted" in msg
    assert err.applied == ("sys_id=a1", "sys_id=a2")  # type: ignore[attr-defined]
    assert [p for _, p, _ in writes(wapi)] == [
        "/styles/link/incidents/a1",
        "/styles/link/incidents/a2",
        "/styles/link/incidents/s1",
    ]
    ds = wapi.dataset("incidents")
    assert [ds.get(k)["priority"] for k in ("a1", "a2", "s1", "a3")] == [9, 9, 3, 3]


def test_each_user_writes_with_own_token(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig, "tok-bob") as bob:
        assert (
            bob.execute(
                "UPDATE inc SET priority = 7 WHERE state = 'open' AND sys_id <> 's1'"
            ).rowcount
            == 1
        )
        with pytest.raises(RemoteError, match="you may only create rows assigned to you") as info:
            bob.execute("INSERT INTO inc (number, assigned_to) VALUES ('x', 'alice')")
        assert info.value.status_code == 403
    assert {(r.method, r.user) for r in wapi.requests if r.method != "GET"} == {
        ("PATCH", "bob"),
        ("POST", "bob"),
    }
    assert wapi.dataset("incidents").get("b1")["priority"] == 7


def test_executemany_inserts_every_row(wapi: IncidentsAPI, wconfig: Path) -> None:
    with open_conn(wconfig) as conn:
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO inc (number, state, priority) VALUES (?, ?, ?)",
            [("n1", "new", 1), ("n2", "new", 2), ("n3", "new", 3)],
        )
        assert cur.rowcount == 3
        got = conn.execute("SELECT priority FROM inc WHERE state = 'new' ORDER BY 1").fetchall()
        assert got == [(1,), (2,), (3,)]
    assert [m for m, _, _ in writes(wapi)] == ["POST"] * 3


def test_post_not_retried_without_idempotency_key(wapi: IncidentsAPI, wconfig: Path) -> None:
    wapi.faults.add(Fault("status", path="/styles/link/incidents", method="POST", status=503))
    with open_conn(wconfig) as conn, pytest.raises(RemoteError, match="HTTP 503") as info:
        conn.execute("INSERT INTO inc (number) VALUES ('x')")
    assert info.value.status_code == 503
    assert [m for m, _, _ in writes(wapi)] == ["POST"]
    assert len(wapi.dataset("incidents").snapshot.rows) == 7


def test_post_retried_with_idempotency_key(wapi: IncidentsAPI, wconfig: Path) -> None:
    wapi.faults.add(Fault("status", path="/styles/link/incidents", method="POST", status=503))
    with open_conn(wconfig) as conn:
        conn.execute("INSERT INTO inc_idem (number, state) VALUES ('x', 'new')")
    assert [s for _, _, s in writes(wapi)] == [503, 201]
    assert len(wapi.dataset("incidents").snapshot.rows) == 8


def test_write_url_outside_provider_origins_is_refused(
    wapi: IncidentsAPI, write_config: Callable[..., Path]
) -> None:
    text = '[providers.demo]\ntoken_env = "API_TOKEN"\n'
    text += table_toml("inc", wapi.base_url, 'insert = { url = "http://127.0.0.2:9/steal" }')
    with (
        open_conn(write_config(text)) as conn,
        pytest.raises(ConfigError, match="token would leak"),
    ):
        conn.execute("INSERT INTO inc (number) VALUES ('x')")
    assert writes(wapi) == []


# ---------------------------------------------------------------- OAuth, per user


@pytest.fixture
def oauth_stack(write_config: Callable[..., Path]) -> Iterator[tuple[IncidentsAPI, Path]]:
    with (
        DemoAuthServer() as auth,
        IncidentsAPI({"incidents": make_rows()}, token_validator=auth.validate_token) as api,
    ):
        text = (
            f'[providers.demo]\nissuer = "{auth.issuer}"\nclient_id = "remotetables-demo"\n'
            'scopes = ["incidents.read"]\n'
        )
        text += table_toml("inc", api.base_url, "insert = true\nupdate = true\ndelete = true")
        yield api, write_config(text)


def walk(req: Any) -> str:
    return walk_consent(req.authorization_url, username=req.user, password=req.user)


def test_oauth_users_share_a_runtime_and_write_as_themselves(
    oauth_stack: tuple[IncidentsAPI, Path],
) -> None:
    api, config = oauth_stack
    store = MemoryTokenStore()
    with (
        remotetables.connect(
            ":memory:", config, user="alice", consent=walk, token_store=store
        ) as a,
        remotetables.connect(":memory:", user="bob", consent=walk, runtime=a.runtime) as b,
    ):
        a.execute("SELECT count(*) FROM inc").fetchone()
        b.execute("SELECT count(*) FROM inc").fetchone()
        with pytest.raises(RemoteError) as info:
            a.execute("UPDATE inc SET priority = 1 WHERE sys_id IN ('a1', 's1')")
        assert info.value.status_code == 403 and "user alice" in str(info.value)
        assert b.execute("UPDATE inc SET priority = 5 WHERE sys_id = 'b1'").rowcount == 1
        # alice's update of b1 finds no row (she cannot see it): nothing is sent
        assert a.execute("UPDATE inc SET priority = 6 WHERE sys_id = 'b1'").rowcount == 0
    by_user = {
        (r.method, r.path.rsplit("/", 1)[1], r.user, r.status)
        for r in api.requests
        if r.method != "GET"
    }
    assert ("PATCH", "b1", "bob", 200) in by_user
    assert ("PATCH", "s1", "alice", 403) in by_user
    assert not any(u == "alice" and k == "b1" for _, k, u, _ in by_user)
    assert api.dataset("incidents").get("b1")["priority"] == 5


def test_a_write_drops_every_users_cached_rows_of_the_table(
    oauth_stack: tuple[IncidentsAPI, Path],
) -> None:
    """bob's cached view of a shared row must not outlive alice's change to it."""
    api, config = oauth_stack
    store = MemoryTokenStore()
    with (
        remotetables.connect(
            ":memory:", config, user="alice", consent=walk, token_store=store
        ) as a,
        remotetables.connect(":memory:", user="bob", consent=walk, runtime=a.runtime) as b,
    ):
        b.execute("SELECT count(*) FROM inc").fetchall()
        assert ("inc", "user:bob") in {(t, p) for t, p, *_ in a.runtime.cache.state()}
        assert a.execute("UPDATE inc SET priority = 4 WHERE sys_id = 'a1'").rowcount == 1
        assert not any(t == "inc" for t, *_ in a.runtime.cache.state())
        gets = len([r for r in api.requests if r.method == "GET" and r.user == "bob"])
        b.execute("SELECT count(*) FROM inc").fetchall()  # asks the API again
        assert len([r for r in api.requests if r.method == "GET" and r.user == "bob"]) > gets
