"""`remotetables demo`: servers, files, the non-interactive tour, the interactive shell on a pty."""

from __future__ import annotations

import os
import re
import select
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from remotetables.cli import main
from remotetables.demo.run import Demo, auto_consent, sign_in_and_approve
from remotetables.errors import ConsentFailed
from tests.servers.walk import walk_consent


def _tables(output: str) -> list[list[str]]:
    """The first column of every table printed after a `-- title` line."""
    blocks = []
    for block in output.split("\n-- ")[1:]:
        lines = block.splitlines()
        dash = next(i for i, line in enumerate(lines) if line.startswith("---"))
        body = []
        for line in lines[dash + 1 :]:
            if not line.strip() or line.startswith("("):
                break
            body.append(line.split()[0])
        blocks.append(body)
    return blocks


def test_demo_without_a_terminal_runs_the_tour(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "authorization server  http://127.0.0.1:" in out
    assert "alice, bob and carol" in out
    assert "[consent] alice has no token" in out and "[consent] bob has no token" in out
    alice_open, _by_state, bob_open, bob_count, tokens = _tables(out)
    assert alice_open and bob_open
    assert set(alice_open).isdisjoint(bob_open)  # same SQL, other user's rows
    assert bob_count == ["bob"]
    assert tokens == ["demo", "demo"]
    # user, the account that signed in at the provider, status
    assert re.search(r"demo\s+alice\s+alice\s+active", out)
    assert re.search(r"demo\s+bob\s+bob\s+active", out)
    assert (tmp_path / "remotetables.toml").exists() and (tmp_path / "demo.db").exists()


def test_demo_auto_and_unknown_user(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--auto", "--dir", str(tmp_path), "-u", "mallory"])
    assert result.exit_code == 1
    assert "not a demo user" in result.output


def test_each_user_sees_only_their_rows(tmp_path: Path) -> None:
    with Demo(tmp_path, n_rows=50) as demo:
        for user in ("alice", "carol"):
            conn = demo.connect(user, consent=auto_consent())
            try:
                owners = {r[0] for r in conn.execute("SELECT assigned_to FROM incidents")}
            finally:
                conn.close()
            assert owners == {user}


def test_demo_restarts_with_a_fresh_token_store(tmp_path: Path) -> None:
    for _ in range(2):
        with Demo(tmp_path, n_rows=20) as demo:
            conn = demo.connect("alice", consent=auto_consent())
            try:
                assert conn.execute("SELECT count(*) FROM incidents").fetchone()[0] > 0
            finally:
                conn.close()


def test_wrong_password_fails_clearly(tmp_path: Path) -> None:
    with Demo(tmp_path, n_rows=10) as demo:
        conn = demo.connect("alice", consent=auto_consent(passwords={"alice": "wrong"}))
        try:
            with pytest.raises(ConsentFailed, match="answered 401"):
                conn.execute("SELECT count(*) FROM incidents").fetchall()
        finally:
            conn.close()


def test_sign_in_and_approve_returns_the_callback(tmp_path: Path) -> None:
    with Demo(tmp_path, n_rows=10) as demo:
        seen: list[str] = []

        def consent(req: object) -> str:
            url = sign_in_and_approve(req.authorization_url, username="bob", password="bob")  # type: ignore[attr-defined]
            seen.append(url)
            return url

        conn = demo.connect("bob", consent=consent)
        try:
            conn.execute("SELECT count(*) FROM incidents").fetchall()
        finally:
            conn.close()
    assert len(seen) == 1
    assert seen[0].startswith("http://127.0.0.1/callback?") and "code=" in seen[0]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_interactive_demo_on_a_terminal(tmp_path: Path) -> None:
    """A terminal, no browser: the URL is printed, the pasted redirect accepted, rows shown;
    `.user bob` and the same SELECT show bob's rows after bob's consent."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
        }
        env.update(REMOTETABLES_NO_KEYRING="1", HOME=str(tmp_path), TERM="dumb")
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "remotetables.cli", "demo", "--dir", str(tmp_path)],
            env,
        )
    buf = bytearray()

    def read_until(pattern: str, timeout: float = 20) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = buf.decode(errors="replace")
            if re.search(pattern, text):
                return text
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    buf.extend(os.read(fd, 65536))
                except OSError:
                    break
        raise AssertionError(f"{pattern!r} not seen in:\n{buf.decode(errors='replace')}")

    def consent_for(user: str) -> None:
        text = read_until(r"Paste the redirect URL")
        url = re.findall(r"(http://127\.0\.0\.1:\d+/authorize\?\S+)", text)[-1]
        os.write(fd, (walk_consent(url, username=user, password=user) + "\n").encode())

    sql = "SELECT DISTINCT assigned_to FROM incidents;\n"
    try:
        read_until(r"alice@remotetables> ")
        os.write(fd, sql.encode())
        consent_for("alice")
        text = read_until(r"Paste the redirect URL[\s\S]*assigned_to[\s\S]*alice@remotetables> ")
        assert re.search(r"\balice\s", text.split("assigned_to")[-1])
        os.write(fd, b".user bob\n")
        read_until(r"bob@remotetables> ")
        del buf[:]
        os.write(fd, sql.encode())
        consent_for("bob")
        text = read_until(r"Paste the redirect URL[\s\S]*assigned_to[\s\S]*bob@remotetables> ")
        rows = text.split("assigned_to")[-1]
        assert re.search(r"\bbob\s", rows)
        assert "alice" not in rows
        os.write(fd, b".exit\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_readme_first_command_runs_as_a_process(tmp_path: Path) -> None:
    """`remotetables demo` in a real process with no terminal (tests/test_readme.py runs the
    README's exact command)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "remotetables", "demo", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    alice_open, _by_state, bob_open, _count, _tokens = _tables(proc.stdout)
    assert alice_open and bob_open and set(alice_open).isdisjoint(bob_open)
    assert "Traceback" not in proc.stderr


def test_demo_serve_keeps_the_servers_up_for_other_commands(tmp_path: Path) -> None:
    """`demo --serve`: the servers run until SIGTERM; another process logs bob in against them
    with a pasted redirect URL and queries his rows with the written config."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "remotetables", "demo", "--serve"),
            *("--dir", str(tmp_path), "--examples-port", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        head = []
        for line in proc.stdout:
            head.append(line)
            if line.startswith("Tokens from"):
                break
        text = "".join(head)
        config = tmp_path / "remotetables.toml"
        assert f"Config: {config}" in text
        env = {**os.environ, "REMOTETABLES_NO_KEYRING": "1"}
        base = ["-m", "remotetables"]
        with subprocess.Popen(
            [
                sys.executable,
                *base,
                "login",
                "demo",
                "-u",
                "bob",
                "-c",
                str(config),
                "--consent",
                "prompt",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as login:
            assert login.stderr is not None
            url = ""
            while not url:
                line = login.stderr.readline()
                assert line, "login ended before printing the authorization URL"
                if line.strip().startswith("http"):
                    url = line.strip()
            answer = walk_consent(url, username="bob", password="bob") + "\n"
            login.communicate(answer, timeout=60)
        assert login.returncode == 0
        sql = "SELECT current_user(), count(*) > 0 FROM incidents"
        out = subprocess.run(
            [sys.executable, *base, "query", str(tmp_path / "demo.db"), sql, "-c", str(config),
             "-u", "bob", "-f", "csv"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[1] == "bob,1"
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0 and rest.strip().endswith("demo servers stopped")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_demo_directory_is_private(tmp_path: Path) -> None:
    """README: tokens are 0600 in a 0700 directory; the demo's directory is made so."""
    old = os.umask(0o022)
    try:
        where = tmp_path / "new" / "demo"
        with Demo(where, n_rows=5) as demo:
            conn = demo.connect("alice", consent=auto_consent())
            try:
                conn.execute("SELECT count(*) FROM incidents").fetchone()
            finally:
                conn.close()
        assert _mode(where) == 0o700 and _mode(where.parent) == 0o700
        assert _mode(where / "tokens.db") == 0o600 and _mode(where / "token.key") == 0o600
        chosen = tmp_path / "chosen"
        chosen.mkdir(mode=0o755)
        with Demo(chosen, n_rows=5):
            pass
        assert _mode(chosen) == 0o755  # a directory the user gave keeps its mode
    finally:
        os.umask(old)


def test_the_default_demo_directory_is_narrowed_and_nothing_lands_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    older = data / "remotetables" / "demo"
    older.mkdir(parents=True)
    older.chmod(0o755)  # as an earlier version left it
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(
        main, ["demo"], env={"XDG_DATA_HOME": str(data)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert os.listdir(cwd) == []
    assert f"Files: {older}" in result.output
    assert _mode(older) == 0o700
    assert (older / "remotetables.toml").exists()


def test_without_a_config_the_cli_says_where_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./remotetables.toml here
    result = CliRunner().invoke(main, ["tables"], env={"REMOTETABLES_CONFIG": ""})
    assert result.exit_code == 1
    assert "no configuration: pass --config FILE" in result.output
    assert "README's Quick start" in result.output
    assert "run `remotetables demo --serve` and pass the config it prints with -c" in (
        " ".join(result.output.split())
    )
    assert "writes an example" not in result.output
