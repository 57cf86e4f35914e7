"""The SQLAlchemy dialect: Core, reflection, pandas, per-user engines, consent, writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from remotetables.auth.store import MemoryTokenStore
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from remotetables.errors import ConsentRequired
from remotetables.session import Runtime
from tests.servers.walk import walk_consent
from tests.test_writes import make_rows, table_toml


def engine_url(db: Path | None, config: Path, **query: str) -> sa.URL:
    q = {"config": str(config), **query}
    return sa.URL.create("remotetables", database=str(db) if db else None, query=q)


@pytest.fixture
def api_config(write_config: Callable[..., Path]) -> Iterator[tuple[IncidentsAPI, Path]]:
    with IncidentsAPI({"incidents": make_rows()}) as api:
        text = table_toml("inc", api.base_url, "insert = true\nupdate = true\ndelete = true")
        yield api, write_config(text.replace('provider = "demo"\n', ""))


@pytest.fixture
def engine(api_config: tuple[IncidentsAPI, Path], tmp_path: Path) -> Iterator[sa.Engine]:
    eng = sa.create_engine(engine_url(tmp_path / "work.db", api_config[1]))
    yield eng
    eng.dispose()


def test_core_select_where_limit(engine: sa.Engine, api_config: tuple[IncidentsAPI, Path]) -> None:
    api = api_config[0]
    inc = sa.Table("inc", sa.MetaData(), autoload_with=engine)
    api.clear_requests()
    stmt = sa.select(inc.c.sys_id, inc.c.priority).where(inc.c.state == "open").limit(2)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    assert [tuple(r) for r in rows] == [("a1", 3), ("a2", 3)]
    assert all(r.query.get("state") == ["open"] for r in api.requests)


def test_inspection_lists_remote_tables_and_types(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    insp = sa.inspect(engine)
    assert insp.get_table_names() == ["inc", "notes"]
    cols = {c["name"]: type(c["type"]).__name__ for c in insp.get_columns("inc")}
    assert cols == {
        "sys_id": "TEXT",
        "number": "TEXT",
        "state": "TEXT",
        "priority": "INTEGER",
        "assigned_to": "TEXT",
        "caller_name": "TEXT",
    }


def test_pandas_round_trip(engine: sa.Engine) -> None:
    frame = pd.read_sql("SELECT sys_id, priority FROM inc WHERE state = 'closed'", engine)
    assert frame.to_dict("list") == {"sys_id": ["b2", "a4"], "priority": [3, 3]}
    frame.to_sql("closed_copy", engine, index=False)  # a native table in the same file
    back = pd.read_sql("SELECT count(*) AS n FROM closed_copy", engine)
    assert int(back["n"][0]) == 2


def test_core_insert_update_delete(
    engine: sa.Engine, api_config: tuple[IncidentsAPI, Path]
) -> None:
    api = api_config[0]
    inc = sa.Table("inc", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        assert (
            conn.execute(inc.update().where(inc.c.state == "closed").values(priority=1)).rowcount
            == 2
        )
        result = conn.execute(inc.insert().values(number="n", state="new", caller_name="Linus"))
        assert result.rowcount == 1
        new = conn.execute(sa.select(inc.c.caller_name).where(inc.c.state == "new")).all()
        assert [tuple(r) for r in new] == [("Linus",)]
        conn.execute(inc.delete().where(inc.c.sys_id == "a4"))
    ds = api.dataset("incidents")
    assert ds.get("b2")["priority"] == 1 and ds.get("a4") is None
    assert sorted(r.method for r in api.requests if r.method != "GET") == [
        "DELETE",
        "PATCH",
        "PATCH",
        "POST",
    ]


def test_pool_shares_one_runtime(engine: sa.Engine) -> None:
    with engine.connect() as c1, engine.connect() as c2:
        r1 = c1.connection.dbapi_connection.runtime  # type: ignore[union-attr]
        r2 = c2.connection.dbapi_connection.runtime  # type: ignore[union-attr]
    assert r1 is r2 and isinstance(r1, Runtime)
    assert engine.dialect.runtime is r1  # type: ignore[attr-defined]


def test_in_memory_url(api_config: tuple[IncidentsAPI, Path]) -> None:
    eng = sa.create_engine(f"remotetables://?config={api_config[1]}")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM inc").scalar() == 7
    finally:
        eng.dispose()


def test_bad_url_options_are_refused(api_config: tuple[IncidentsAPI, Path]) -> None:
    with pytest.raises(sa.exc.ArgumentError, match="unknown remotetables URL option"):
        sa.create_engine(f"remotetables://?config={api_config[1]}&usr=alice").connect()


# ---------------------------------------------------------------- per user


@pytest.fixture
def oauth_config(write_config: Callable[..., Path]) -> Iterator[tuple[IncidentsAPI, Path]]:
    with (
        DemoAuthServer() as auth,
        IncidentsAPI({"incidents": make_rows()}, token_validator=auth.validate_token) as api,
    ):
        text = (
            f'[providers.demo]\nissuer = "{auth.issuer}"\nclient_id = "remotetables-demo"\n'
            'scopes = ["incidents.read"]\n'
        )
        text += table_toml("inc", api.base_url, "update = true")
        yield api, write_config(text)


def walk(req: Any) -> str:
    return walk_consent(req.authorization_url, username=req.user, password=req.user)


def test_two_users_two_engines_get_their_own_rows(
    oauth_config: tuple[IncidentsAPI, Path], tmp_path: Path
) -> None:
    api, config = oauth_config
    store = MemoryTokenStore()
    args = {"consent": walk, "token_store": store}
    alice = sa.create_engine(engine_url(tmp_path / "a.db", config, user="alice"), connect_args=args)
    # the URL's username is the session user too (what impersonating BI servers set)
    bob_url = engine_url(tmp_path / "b.db", config).set(username="bob")
    bob = sa.create_engine(bob_url, connect_args=args)
    try:
        q = "SELECT sys_id FROM inc ORDER BY sys_id"
        with alice.connect() as ca, bob.connect() as cb:
            assert [r[0] for r in ca.exec_driver_sql(q)] == ["a1", "a2", "a3", "a4", "s1"]
            assert [r[0] for r in cb.exec_driver_sql(q)] == ["b1", "b2", "s1"]
            assert cb.exec_driver_sql("SELECT current_user()").scalar() == "bob"
        with bob.begin() as cb:
            cb.exec_driver_sql("UPDATE inc SET priority = 8 WHERE sys_id = 'b2'")
    finally:
        alice.dispose()
        bob.dispose()
    users = {(r.user, r.method) for r in api.requests}
    assert users == {("alice", "GET"), ("bob", "GET"), ("bob", "PATCH")}
    assert api.dataset("incidents").get("b2")["priority"] == 8


def test_set_user_does_not_outlive_the_checkout(
    oauth_config: tuple[IncidentsAPI, Path], tmp_path: Path
) -> None:
    """A pooled connection goes back as the URL's user: the next checkout gets alice's token
    and rows, not those of whoever set_user() named during the previous one (an engine whose
    SQL may switch users: lock_user=false; by default SQL cannot, see test_sqlguard.py)."""
    _api, config = oauth_config
    args = {"consent": walk, "token_store": MemoryTokenStore()}
    url = engine_url(tmp_path / "a.db", config, user="alice", lock_user="false")
    eng = sa.create_engine(url, connect_args=args, pool_size=1)
    try:
        q = "SELECT current_user(), group_concat(sys_id) FROM (SELECT sys_id FROM inc ORDER BY 1)"
        with eng.connect() as c:
            c.exec_driver_sql("SELECT set_user('bob')")
            assert c.exec_driver_sql(q).one() == ("bob", "b1,b2,s1")
        with eng.connect() as c:
            assert c.exec_driver_sql(q).one() == ("alice", "a1,a2,a3,a4,s1")
    finally:
        eng.dispose()


def test_consent_required_reaches_caller_with_url(
    oauth_config: tuple[IncidentsAPI, Path], tmp_path: Path
) -> None:
    _, config = oauth_config
    eng = sa.create_engine(
        engine_url(tmp_path / "w.db", config, user="carol", consent="raise"),
        connect_args={"token_store": MemoryTokenStore()},
    )
    try:
        with eng.connect() as conn, pytest.raises(sa.exc.OperationalError) as info:
            conn.exec_driver_sql("SELECT count(*) FROM inc").all()
    finally:
        eng.dispose()
    orig = info.value.orig
    assert isinstance(orig, ConsentRequired)
    assert orig.user == "carol" and orig.provider == "demo"
    assert orig.authorization_url and orig.authorization_url.startswith("http://127.0.0.1:")
    assert "code_challenge=" in orig.authorization_url


def test_pandas_with_a_per_user_engine(
    oauth_config: tuple[IncidentsAPI, Path], tmp_path: Path
) -> None:
    """read_sql_table reflects the remote table (key as primary key) and reads only the URL
    user's rows, with that user's token; read_sql too; the engine stays locked to that user."""
    api, config = oauth_config
    url = engine_url(tmp_path / "bob.db", config).set(username="bob")
    eng = sa.create_engine(url, connect_args={"consent": walk, "token_store": MemoryTokenStore()})
    try:
        frame = pd.read_sql_table("inc", eng, columns=["sys_id", "state"])
        assert sorted(frame["sys_id"]) == ["b1", "b2", "s1"]
        counts = pd.read_sql("SELECT state, count(*) AS n FROM inc GROUP BY state", eng)
        assert counts.set_index("state")["n"].to_dict() == {"closed": 1, "open": 2}
        inc = sa.Table("inc", sa.MetaData(), autoload_with=eng)
        assert [c.name for c in inc.primary_key.columns] == ["sys_id"]
        # the engine stays locked to bob: pandas SQL cannot read as someone else
        with pytest.raises(pd.errors.DatabaseError, match="locked to user 'bob'"):
            pd.read_sql("SELECT set_user('alice') AS u", eng)
    finally:
        eng.dispose()
    assert {r.user for r in api.requests} == {"bob"}


def test_a_user_in_the_url_with_an_absolute_path(
    api_config: tuple[IncidentsAPI, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: ``remotetables://alice@//abs/path.db`` (two slashes after the ``@``) is the
    absolute path; one slash is relative to the working directory, as in SQLite's URLs."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the process's working directory, not our code
    config = api_config[1]
    db = tmp_path / "abs.db"
    assert db.is_absolute()
    for url, where in [
        (f"remotetables://alice@/{db}?config={config}", db),
        (f"remotetables://alice@/rel.db?config={config}", elsewhere / "rel.db"),
    ]:
        eng = sa.create_engine(url)
        try:
            with eng.connect() as c:
                assert c.execute(sa.text("SELECT current_user()")).scalar() == "alice"
                c.execute(sa.text("CREATE TABLE IF NOT EXISTS native(x)"))
                c.commit()
        finally:
            eng.dispose()
        assert where.exists(), url
