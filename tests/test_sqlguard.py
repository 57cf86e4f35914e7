"""A session user that SQL cannot change, and no way from SQL into the token store (issue 15 §2).

The authorizer (sqlguard.py) always refuses ATTACH of the token store and its key; a connection
locked to its user (``connect(..., lock_user=True)``, ``--lock-user``, a SQLAlchemy URL naming a
user) also refuses ``set_user()``, every ATTACH, extension loading and file PRAGMAs, from SQL,
the shell and SQLAlchemy. The program that opened the connection can still switch users.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest
import sqlalchemy as sa

import remotetables
from remotetables.errors import NotAuthorized
from remotetables.shell import RemoteShell


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A token store file (a real SQLite file with a grant table) and a key file."""
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    db = apsw.Connection(str(d / "tokens.db"))
    db.execute("CREATE TABLE oauth_token(subject TEXT); INSERT INTO oauth_token VALUES ('bob')")
    db.close()
    (d / "token.key").write_bytes(os.urandom(32))
    return d


@pytest.fixture
def config(write_config: Callable[..., Path], state: Path) -> Path:
    return write_config(
        f'[settings]\ntoken_store = "{state}/tokens.db"\nkey_file = "{state}/token.key"\n'
    )


@pytest.fixture
def connect(config: Path, tmp_path: Path) -> Iterator[Callable[..., remotetables.Connection]]:
    conns: list[remotetables.Connection] = []

    def make(**kw: object) -> remotetables.Connection:
        conn = remotetables.connect(tmp_path / "work.db", config, **kw)  # type: ignore[arg-type]
        conns.append(conn)
        return conn

    yield make
    for c in conns:
        c.close()


def store_spellings(state: Path, tmp_path: Path) -> list[str]:
    """Ways to name the token store file in an ATTACH."""
    (tmp_path / "link.db").symlink_to(state / "tokens.db")
    os.link(state / "tokens.db", tmp_path / "hard.db")
    rel = os.path.relpath(state / "tokens.db")
    return [
        str(state / "tokens.db"),
        str(state / "sub" / ".." / "tokens.db"),
        rel,
        str(tmp_path / "link.db"),
        str(tmp_path / "hard.db"),
        f"file:{state / 'tokens.db'}?mode=ro",
        "file://localhost" + str(state / "tokens.db").replace("/", "%2F").replace("%2F", "/", 1),
        str(state / "tokens.db") + "-wal",
        str(state / "token.key"),
    ]


def test_attach_of_the_token_store_is_refused_by_every_spelling(
    connect: Callable[..., remotetables.Connection], state: Path, tmp_path: Path
) -> None:
    conn = connect(user="alice")  # not locked: ATTACH of other files works
    conn.execute(f"ATTACH '{tmp_path / 'other.db'}' AS other")
    conn.execute("CREATE TABLE other.t(x)")
    for name in store_spellings(state, tmp_path):
        with pytest.raises(NotAuthorized, match="token store"):
            conn.execute(f"ATTACH '{name}' AS tok")
        with pytest.raises(NotAuthorized, match="token store"):
            conn.execute(f"VACUUM INTO '{name}'")
    for sql, params in (("ATTACH ? AS tok", [str(state / "tokens.db")]),
                        ("ATTACH '" + str(state) + "/' || 'tokens.db' AS tok", None)):  # fmt: skip
        with pytest.raises(NotAuthorized, match="string literal"):
            conn.execute(sql, params)
    attached = [r[1] for r in conn.execute("PRAGMA database_list") if r[1] != "temp"]
    assert attached == ["main", "other"]  # (temp holds the remote tables)


def test_locked_connection_refuses_set_user_attach_extensions_and_file_pragmas(
    connect: Callable[..., remotetables.Connection], tmp_path: Path
) -> None:
    conn = connect(user="alice", lock_user=True)
    assert conn.lock_user
    refused = [
        "SELECT set_user('bob')",
        "SELECT set_user(NULL)",
        f"ATTACH '{tmp_path / 'other.db'}' AS other",
        "ATTACH ':memory:' AS m",
        f"VACUUM INTO '{tmp_path / 'copy.db'}'",
        "SELECT load_extension('/nonexistent/ext')",
        f"PRAGMA temp_store_directory = '{tmp_path}'",
        "PRAGMA writable_schema = ON",
        "PRAGMA trusted_schema = ON",
    ]
    for sql in refused:
        with pytest.raises(NotAuthorized) as info:
            conn.execute(sql)
        assert "alice" in str(info.value), sql
    # through a view stored in the file (what a shared workbook could hold): still refused
    conn.execute("CREATE VIEW sneaky AS SELECT set_user('bob') AS u")
    with pytest.raises(NotAuthorized, match="unsafe use of set_user"):
        conn.execute("SELECT * FROM sneaky").fetchall()
    assert conn.execute("SELECT current_user()").fetchone() == ("alice",)
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "other.db").exists()
    # ordinary SQL, reflection and PRAGMAs SQLAlchemy uses still work
    conn.execute("CREATE TABLE notes(x)")
    assert conn.execute("PRAGMA main.table_info(notes)").fetchall()[0][1] == "x"
    conn.execute("PRAGMA read_uncommitted = 0")
    # the program that opened the connection may switch users
    conn.set_user("bob")
    assert conn.execute("SELECT current_user()").fetchone() == ("bob",)


def test_unlocked_connection_keeps_set_user_from_sql(
    connect: Callable[..., remotetables.Connection],
) -> None:
    conn = connect(user="alice")
    assert conn.execute("SELECT set_user('bob')").fetchone() == ("bob",)


def run_shell(conn: remotetables.Connection, script: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    RemoteShell(conn, stdin=io.StringIO(script), stdout=out, stderr=err).cmdloop(intro="")
    return out.getvalue(), err.getvalue()


def test_locked_shell_refuses_user_switches_attach_and_file_commands(
    connect: Callable[..., remotetables.Connection], state: Path, tmp_path: Path
) -> None:
    conn = connect(user="alice", lock_user=True)
    script = "\n".join(
        [
            ".user bob",
            "SELECT set_user('bob');",
            f"ATTACH '{state / 'tokens.db'}' AS tok;",
            f".open {state / 'tokens.db'}",
            f".read {state / 'token.key'}",
            f".output {tmp_path / 'out.txt'}",
            ".shell echo hi",
            ".py print(1)",
            ".load /nonexistent/ext",
            "SELECT 'still ' || current_user();",
            ".user",
            "",
        ]
    )
    out, err = run_shell(conn, script)
    assert out.splitlines() == ["still alice", "alice"]
    assert err.count("locked to user 'alice'") == 9, err
    assert "bob" not in out
    assert conn.user == "alice" and not (tmp_path / "out.txt").exists()


def test_unlocked_shell_attach_of_store_is_refused_other_files_work(
    connect: Callable[..., remotetables.Connection], state: Path, tmp_path: Path
) -> None:
    conn = connect(user="alice")
    out, err = run_shell(
        conn,
        f"ATTACH '{state / 'tokens.db'}' AS tok;\nATTACH '{tmp_path / 'o.db'}' AS o;\n"
        ".user bob\nSELECT current_user();\n",
    )
    assert "token store" in err and err.count("not allowed") == 1
    assert out.splitlines()[-1] == "bob"


def engine_url(tmp_path: Path, config: Path, **query: str) -> sa.URL:
    return sa.URL.create(
        "remotetables", database=str(tmp_path / "work.db"), query={"config": str(config), **query}
    )


@pytest.mark.parametrize("how", ["query", "username"])
def test_sqlalchemy_engine_for_a_user_is_locked_by_default(
    config: Path, state: Path, tmp_path: Path, how: str
) -> None:
    if how == "query":
        url = engine_url(tmp_path, config, user="alice")
    else:
        url = engine_url(tmp_path, config).set(username="alice")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            for sql in (
                "SELECT set_user('bob')",
                f"ATTACH '{state / 'tokens.db'}' AS tok",
                f"ATTACH '{tmp_path / 'o.db'}' AS o",
            ):
                with pytest.raises(sa.exc.ProgrammingError) as info:
                    c.exec_driver_sql(sql)
                assert isinstance(info.value.orig, NotAuthorized)
            assert c.exec_driver_sql("SELECT current_user()").scalar() == "alice"
    finally:
        engine.dispose()


def test_sqlalchemy_lock_user_false_lets_sql_switch_but_never_attach_the_store(
    config: Path, state: Path, tmp_path: Path
) -> None:
    engine = sa.create_engine(engine_url(tmp_path, config, user="alice", lock_user="false"))
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT set_user('bob')").scalar() == "bob"
            with pytest.raises(sa.exc.ProgrammingError, match="token store"):
                c.exec_driver_sql(f"ATTACH '{state / 'tokens.db'}' AS tok")
    finally:
        engine.dispose()
    with pytest.raises(sa.exc.ArgumentError, match="lock_user"):
        sa.create_engine(engine_url(tmp_path, config, user="alice", lock_user="maybe")).connect()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("remotetables://bob@/{db}?config={cfg}&user=alice", "two users: 'bob' .* user='alice'"),
        ("remotetables:///{db}?config={cfg}&user=alice&user=bob", "user is given 2 times"),
        ("remotetables:///{db}?config={cfg}&config={cfg}&user=alice", "config is given 2 times"),
        ("remotetables:///{db}?config={cfg}&user=a&lock_user=1&lock_user=0", "lock_user is given"),
    ],
)
def test_sqlalchemy_url_with_ambiguous_user_is_refused(
    tmp_path: Path, config: Path, url: str, message: str
) -> None:
    """Which user an engine runs as must never be a guess: the reviewer saw
    ``bob@...?user=alice`` use alice and ``user=alice&user=bob`` use bob, silently."""
    text = url.format(db=str(tmp_path / "work.db").lstrip("/"), cfg=config)
    text = text.replace(":///", ":////").replace("@/", "@//")
    with pytest.raises(sa.exc.ArgumentError, match=message):
        sa.create_engine(text).connect()
    same = f"remotetables://alice@/{tmp_path / 'work.db'}?config={config}&user=alice"
    engine = sa.create_engine(same)
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT current_user()").scalar() == "alice"
    finally:
        engine.dispose()


def test_bi_engine_for_alice_never_reads_bobs_rows_or_the_store(tmp_path: Path) -> None:
    """A BI server's engine made for alice, driven by SQL typed in its editor: whatever the SQL
    tries, the API only ever sees alice's token, and bob's grant stays as it was."""
    from tests.auth.test_oauth_e2e import make_env, walker

    with make_env(tmp_path) as env:
        cfg = env.toml()
        bob = env.connect(cfg, user="bob", consent=walker())
        assert {r[0] for r in bob.execute("SELECT assigned_to FROM incidents")} == {"bob"}
        bob.close()
        store = env.store()
        bob_before = store.get(env.key("bob"))
        assert bob_before is not None and bob_before.status == "active"
        store_file = tmp_path / "state" / "tokens.db"
        engine = sa.create_engine(
            engine_url(tmp_path, cfg, user="alice"),
            connect_args={"consent": walker(), "environ": env.environ, "clock": env.clock},
        )
        try:
            env.api.clear_requests()
            with engine.connect() as c:
                attempts = [
                    "SELECT set_user('bob')",
                    "SELECT set_user('bob'), assigned_to FROM incidents",
                    f"ATTACH '{store_file}' AS tok",
                    f"ATTACH 'file:{store_file}?mode=ro' AS tok",
                    f"VACUUM INTO '{tmp_path / 'copy.db'}'",
                    "SELECT load_extension('/nonexistent/x')",
                ]
                for sql in attempts:
                    with pytest.raises(sa.exc.ProgrammingError):
                        c.exec_driver_sql(sql)
                rows = c.exec_driver_sql("SELECT assigned_to FROM incidents").fetchall()
                assert rows and {r[0] for r in rows} == {"alice"}
                with pytest.raises(sa.exc.ProgrammingError):
                    c.exec_driver_sql("SELECT set_user(NULL)")
                again = c.exec_driver_sql(
                    "SELECT assigned_to FROM incidents WHERE assigned_to = 'bob'"
                ).fetchall()
                assert again == []
            import pandas as pd

            frame = pd.read_sql("SELECT DISTINCT assigned_to FROM incidents", engine)
            assert frame["assigned_to"].tolist() == ["alice"]
        finally:
            engine.dispose()
        assert env.api.requests and {r.user for r in env.api.requests} == {"alice"}
        bob_after = store.get(env.key("bob"))
        assert bob_after is not None and bob_after.version == bob_before.version
        assert bob_after.tokens == bob_before.tokens
        store.close()


def test_cli_lock_user_for_query_and_shell(config: Path, state: Path, tmp_path: Path) -> None:
    """`remotetables query --lock-user` and `remotetables shell --lock-user` (a real process)."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from remotetables.cli.main import main

    env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": ""}
    db = str(tmp_path / "work.db")
    args = ["query", db, "SELECT set_user('bob')", "-c", str(config), "-u", "alice"]
    locked = CliRunner().invoke(main, [*args, "--lock-user"], env=env, catch_exceptions=False)
    assert locked.exit_code == 1 and "locked to user 'alice'" in locked.output
    unlocked = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert unlocked.exit_code == 0 and "bob" in unlocked.output
    proc = subprocess.run(
        [sys.executable, "-m", "remotetables", "shell", db, "-c", str(config), "-u", "alice",
         "--lock-user"],
        input=f".user bob\nATTACH '{state / 'tokens.db'}' AS tok;\n.open {state / 'tokens.db'}\n"
        "SELECT current_user();\n",
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert proc.stdout.splitlines()[-1] == "alice", proc.stdout + proc.stderr
    assert proc.stderr.count("locked to user 'alice'") == 3, proc.stderr
    assert "Traceback" not in proc.stderr


def test_locked_without_a_user_says_the_program_must_set_one(
    write_config: Callable[..., Path], api: object, state: Path, tmp_path: Path
) -> None:
    from remotetables.errors import NoSessionUser
    from tests.conftest import incidents_table

    base = api.base_url  # type: ignore[attr-defined]
    cfg = write_config(
        f'[settings]\ntoken_store = "{state}/tokens.db"\nkey_file = "{state}/token.key"\n'
        '[providers.p]\nclient_id = "c"\nissuer = "http://127.0.0.1:9"\n'
        + incidents_table("inc", "link", base).replace(
            "[tables.inc]\n", '[tables.inc]\nprovider = "p"\n'
        )
    )
    conn = remotetables.connect(tmp_path / "w.db", cfg, lock_user=True)
    try:
        with pytest.raises(NoSessionUser, match="locked with no user") as info:
            conn.execute("SELECT count(*) FROM inc").fetchall()
        assert "set_user('name')" not in str(info.value)
    finally:
        conn.close()


def test_locked_shell_tokens_shows_only_its_users_grants(tmp_path: Path) -> None:
    from tests.auth.test_oauth_e2e import make_env, walker

    with make_env(tmp_path) as env:
        cfg = env.toml()
        for user in ("alice", "bob"):
            conn = env.connect(cfg, user=user, consent=walker())
            conn.execute("SELECT count(*) FROM incidents").fetchall()
            conn.close()
        unlocked = env.connect(cfg, user="alice")
        out, _ = run_shell(unlocked, ".tokens\n")
        unlocked.close()
        assert "alice" in out and "bob" in out
        locked = env.connect(cfg, user="alice", lock_user=True)
        out, err = run_shell(locked, ".tokens\n")
        locked.close()
        assert "alice" in out and "bob" not in out and err == ""
