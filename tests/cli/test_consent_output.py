"""Consent from the command line never writes into results, and never waits for nothing
(issue 15 §3): prompts go to stderr, a failed export leaves no file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from remotetables.cli.main import main
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from tests.conftest import incidents_table
from tests.servers.walk import walk_consent

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def oauth_config(tmp_path: Path) -> Iterator[Path]:
    with (
        DemoAuthServer() as srv,
        IncidentsAPI(n_rows=30, seed=5, token_validator=srv.validate_token) as api,
    ):
        head = textwrap.dedent(
            f"""
            [settings]
            consent_timeout = 15
            token_store = "{tmp_path}/tokens.db"
            key_file = "{tmp_path}/token.key"
            [providers.demo]
            issuer = "{srv.issuer}"
            client_id = "remotetables-demo"
            scopes = ["incidents.read"]
            """
        )
        table = incidents_table("incidents", "link", api.base_url, max_page_size=25)
        table = table.replace("[tables.incidents]\n", '[tables.incidents]\nprovider = "demo"\n')
        path = tmp_path / "remotetables.toml"
        path.write_text(head + table, encoding="utf-8")
        yield path


def no_display_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    }
    env["REMOTETABLES_NO_KEYRING"] = "1"
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{ROOT}"
    return env


def test_prompt_consent_goes_to_the_terminal_not_into_redirected_results(
    oauth_config: Path, tmp_path: Path
) -> None:
    """`remotetables query ... --format csv > out.csv`: the question is on stderr; the file
    holds only the CSV."""
    out_file = tmp_path / "out.csv"
    with out_file.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remotetables", "query", str(tmp_path / "w.db"),
             "SELECT DISTINCT assigned_to FROM incidents", "-c", str(oauth_config),
             "-u", "alice", "--consent", "prompt", "--format", "csv"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE, text=True,
            env=no_display_env(), start_new_session=True,  # no controlling terminal either
        )  # fmt: skip
        try:
            assert proc.stderr is not None and proc.stdin is not None
            url, seen = None, []
            for _ in range(50):
                line = proc.stderr.readline()
                seen.append(line)
                found = re.search(r"(\S+/authorize\?\S+)", line)
                if found or not line:
                    url = found.group(1) if found else None
                    break
            assert url, "no authorization URL on stderr"
            landed = walk_consent(url, username="alice", password="alice")
            proc.stdin.write(landed + "\n")
            proc.stdin.close()
            err = "".join(seen) + proc.stderr.read()  # the buffered rest too
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
    assert proc.returncode == 0, err
    assert "Paste the redirect URL:" in err
    assert out_file.read_text().splitlines() == ["assigned_to", "alice"]


def test_export_without_any_way_to_consent_fails_at_once_and_leaves_no_file(
    oauth_config: Path, tmp_path: Path
) -> None:
    """No browser, no terminal: fail naming the login command; no 0-byte target is left."""
    target = tmp_path / "plain.db"
    env = no_display_env()
    env["REMOTETABLES_CONFIG"] = ""
    result = CliRunner().invoke(
        main,
        ["export", str(tmp_path / "w.db"), "-u", "alice", "--to", str(target),
         "-c", str(oauth_config)],
        env={k: env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER",
                                     "REMOTETABLES_NO_KEYRING", "REMOTETABLES_CONFIG")},
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "remotetables login demo --user alice" in result.output
    assert not target.exists()
    assert list(tmp_path.glob("plain.db*")) == []


def test_export_with_browser_consent_but_nothing_to_open_fails_at_once(
    oauth_config: Path, tmp_path: Path
) -> None:
    """`--consent browser` where no browser opens and stdin is no terminal: the command fails
    at once with the URL and the login command (it used to wait consent_timeout in silence)."""
    target = tmp_path / "plain.db"
    proc = subprocess.run(
        [sys.executable, "-m", "remotetables", "export", str(tmp_path / "w.db"), "-u", "alice",
         "--to", str(target), "-c", str(oauth_config), "--consent", "browser"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=no_display_env(),
        timeout=120, start_new_session=True,  # no terminal at all: not even /dev/tty
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "remotetables login demo --user alice" in proc.stderr
    assert re.search(r"http://127\.0\.0\.1:\d+/authorize\?\S+", proc.stderr)
    assert proc.stdout == ""
    assert list(tmp_path.glob("plain.db*")) == []
