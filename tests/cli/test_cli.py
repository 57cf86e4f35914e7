"""The ``remotetables`` command line, through click's CliRunner (and subprocesses where a real
terminal-less process matters)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import remotetables
from remotetables.cli import main
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from tests.conftest import ROOT, incidents_table
from tests.servers.walk import walk_consent

COMMANDS = sorted(main.commands)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "REMOTETABLES_NO_KEYRING": "1",
        "REMOTETABLES_TOKEN_STORE": str(tmp_path / "env-tokens.db"),
        "REMOTETABLES_KEY_FILE": str(tmp_path / "env-token.key"),
        "REMOTETABLES_CONFIG": "",
    }


@pytest.fixture
def run(env: dict[str, str]) -> Callable[..., click.testing.Result]:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> click.testing.Result:
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def public_config(write_config: Callable[..., Path], api: IncidentsAPI, tmp_path: Path) -> Path:
    """One table on the shared no-auth API."""
    return write_config(
        f"""
        [settings]
        token_store = "{tmp_path}/tokens.db"
        key_file = "{tmp_path}/token.key"
        """
        + incidents_table("incidents", "link", api.base_url, max_page_size=50)
    )


@pytest.fixture
def oauth() -> Iterator[tuple[DemoAuthServer, IncidentsAPI]]:
    with (
        DemoAuthServer() as srv,
        IncidentsAPI(n_rows=60, seed=3, token_validator=srv.validate_token) as api,
    ):
        yield srv, api


@pytest.fixture
def oauth_config(
    write_config: Callable[..., Path], oauth: tuple[DemoAuthServer, IncidentsAPI], tmp_path: Path
) -> Path:
    srv, api = oauth
    head = f"""
        [settings]
        token_store = "{tmp_path}/tokens.db"
        key_file = "{tmp_path}/token.key"
        consent = "raise"
        [providers.demo]
        issuer = "{srv.issuer}"
        client_id = "remotetables-demo"
        scopes = ["incidents.read"]
        """
    table = incidents_table("incidents", "link", api.base_url, max_page_size=25)
    table = table.replace("[tables.incidents]\n", '[tables.incidents]\nprovider = "demo"\n')
    return write_config(textwrap.dedent(head) + table)


def consent_as(user: str, config: Path) -> None:
    """Give ``user`` a token through the library, as a browser would."""
    conn = remotetables.connect(
        ":memory:",
        config=config,
        user=user,
        consent=lambda req: walk_consent(
            req.authorization_url, username=req.user, password=req.user
        ),
        environ={"REMOTETABLES_NO_KEYRING": "1"},
    )
    try:
        conn.execute("SELECT count(*) FROM incidents").fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------- help and docs


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(run: Callable[..., click.testing.Result], command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert (
        f"Usage: main {command}" in result.output
        or f"Usage: remotetables {command}" in result.output
    )
    assert len(result.output.splitlines()) > 3


def test_every_command_is_documented() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [c for c in COMMANDS if f"remotetables {c}" not in text]
    assert not missing, f"commands not documented in README.md: {missing}"


def test_group_help_lists_commands(run: Callable[..., click.testing.Result]) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


# ---------------------------------------------------------------- query


def test_query_table_format(
    run: Callable[..., click.testing.Result], public_config: Path, tmp_path: Path
) -> None:
    result = run(
        "query", str(tmp_path / "w.db"), "SELECT number, state FROM incidents ORDER BY number LIMIT 3",
        "-c", str(public_config),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["number", "state"]
    assert lines[2].startswith("INC0000001")
    assert len(lines) == 5


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_query_machine_formats_agree(
    run: Callable[..., click.testing.Result], public_config: Path, tmp_path: Path, fmt: str
) -> None:
    sql = "SELECT number, priority, reopen_count FROM incidents WHERE state = ? ORDER BY number"
    db = tmp_path / "w.db"
    with remotetables.connect(db, config=public_config) as conn:
        expected = conn.execute(sql, ("open",)).fetchall()
    assert expected
    result = run("query", str(db), sql, "-c", str(public_config), "-p", "open", "-f", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(result.output)))
        assert rows[0] == ["number", "priority", "reopen_count"]
        got = [(r[0], int(r[1]), int(r[2]) if r[2] else None) for r in rows[1:]]
    elif fmt == "json":
        got = [(d["number"], d["priority"], d["reopen_count"]) for d in json.loads(result.output)]
    else:
        got = [
            (d["number"], d["priority"], d["reopen_count"])
            for d in map(json.loads, result.output.splitlines())
        ]
    assert got == expected


def test_query_empty_json_is_valid(
    run: Callable[..., click.testing.Result], public_config: Path, tmp_path: Path
) -> None:
    result = run(
        "query", str(tmp_path / "w.db"), "SELECT number FROM incidents WHERE state = 'nope'",
        "-c", str(public_config), "-f", "json",
    )  # fmt: skip
    assert result.exit_code == 0
    assert json.loads(result.output) == []


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_query_json_gives_json_and_boolean_columns_their_json_types(
    run: Callable[..., click.testing.Result], public_config: Path, tmp_path: Path, fmt: str
) -> None:
    sql = (
        "SELECT number, tags, active, tags AS t2, active + 0 AS n, json_array(1) AS arr "
        "FROM incidents WHERE tags IS NOT NULL ORDER BY number LIMIT 5"
    )
    db = tmp_path / "w.db"
    with remotetables.connect(db, config=public_config) as conn:
        expected = conn.execute(sql).fetchall()
    assert expected
    result = run("query", str(db), sql, "-c", str(public_config), "-f", fmt)
    assert result.exit_code == 0, result.output
    docs = (
        json.loads(result.output)
        if fmt == "json"
        else list(map(json.loads, result.output.splitlines()))
    )
    for doc, (number, tags, active, t2, n, arr) in zip(docs, expected, strict=True):
        assert doc["number"] == number
        assert doc["tags"] == json.loads(tags) and isinstance(doc["tags"], list)
        assert doc["active"] is bool(active)
        # an alias of a column is still that column; an expression is what SQLite says it is
        assert doc["t2"] == json.loads(t2)
        assert doc["n"] == n and not isinstance(doc["n"], bool)
        assert doc["arr"] == arr == "[1]"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1; SELECT 2", "one SQL statement at a time"),
        ("", "no SQL statement given"),
        ("  ; -- nothing", "no SQL statement given"),
    ],
)
def test_query_runs_exactly_one_statement(
    run: Callable[..., click.testing.Result],
    public_config: Path,
    tmp_path: Path,
    sql: str,
    message: str,
) -> None:
    result = run("query", str(tmp_path / "w.db"), sql, "-c", str(public_config))
    assert result.exit_code == 2
    assert message in result.output
    ok = run("query", str(tmp_path / "w.db"), "SELECT 1; -- a comment", "-c", str(public_config))
    assert ok.exit_code == 0 and ok.output.split() == ["1", "-", "1"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM nowhere", "no such table: nowhere"),
        ("SELEKT 1", "syntax error"),
    ],
)
def test_query_errors_are_plain_messages(
    run: Callable[..., click.testing.Result],
    public_config: Path,
    tmp_path: Path,
    sql: str,
    message: str,
) -> None:
    result = run("query", str(tmp_path / "w.db"), sql, "-c", str(public_config))
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_config_says_what_to_do(
    run: Callable[..., click.testing.Result], tmp_path: Path
) -> None:
    os.chdir(tmp_path)
    result = run("tables")
    assert result.exit_code == 1
    assert "no configuration" in result.output and "--config" in result.output


def test_bad_config_names_file_and_key(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path]
) -> None:
    path = write_config(
        '[tables.t]\nurl = "http://127.0.0.1:1/x"\nbogus = 1\n[tables.t.columns]\na = "TEXT"\n'
    )
    result = run("tables", "-c", str(path))
    assert result.exit_code == 1
    assert str(path) in result.output and "bogus" in result.output
    assert "Traceback" not in result.output


def test_personal_table_without_user(
    run: Callable[..., click.testing.Result], oauth_config: Path, tmp_path: Path
) -> None:
    result = run(
        "query", str(tmp_path / "w.db"), "SELECT * FROM incidents", "-c", str(oauth_config)
    )
    assert result.exit_code == 1
    assert "--user NAME" in result.output


def test_query_as_user_without_token_says_how_to_connect(
    run: Callable[..., click.testing.Result], oauth_config: Path, tmp_path: Path
) -> None:
    result = run(
        "query", str(tmp_path / "w.db"), "SELECT * FROM incidents", "-c", str(oauth_config),
        "-u", "alice", "--consent", "prompt",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no redirect URL was entered" in result.output
    assert "Traceback" not in result.output


def test_query_uses_the_users_token(
    run: Callable[..., click.testing.Result], oauth_config: Path, tmp_path: Path
) -> None:
    consent_as("bob", oauth_config)
    result = run(
        "query", str(tmp_path / "w.db"), "SELECT DISTINCT assigned_to FROM incidents",
        "-c", str(oauth_config), "-u", "bob", "-f", "jsonl",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == [{"assigned_to": "bob"}]


# ---------------------------------------------------------------- tables and check


def test_tables_shows_columns_and_pushdown(
    run: Callable[..., click.testing.Result], public_config: Path
) -> None:
    result = run("tables", "-c", str(public_config))
    assert result.exit_code == 0, result.output
    assert "incidents  provider: none (public)" in result.output
    assert re.search(
        r"state\s+TEXT\s+= -> state; IN -> state \(one request per value\)", result.output
    )
    assert re.search(r"caller_name\s+TEXT\s+from caller\.name", result.output)
    assert "  read-only; rows cached 30 s\n" in result.output


def test_tables_shows_path_parameters_operators_and_sorting(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path]
) -> None:
    from tests.conftest import ROOT

    config = write_config((ROOT / "sql_examples" / "github_repos.toml").read_text(encoding="utf-8"))
    result = run("tables", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert re.search(
        r"owner\s+TEXT\s+= -> \{owner\} in the path; IN -> .*; required", result.output
    )
    assert re.search(
        r"updated_at\s+TEXT\s+>= -> since \(datetime\); ORDER BY -> sort=updated", result.output
    )


def test_check_ok(run: Callable[..., click.testing.Result], oauth_config: Path) -> None:
    result = run("check", "-c", str(oauth_config))
    assert result.exit_code == 0, result.output
    assert "provider demo: ok" in result.output
    assert "all good" in result.output


def test_check_reports_unreachable_and_unset(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path]
) -> None:
    with DemoAuthServer() as srv:
        gone = srv.issuer  # a port that nothing listens on once stopped
    path = write_config(
        f"""
        [providers.down]
        issuer = "{gone}"
        client_id = "x"
        connect_timeout = 2
        read_timeout = 2
        max_retries = 0
        [providers.gh]
        auth = "bearer"
        token_env = "REMOTETABLES_TEST_UNSET_TOKEN"
        """
    )
    result = run("check", "-c", str(path))
    assert result.exit_code == 1
    assert "provider down: PROBLEM" in result.output
    assert (
        "provider gh: PROBLEM: environment variable REMOTETABLES_TEST_UNSET_TOKEN is not set"
        in result.output
    )
    assert "2 providers with a problem" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fault", ["not a database", "bad key file"])
def test_check_reports_an_unusable_sqlite_store(
    run: Callable[..., click.testing.Result], oauth_config: Path, tmp_path: Path, fault: str
) -> None:
    consent_as("alice", oauth_config)
    assert run("check", "-c", str(oauth_config)).exit_code == 0
    if fault == "not a database":
        for extra in ("-wal", "-shm"):
            Path(f"{tmp_path}/tokens.db{extra}").unlink(missing_ok=True)
        Path(f"{tmp_path}/tokens.db").write_bytes(b"this is not SQLite" * 100)
        cause = "file is not a database"
    else:
        Path(f"{tmp_path}/token.key").write_text("short\n")
        cause = "token.key"
    result = run("check", "-c", str(oauth_config))
    assert result.exit_code == 1, result.output
    assert "provider demo: ok" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("token store "))
    assert line.startswith(f"token store {tmp_path}/tokens.db: PROBLEM: "), line
    assert cause in line
    assert "the token store with a problem" in result.output
    assert "all good" not in result.output and "Traceback" not in result.output


def test_check_reports_the_token_store(
    run: Callable[..., click.testing.Result], oauth_config: Path, tmp_path: Path
) -> None:
    result = run("check", "-c", str(oauth_config))
    assert f"token store {tmp_path}/tokens.db: ok: not created yet" in result.output
    assert not Path(f"{tmp_path}/tokens.db").exists()  # a check creates nothing
    consent_as("alice", oauth_config)
    result = run("check", "-c", str(oauth_config))
    assert result.exit_code == 0, result.output
    assert f"token store {tmp_path}/tokens.db: ok: readable, 1 grant(s)" in result.output


# ---------------------------------------------------------------- tokens, login, logout


def test_tokens_and_logout(
    run: Callable[..., click.testing.Result],
    oauth_config: Path,
    oauth: tuple[DemoAuthServer, IncidentsAPI],
) -> None:
    srv, _ = oauth
    assert "no tokens stored" in run("tokens", "-c", str(oauth_config)).output
    consent_as("alice", oauth_config)
    result = run("tokens", "-c", str(oauth_config))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("demo"))
    assert row.split()[:4] == ["demo", "alice", "alice", "active"]  # user, account, status
    assert "incidents.read" in row
    # never token material: nothing that looks like a long random token (a table's rule of
    # dashes under a wide column is not one)
    assert not re.search(r"(?=[-_]*[A-Za-z0-9])[A-Za-z0-9_\-]{30,}", result.output)
    # a grant that needs consent shows no expiry: its access token is gone
    with remotetables.connect(
        ":memory:", config=oauth_config, environ={"REMOTETABLES_NO_KEYRING": "1"}
    ) as conn:
        service = conn.runtime.oauth_service()
        key = service.key(conn.runtime.config.providers["demo"], "alice")
        service.store.mark_needs_consent(key, reason="test", now=conn.runtime.clock())
        result = run("tokens", "-c", str(oauth_config))
        row = next(line for line in result.output.splitlines() if line.startswith("demo"))
        # the account the grant belonged to stays shown until a new consent replaces it
        assert row.split()[:6] == ["demo", "alice", "alice", "needs_consent", "(test)", "-"]
        consent_as("alice", oauth_config)

    revoked_before = srv.stats.revocations
    result = run("logout", "demo", "-u", "alice", "-c", str(oauth_config))
    assert result.exit_code == 0, result.output
    assert "Revoked alice's token at demo and deleted it here." in result.output
    assert srv.stats.revocations > revoked_before
    assert "no tokens stored" in run("tokens", "-c", str(oauth_config)).output
    result = run("logout", "demo", "-u", "alice", "-c", str(oauth_config))
    assert "nothing to do" in result.output


def test_token_endpoint_and_revocation_requests_are_logged_at_debug_without_secrets(
    run: Callable[..., click.testing.Result],
    oauth_config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`login -vv` / `logout -vv` show each request to the authorization server: method,
    redacted URL, what it was, status, size; never the form (code, verifier, tokens, secret)."""
    url = r"http://127\.0\.0\.1:\d+/[\w./-]+"  # no query string
    line = (
        rf"provider demo: (GET|POST) {url} \((token request, (authorization_code|refresh_token)"
        rf"|revocation of the (refresh|access) token|introspection|metadata discovery at {url})\)"
        r" -> 200 \(\d+ bytes\)"
    )
    with caplog.at_level("DEBUG", logger="remotetables.auth"):
        consent_as("alice", oauth_config)  # what `login` runs
    asked = [r.getMessage() for r in caplog.records if r.getMessage().startswith("provider")]
    assert any("(token request, authorization_code)" in m for m in asked), asked
    for message in asked:
        assert re.fullmatch(line, message), message
    logger = logging.getLogger("remotetables")  # -vv sets it up for the whole process
    level, handlers = logger.level, list(logger.handlers)
    try:
        result = run("-vv", "logout", "demo", "-u", "alice", "-c", str(oauth_config))
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers
    assert result.exit_code == 0, result.output
    logged = re.findall(r"remotetables\.auth DEBUG (provider demo: POST .*)", result.stderr)
    assert any("(revocation of the refresh token) -> 200" in m for m in logged), result.stderr
    for message in logged:
        assert re.fullmatch(line, message), message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["login", "nope", "-u", "a"], "unknown provider 'nope'"),
        (["login", "demo"], "--user NAME"),
        (["login", "demo", "--system"], "personal integration"),
        (["logout", "demo", "--system"], "personal integration"),
    ],
)
def test_login_logout_misuse(
    run: Callable[..., click.testing.Result], oauth_config: Path, args: list[str], message: str
) -> None:
    result = run(*args, "-c", str(oauth_config))
    assert result.exit_code == 1
    assert message in result.output


def login_in_a_process(
    args: list[str], env: dict[str, str], *, find: str, answer: Callable[[str], str | None]
) -> tuple[int, str, str]:
    """Run `remotetables login ...` in a real process: wait for a stderr line matching ``find``
    (a regex whose group 1 is a URL), call ``answer(url)`` as the user would (its result, if
    any, is pasted on stdin), and return (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "remotetables", "login", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdin is not None
        url = None
        for _ in range(50):
            line = proc.stderr.readline()
            if not line:
                break
            found = re.search(find, line)
            if found:
                url = found.group(1)
                break
        assert url, "no URL printed"
        pasted = answer(url)
        out, err = proc.communicate(None if pasted is None else pasted + "\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_login_in_a_subprocess_with_pasted_redirect(
    oauth_config: Path, env: dict[str, str]
) -> None:
    """`remotetables login --consent prompt`: the URL is printed, the redirect URL pasted."""
    code, out, err = login_in_a_process(
        ["demo", "-u", "carol", "-c", str(oauth_config), "--consent", "prompt"],
        env,
        find=r"(\S+/authorize\?\S+)",
        answer=lambda url: walk_consent(url, username="carol", password="carol"),
    )
    assert code == 0, err
    assert "Connected carol to demo as carol." in out
    assert "refresh token: yes" in out


# ---------------------------------------------------------------- export


def test_export_is_readable_by_stdlib_sqlite3_in_another_process(
    run: Callable[..., click.testing.Result], oauth_config: Path, tmp_path: Path
) -> None:
    consent_as("alice", oauth_config)
    source = tmp_path / "work.db"
    with remotetables.connect(
        source, config=oauth_config, user="alice", environ={"REMOTETABLES_NO_KEYRING": "1"}
    ) as conn:
        expected = conn.execute(
            "SELECT number, state, priority, active FROM incidents ORDER BY number"
        ).fetchall()
    assert expected
    plain = tmp_path / "plain.db"
    result = run("export", str(source), "-u", "alice", "--to", str(plain), "-c", str(oauth_config))
    assert result.exit_code == 0, result.output
    assert f"incidents: {len(expected)} rows" in result.output
    script = (
        "import json, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "rows = db.execute('SELECT number, state, priority, active FROM incidents ORDER BY number').fetchall()\n"
        "meta = db.execute('SELECT table_name, user, rows FROM _remotetables_export').fetchall()\n"
        "kinds = db.execute(\"SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%VIRTUAL%'\").fetchone()[0]\n"
        "print(json.dumps({'rows': rows, 'meta': meta, 'virtual': kinds}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(plain)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = json.loads(out.stdout)
    assert [tuple(r) for r in got["rows"]] == [tuple(r) for r in expected]
    assert got["meta"] == [["incidents", "alice", len(expected)]]
    assert got["virtual"] == 0
    # a second export replaces the table instead of appending
    run(
        "export",
        str(source),
        "-u",
        "alice",
        "--to",
        str(plain),
        "-c",
        str(oauth_config),
        "-t",
        "incidents",
    )
    again = subprocess.run(
        [sys.executable, "-c", script, str(plain)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert len(json.loads(again.stdout)["rows"]) == len(expected)


def test_export_refuses_same_file_and_unknown_table(
    run: Callable[..., click.testing.Result], public_config: Path, tmp_path: Path
) -> None:
    db = tmp_path / "w.db"
    with remotetables.connect(db, config=public_config):
        pass
    result = run("export", str(db), "-u", "x", "--to", str(db), "-c", str(public_config))
    assert result.exit_code == 1 and "another file" in result.output
    result = run(
        "export",
        str(db),
        "-u",
        "x",
        "--to",
        str(tmp_path / "p.db"),
        "-t",
        "nope",
        "-c",
        str(public_config),
    )
    assert result.exit_code == 1 and "unknown remote table 'nope'" in result.output


def test_export_needs_a_user_only_for_personal_tables(
    run: Callable[..., click.testing.Result],
    public_config: Path,
    oauth_config: Path,
    tmp_path: Path,
) -> None:
    result = run(
        "export", str(tmp_path / "w.db"), "--to", str(tmp_path / "p.db"), "-c", str(public_config)
    )
    assert result.exit_code == 0, result.output
    assert "exported the rows to" in result.output
    with sqlite3.connect(tmp_path / "p.db") as plain:
        assert plain.execute("SELECT count(*) FROM incidents").fetchone()[0] > 0
    with sqlite3.connect(tmp_path / "p.db") as plain:
        meta = plain.execute("SELECT table_name, user FROM _remotetables_export").fetchall()
    assert meta == [("incidents", "(public)")]
    result = run(
        "export", str(tmp_path / "o.db"), "--to", str(tmp_path / "q.db"), "-c", str(oauth_config)
    )
    assert result.exit_code == 2
    assert "--user is needed: table incidents reads each user's own rows" in result.output
    # the target is for tools without the module: a file holding remote tables is refused
    result = run(
        "export", str(tmp_path / "w.db"), "--to", str(tmp_path / "w2.db"), "-c", str(public_config)
    )
    assert result.exit_code == 0
    with remotetables.connect(tmp_path / "w3.db", config=public_config, persist_tables=True):
        pass
    result = run(
        "export", str(tmp_path / "w.db"), "--to", str(tmp_path / "w3.db"), "-c", str(public_config)
    )
    assert result.exit_code == 1
    assert "holds remote tables (incidents): the copy must go to a plain SQLite" in result.output


def test_verbose_logs_requests_on_stderr(public_config: Path, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "remotetables"]
    query = [
        "query",
        str(tmp_path / "w.db"),
        "SELECT count(*) FROM incidents",
        "-c",
        str(public_config),
    ]
    quiet = subprocess.run([*args, *query], capture_output=True, text=True, timeout=60)
    loud = subprocess.run([*args, "-vv", *query], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    assert quiet.stdout == loud.stdout and quiet.stderr == ""
    assert re.search(
        r"remotetables\.http DEBUG GET http://127\.0\.0\.1:\d+/styles/link/incidents", loud.stderr
    )


def test_query_says_how_many_rows_a_write_changed(
    run: Callable[..., click.testing.Result], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from tests.test_writes import make_rows, table_toml

    with IncidentsAPI({"incidents": make_rows()}) as api:
        text = table_toml("inc", api.base_url, "update = true").replace('provider = "demo"\n', "")
        cfg = write_config(text)
        sql = "UPDATE inc SET priority = 9 WHERE sys_id IN ('a1', 'a2')"
        result = run("query", str(tmp_path / "w.db"), sql, "-c", str(cfg))
        assert result.exit_code == 0, result.output
        assert result.stdout == "" and result.stderr == "2 rows changed\n"
        assert api.dataset("incidents").get("a1")["priority"] == 9


def test_query_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`remotetables query ... | head -2` must not end with "Error: Broken pipe"."""
    import subprocess
    import sys

    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200000) SELECT x FROM c"
    cmd = [
        sys.executable,
        "-m",
        "remotetables",
        "query",
        str(tmp_path / "w.db"),
        sql,
        "-c",
        str(cfg),
        "-f",
        "csv",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # what `head` does once it has its lines
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert head == [b"x\n", b"1\n"]
    assert "Broken pipe" not in err and "Traceback" not in err


def test_login_system_in_a_subprocess_then_every_user_shares_it(
    oauth_config: Path, oauth: tuple[DemoAuthServer, IncidentsAPI], env: dict[str, str]
) -> None:
    """`remotetables login demo --system`: an administrator consents once; every user's queries use it."""
    system_config = oauth_config.with_name("system.toml")
    system_config.write_text(
        oauth_config.read_text().replace(
            'client_id = "remotetables-demo"',
            'client_id = "remotetables-demo"\nintegration = "system"',
        )
    )
    code, out, err = login_in_a_process(
        ["demo", "--system", "-c", str(system_config), "--consent", "prompt"],
        env,
        find=r"(\S+/authorize\?\S+)",
        # alice is the administrator who consents for the system integration
        answer=lambda url: walk_consent(url, username="alice", password="alice"),
    )
    assert "system" in out.lower(), out
    assert code == 0, err
    _srv, api = oauth
    api.clear_requests()
    seen = []
    for user in ("bob", "carol"):
        with remotetables.connect(
            ":memory:", config=system_config, user=user, consent="raise"
        ) as conn:
            seen.append(conn.execute("SELECT DISTINCT assigned_to FROM incidents").fetchall())
    assert seen[0] == seen[1] == [("alice",)]  # the shared identity's rows, for everyone
    fingerprints = {r.token_fp for r in api.requests}
    assert len(fingerprints) == 1 and None not in fingerprints


def test_login_with_the_device_grant_in_a_subprocess(
    write_config: Callable[..., Path], tmp_path: Path, env: dict[str, str]
) -> None:
    """`remotetables login demo -u bob --consent device`: code shown, approved elsewhere, stored."""
    with DemoAuthServer(device_interval=1) as srv:
        config = write_config(
            f"""
            [settings]
            token_store = "{tmp_path}/tokens.db"
            key_file = "{tmp_path}/token.key"
            [providers.demo]
            issuer = "{srv.issuer}"
            client_id = "remotetables-demo"
            scopes = ["incidents.read"]
            """
        )
        code, out, err = login_in_a_process(
            ["demo", "-u", "bob", "-c", str(config), "--consent", "device"],
            env,
            find=r"\(or open (\S+)\)",
            # approve on "another device"; nothing is pasted
            answer=lambda url: walk_consent(url, username="bob", password="bob") and None,
        )
        assert code == 0, err
        assert "bob" in out
        assert srv.stats.token_requests >= 1
    listing = subprocess.run(
        [sys.executable, "-m", "remotetables", "tokens", "-c", str(config)],
        capture_output=True, text=True, env={**os.environ, **env}, check=True,
    ).stdout  # fmt: skip
    assert re.search(r"demo\s+bob\s+bob\s+active", listing), listing
