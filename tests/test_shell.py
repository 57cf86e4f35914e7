"""RemoteShell: module on every connection, dot-commands, progress, Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import remotetables
from remotetables.demo.api.server import IncidentsAPI
from remotetables.session import StatementStats
from remotetables.shell import ProgressReporter, RemoteShell, format_table
from tests.conftest import incidents_table


@pytest.fixture
def config(write_config: Callable[..., Path], api: IncidentsAPI, tmp_path: Path) -> Path:
    return write_config(
        f'[settings]\ntoken_store = "{tmp_path}/t.db"\nkey_file = "{tmp_path}/t.key"\n'
        + incidents_table("incidents", "link", api.base_url, max_page_size=50)
    )


def run_shell(
    conn: remotetables.Connection, script: str, progress: ProgressReporter | None = None
) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    shell = RemoteShell(conn, stdin=io.StringIO(script), stdout=out, stderr=err, progress=progress)
    shell.cmdloop(intro="")
    return out.getvalue(), err.getvalue()


@pytest.fixture
def conn(config: Path, tmp_path: Path) -> Iterator[remotetables.Connection]:
    c = remotetables.connect(tmp_path / "w.db", config=config, user="alice")
    yield c
    c.close()


def test_format_table_aligns_and_shows_null() -> None:
    text = format_table(["n", "name"], [(1, "a"), (None, "long name")])
    assert text.splitlines() == ["n     name", "----  ---------", "1     a", "NULL  long name"]


def test_query_and_stats(conn: remotetables.Connection) -> None:
    out, err = run_shell(conn, "SELECT count(*) FROM incidents;\n.stats\n")
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "250"
    stats = dict(line.split(None, 1) for line in lines[3:])
    assert stats["rows"] == "250"
    assert int(stats["pages"]) == 5  # 250 rows, 50 per page
    assert int(stats["requests"]) == 5


def test_stats_before_any_query(conn: remotetables.Connection) -> None:
    out, _ = run_shell(conn, ".stats\n")
    assert "no remote table has been queried yet" in out


def test_cache_show_and_clear(conn: remotetables.Connection) -> None:
    out, err = run_shell(
        conn,
        "SELECT count(*) FROM incidents WHERE state = 'open';\n.cache\n.cache clear\n.cache\n",
    )
    assert err == ""
    assert "incidents" in out and "public" in out
    assert "cleared 1 cached result set\n" in out
    assert out.rstrip().endswith("the row cache is empty")


def test_user_command_switches_user_and_prompt(conn: remotetables.Connection) -> None:
    out, err = run_shell(conn, ".user\n.user bob\nSELECT current_user();\n.user\n")
    assert err == ""
    assert out.splitlines() == ["alice", "now querying as bob", "bob", "bob"]


def test_user_command_rejects_bad_names(conn: remotetables.Connection) -> None:
    _, err = run_shell(conn, ".user a b\n")
    assert "Usage: .user ?NAME?" in err


def test_tokens_command_when_empty(conn: remotetables.Connection) -> None:
    out, err = run_shell(conn, ".tokens\n")
    assert err == ""
    assert "no OAuth provider in the config, so no token is stored" in out


@pytest.mark.parametrize(
    ("provider", "words"),
    [
        (
            '[providers.gh]\nauth = "bearer"\ntoken_env = "GH_TOKEN"\n',
            "bearer tokens come from environment variables: gh ($GH_TOKEN)",
        ),
        (
            '[providers.corp]\nissuer = "http://127.0.0.1:9"\nclient_id = "c"\n',
            "no tokens stored yet: query a remote table to connect",
        ),
    ],
)
def test_tokens_command_says_where_tokens_come_from(
    write_config: Callable[..., Path], tmp_path: Path, provider: str, words: str
) -> None:
    cfg = write_config(
        f'[settings]\ntoken_store = "{tmp_path}/t.db"\nkey_file = "{tmp_path}/t.key"\n' + provider
    )
    with remotetables.connect(
        ":memory:", config=cfg, environ={"REMOTETABLES_NO_KEYRING": "1"}
    ) as c:
        out, err = run_shell(c, ".tokens\n")
    assert err == "" and words in out


def test_help_lists_our_commands_first_under_their_own_heading(
    conn: remotetables.Connection,
) -> None:
    out, err = run_shell(conn, ".help\n")
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert lines[0] == "remotetables commands:"
    split = next(i for i, line in enumerate(lines) if line.startswith("SQLite shell commands"))
    ours = [line.split()[0] for line in lines[1:split] if line.startswith(".")]
    assert ours == [".user", ".tokens", ".cache", ".stats"]
    assert "Show or set who you query as" in " ".join(lines[1:split])
    rest = [line.split()[0] for line in lines[split + 1 :] if line.startswith(".")]
    assert len(rest) > 30 and ".tables" in rest and ".help" in rest
    assert not set(rest) & set(ours)
    # help on one command is APSW's, unchanged
    out, err = run_shell(conn, ".help user\n")
    assert "The first query of a new user" in out + err


def test_a_failing_script_goes_on_and_exits_1(
    config: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    from click.testing import CliRunner

    from remotetables.cli import main

    script = (
        "SELECT count(*) FROM incidents;\nSELECT no_such_column FROM incidents;\n"
        "SELECT 'still running';\n"
    )
    db = str(tmp_path / "s.db")
    args = ["shell", db, "-c", str(config), "-u", "alice"]
    result = CliRunner().invoke(main, args, input=script)
    assert result.exit_code == 1, result.output
    assert "250" in result.stdout and "still running" in result.stdout
    assert "no such column: no_such_column" in result.stderr
    ok = CliRunner().invoke(main, args, input="SELECT count(*) FROM incidents;\n")
    assert ok.exit_code == 0, ok.output

    # the API is down: each query fails with a connection error, and so does the shell
    down = write_config(
        f'[settings]\ntoken_store = "{tmp_path}/t.db"\nkey_file = "{tmp_path}/t.key"\n'
        + incidents_table("incidents", "link", "http://127.0.0.1:9", max_page_size=50)
    )
    args = ["shell", str(tmp_path / "d.db"), "-c", str(down), "-u", "alice"]
    result = CliRunner().invoke(main, args, input="SELECT count(*) FROM incidents;\n")
    assert result.exit_code == 1
    assert "incidents" in result.stderr and "127.0.0.1:9" in result.stderr


def test_token_expiry_is_shown_with_its_time_zone(write_config: Callable[..., Path]) -> None:
    import datetime as dt
    import re

    from remotetables.auth.store import MemoryTokenStore, TokenSet
    from remotetables.shell import _when, token_rows

    cet = dt.timezone(dt.timedelta(hours=1), "CET")
    assert _when(7200.0, 0.0, tz=cet) == "1970-01-01 03:00 CET (in 2 h)"
    assert _when(0.0, 10.0, tz=dt.timezone(dt.timedelta(hours=-5))) == (
        "1969-12-31 19:00 UTC-05:00 (expired)"
    )
    cfg = write_config('[providers.corp]\nissuer = "http://127.0.0.1:9"\nclient_id = "c"\n')
    store = MemoryTokenStore()
    with remotetables.connect(":memory:", config=cfg, token_store=store) as conn:
        service = conn.runtime.oauth_service()
        key = service.key(conn.runtime.config.providers["corp"], "alice")
        store.put(key, TokenSet("at", None, expires_at=conn.runtime.clock() + 600), now=0)
        headers, rows = token_rows(conn.runtime)
    (expiry,) = [r[headers.index("access token expires")] for r in rows]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d (?:[A-Za-z]+|UTC[+-]\d\d:\d\d) \(in 10 min\)", expiry
    )


def test_module_registered_after_open(conn: remotetables.Connection, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    out, err = run_shell(
        conn, f".open {other}\nSELECT current_user();\nSELECT count(*) FROM incidents;\n"
    )
    assert err == ""
    assert out.splitlines() == ["alice", "250"]


def test_progress_reporter_threshold_and_lines() -> None:
    now = [100.0]
    out = io.StringIO()
    rep = ProgressReporter(out, threshold=1.0, interval=0.5, clock=lambda: now[0], tty=False)
    stats = StatementStats(pages=1, rows=40, started=100.0)
    rep(stats)
    assert out.getvalue() == ""  # under a second: silent
    now[0] = 101.2
    stats.pages, stats.rows = 3, 120
    rep(stats)
    now[0] = 101.3
    rep(stats)  # within the interval: not repeated
    assert out.getvalue() == "fetching: 3 pages, 120 rows so far, 1 s (Ctrl-C to stop)\n"


def test_progress_reporter_tty_rewrites_and_wipes() -> None:
    now = [0.0]
    out = io.StringIO()
    rep = ProgressReporter(out, threshold=1.0, interval=0.0, clock=lambda: now[0], tty=True)
    now[0] = 2.0
    rep(StatementStats(pages=1, rows=1, started=0.0))
    rep.finish()
    assert out.getvalue() == "\r\x1b[Kfetching: 1 page, 1 rows so far, 2 s (Ctrl-C to stop)\r\x1b[K"


def test_shell_wipes_progress_before_output(conn: remotetables.Connection) -> None:
    out = io.StringIO()
    rep = ProgressReporter(out, threshold=0.0, interval=0.0, tty=True)
    sh = RemoteShell(conn, stdin=io.StringIO("SELECT count(*) FROM incidents;\n"), stdout=out,
                     stderr=out, progress=rep)  # fmt: skip
    sh.cmdloop(intro="")
    text = out.getvalue()
    assert "fetching: " in text
    assert text.endswith("\r\x1b[K250\n")


class InterruptOnce(ProgressReporter):
    """Simulates Ctrl-C arriving during the first fetch."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), tty=False)
        self.fired = False

    def __call__(self, stats: StatementStats) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def test_ctrl_c_during_fetch_and_the_shell_goes_on(conn: remotetables.Connection) -> None:
    rep = InterruptOnce()
    out, err = run_shell(
        conn,
        "SELECT count(*) FROM incidents;\nSELECT 40 + 2;\nSELECT count(*) FROM incidents;\n",
        rep,
    )
    assert rep.fired
    assert "Interrupted: the statement was stopped." in err
    assert out.splitlines() == ["42", "250"]


def test_ctrl_c_at_an_idle_prompt_says_nothing_was_stopped(conn: remotetables.Connection) -> None:
    out, err = io.StringIO(), io.StringIO()
    shell = RemoteShell(conn, stdin=io.StringIO(""), stdout=out, stderr=err)
    shell.handle_interrupt()  # what APSW's cmdloop calls on Ctrl-C at the prompt
    assert "nothing was running" in err.getvalue()
    assert "statement was stopped" not in err.getvalue()


def test_ctrl_c_in_a_real_process(write_config: Callable[..., Path], tmp_path: Path) -> None:
    """SIGINT to `remotetables shell` during a slow fetch: the statement stops, the shell goes on."""
    with IncidentsAPI(n_rows=200, latency=0.3) as slow:
        cfg = write_config(incidents_table("slow", "link", slow.base_url, max_page_size=10))
        env = {**os.environ, "REMOTETABLES_NO_KEYRING": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "remotetables.cli", "shell", str(tmp_path / "s.db"), "-c", str(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.write("SELECT count(*) FROM slow;\nSELECT 40 + 2;\n")
            proc.stdin.flush()
            line = ""
            for _ in range(40):  # 20 pages x 0.3 s: progress appears after about a second
                line = proc.stderr.readline()
                if "fetching:" in line or not line:
                    break
            assert "fetching:" in line, line
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            out, err = proc.communicate("SELECT 'still here';\n", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "Interrupted: the statement was stopped." in err
    assert "42" in out.splitlines() and "still here" in out.splitlines()
    assert "200" not in out.splitlines()  # the count never finished
    assert "Traceback" not in err
    assert proc.returncode == 0


def test_stats_are_per_statement(conn: remotetables.Connection) -> None:
    out, err = run_shell(
        conn,
        "SELECT count(*) FROM incidents;\n"
        "SELECT count(*) FROM incidents WHERE state = 'closed' AND priority = 1;\n.stats\n",
    )
    assert err == ""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split() == ["statistic", "value"])
    stats = dict(line.split(None, 1) for line in lines[head + 2 :])
    # the second statement only (one request or a cache hit), not 5 + that
    assert int(stats["requests"]) + int(stats["cache_hits"]) == 1
    assert int(stats["rows"]) < 250


def test_token_rows_name_a_personal_and_a_system_provider_on_one_client(
    write_config: Callable[..., Path],
) -> None:
    from remotetables.auth.service import SYSTEM_SUBJECT
    from remotetables.auth.store import MemoryTokenStore, TokenSet
    from remotetables.shell import token_rows

    issuer = 'issuer = "http://127.0.0.1:9"\nclient_id = "c"\n'
    cfg = write_config(
        f'[providers.corp]\n{issuer}[providers.corp_sys]\n{issuer}integration = "system"\n'
    )
    store = MemoryTokenStore()
    with remotetables.connect(":memory:", config=cfg, token_store=store) as conn:
        service = conn.runtime.oauth_service()
        providers = conn.runtime.config.providers
        for name, subject in (("corp", "alice"), ("corp_sys", SYSTEM_SUBJECT)):
            store.put(service.key(providers[name], subject), TokenSet("at", None), now=0)
        _, rows = token_rows(conn.runtime)
    assert sorted(r[:2] for r in rows) == [("corp", "alice"), ("corp_sys", "(system)")]
