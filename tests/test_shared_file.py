"""A database file shared by several users' sessions (issue 15 §2, outside review): what one
session stores in the file never runs as another user, never keeps another user from
connecting, and a locked session cannot damage the file for the others."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import remotetables
from remotetables.errors import NotAuthorized
from tests.auth.test_oauth_e2e import Env, make_env, walker


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path) as e:
        yield e


def open_as(env: Env, cfg: Path, db: Path, user: str, **kw: object) -> remotetables.Connection:
    return remotetables.connect(
        db,
        cfg,
        user=user,
        consent=walker(),
        environ=env.environ,
        clock=env.clock,
        **kw,  # type: ignore[arg-type]
    )


def test_a_trigger_planted_by_alice_never_reads_bobs_rows(env: Env, tmp_path: Path) -> None:
    """The reviewer's attack: alice (locked) plants a trigger that copies remote rows into a
    table she can read; bob (locked) fires it. Remote tables are direct-only: no stored
    trigger or view reads them; and a locked session cannot store a remote table at all."""
    cfg, db = env.toml(), tmp_path / "shared.db"
    alice = open_as(env, cfg, db, "alice", lock_user=True)
    alice.execute("CREATE TABLE main.notes(t)")
    with pytest.raises(NotAuthorized, match=r"CREATE VIRTUAL TABLE main.x"):
        alice.execute("CREATE VIRTUAL TABLE main.x USING remotetables(incidents)")
    alice.execute("CREATE TABLE main.loot(who, number, assigned_to)")
    alice.execute(
        "CREATE TRIGGER main.steal AFTER INSERT ON notes BEGIN INSERT INTO loot "
        "SELECT current_user(), number, assigned_to FROM incidents; END"
    )
    alice.execute("CREATE VIEW main.peek AS SELECT number, assigned_to FROM incidents")
    alice.commit()
    alice.close()

    bob = open_as(env, cfg, db, "bob", lock_user=True)
    assert bob.execute("SELECT count(*) FROM incidents").fetchone()[0] > 0  # bob's own, direct
    # the file's own schema cannot name the temp remote tables
    with pytest.raises(remotetables.Error, match=r"no such table: main.incidents"):
        bob.execute("INSERT INTO notes VALUES ('hello')")
    bob.rollback()
    with pytest.raises(remotetables.Error, match=r"no such table: main.incidents"):
        bob.execute("SELECT * FROM peek").fetchall()
    bob.close()

    alice = open_as(env, cfg, db, "alice", lock_user=True)
    assert alice.execute("SELECT count(*) FROM loot").fetchone() == (0,)
    alice.close()
    assert {r.user for r in env.api.requests} == {"bob"}  # alice's session never fetched


def test_a_stored_remote_table_is_not_readable_from_stored_schema(env: Env, tmp_path: Path) -> None:
    """Even a remote table stored in the file (unlocked, or ``persist_tables``) cannot be read
    from a stored trigger or view; the session's own TEMP views and triggers still work."""
    cfg, db = env.toml(), tmp_path / "shared.db"
    alice = open_as(env, cfg, db, "alice")
    alice.execute("CREATE TABLE main.notes(t)")
    alice.execute("CREATE TABLE main.loot(who, assigned_to)")
    alice.execute("CREATE VIRTUAL TABLE main.x USING remotetables(incidents)")
    alice.execute(
        "CREATE TRIGGER main.steal AFTER INSERT ON notes BEGIN INSERT INTO loot "
        "SELECT current_user(), assigned_to FROM main.x; END"
    )
    alice.commit()
    alice.close()

    bob = open_as(env, cfg, db, "bob", lock_user=True)
    with pytest.raises(remotetables.Error, match="unsafe use"):
        bob.execute("INSERT INTO notes VALUES ('hello')")
    bob.rollback()
    bob.execute("CREATE TEMP VIEW mine AS SELECT assigned_to FROM incidents")
    assert {r[0] for r in bob.execute("SELECT assigned_to FROM mine")} == {"bob"}
    bob.execute("CREATE TEMP TABLE ping(t)")
    bob.execute(
        "CREATE TEMP TRIGGER mirror AFTER INSERT ON ping BEGIN INSERT INTO main.loot "
        "SELECT current_user(), assigned_to FROM incidents LIMIT 1; END"
    )
    bob.execute("INSERT INTO ping VALUES ('own')")
    assert bob.execute("SELECT who, assigned_to FROM loot").fetchall() == [("bob", "bob")]
    bob.rollback()
    bob.close()


def test_a_planted_view_cannot_switch_the_readers_user(env: Env, tmp_path: Path) -> None:
    """On an unlocked connection too: a view stored in the file that calls set_user() (or any
    function of ours) fails instead of switching whoever reads it."""
    cfg, db = env.toml(), tmp_path / "shared.db"
    mallory = open_as(env, cfg, db, "alice")
    mallory.execute("CREATE VIEW main.v AS SELECT set_user('alice') AS x")
    mallory.execute("CREATE VIEW main.who AS SELECT current_user() AS u")
    mallory.execute("CREATE TABLE main.stamp(a, b DEFAULT (set_user('alice')))")
    mallory.commit()
    mallory.close()
    bob = open_as(env, cfg, db, "bob")
    for view in ("v", "who"):
        with pytest.raises(remotetables.Error, match="unsafe use"):
            bob.execute(f"SELECT * FROM {view}").fetchall()
    assert bob.execute("SELECT current_user()").fetchone() == ("bob",)
    with pytest.raises(remotetables.NotAuthorized, match="DEFAULT"):  # nor from a column DEFAULT
        bob.execute("INSERT INTO stamp(a) VALUES (1)")
    bob.execute("CREATE TEMP VIEW me AS SELECT current_user() AS u")  # the session's own: fine
    assert bob.execute("SELECT u FROM me").fetchone() == ("bob",)
    bob.close()


def test_a_native_table_of_a_remote_name_does_not_stop_other_users(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A native ``incidents`` in the file (made by an unlocked session; a locked one may not
    make it) no longer makes every later connect() fail: the remote table in temp wins for
    unqualified names, a warning says so, and ``main.incidents`` reaches the native one."""
    cfg, db = env.toml(), tmp_path / "shared.db"
    alice = open_as(env, cfg, db, "alice", lock_user=True)
    for sql in ("CREATE TABLE main.incidents(x)", "CREATE TABLE Incidents(x)",
                "CREATE VIEW main.INCIDENTS AS SELECT 1"):  # fmt: skip
        with pytest.raises(NotAuthorized, match=r"named (?i:incidents) in the database file"):
            alice.execute(sql)
    alice.execute("CREATE TEMP TABLE scratch(x)")  # other names, and temp: fine
    alice.close()
    plain = remotetables.connect(db, env.toml(tables=()))  # a session without remote tables
    plain.execute("CREATE TABLE main.incidents(x)")
    plain.execute("INSERT INTO main.incidents VALUES ('native')")
    plain.commit()
    plain.close()
    with caplog.at_level(logging.WARNING, logger="remotetables.schema"):
        bob = open_as(env, cfg, db, "bob", lock_user=True)
    assert "named incidents" in caplog.text and "main.<name>" in caplog.text
    assert {r[0] for r in bob.execute("SELECT assigned_to FROM incidents")} == {"bob"}
    assert bob.execute("SELECT x FROM main.incidents").fetchall() == [("native",)]
    bob.close()


def test_locked_connection_may_not_set_file_pragmas(env: Env, tmp_path: Path) -> None:
    cfg, db = env.toml(), tmp_path / "shared.db"
    conn = open_as(env, cfg, db, "alice", lock_user=True)
    for sql in ("PRAGMA schema_version = 1", "PRAGMA main.schema_version = 1",
                "PRAGMA locking_mode = EXCLUSIVE", "PRAGMA main.locking_mode=EXCLUSIVE",
                "PRAGMA journal_mode = OFF", "PRAGMA main.journal_mode=WAL"):  # fmt: skip
        with pytest.raises(NotAuthorized, match=r"PRAGMA .* on the database file"):
            conn.execute(sql).fetchall()
    for sql in ("PRAGMA schema_version", "PRAGMA journal_mode", "PRAGMA locking_mode",
                "PRAGMA temp.journal_mode = MEMORY"):  # fmt: skip
        conn.execute(sql).fetchall()  # reading, and temp: fine
    assert conn.execute("PRAGMA main.journal_mode").fetchone() == ("delete",)
    conn.close()
    unlocked = open_as(env, cfg, db, "alice")
    assert unlocked.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    unlocked.close()
