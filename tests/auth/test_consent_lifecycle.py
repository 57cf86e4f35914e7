"""Consent lifecycle defects of issue 15 §3: a callback's own exception, no silent waits, and
consent single-flight across processes through the token store's pending-consent lease."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remotetables.auth.consent import ConsentRequest, browser_consent
from remotetables.errors import ConsentFailed, ConsentRequired
from tests.auth.test_oauth_e2e import Env, make_env, walker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with make_env(tmp_path, clock=time.time) as e:
        yield e


def query(env: Env, consent: object) -> list[tuple[object, ...]]:
    conn = env.connect(user="alice", consent=consent)
    try:
        return conn.execute("SELECT DISTINCT assigned_to FROM incidents").fetchall()
    finally:
        conn.close()


def test_a_callbacks_own_exception_becomes_consent_failed_naming_provider_and_user(
    env: Env,
) -> None:
    def broken(req: ConsentRequest) -> str:
        raise RuntimeError("the kiosk browser crashed")

    with pytest.raises(ConsentFailed) as info:
        query(env, broken)
    err = info.value
    assert err.provider == "demo" and err.user == "alice"
    assert "demo" in str(err) and "alice" in str(err) and "RuntimeError" in str(err)
    assert isinstance(err.__cause__, RuntimeError)
    assert env.store().get(env.key("alice")) is None  # nothing stored

    def no_url(req: ConsentRequest) -> str:
        return None  # type: ignore[return-value]

    with pytest.raises(ConsentFailed, match="not the redirect URL"):
        query(env, no_url)


def test_keyboard_interrupt_in_a_callback_passes_through(env: Env) -> None:
    def interrupted(req: ConsentRequest) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        query(env, interrupted)
    # the interrupted consent left no lease behind: the next one runs at once
    assert query(env, walker()) == [("alice",)]


def test_no_browser_and_no_terminal_fails_at_once_with_the_url_and_the_login_command(
    env: Env,
) -> None:
    opened: list[str] = []

    def no_browser(url: str) -> bool:
        opened.append(url)
        return False

    # before the fix this waited the whole timeout, then failed without saying what to do
    consent = browser_consent(timeout=5, open_browser=no_browser, paste=None, out=sys.stderr)
    with pytest.raises(ConsentRequired) as info:
        query(env, consent)
    text = str(info.value)
    assert "remotetables login demo --user alice" in text
    assert opened and opened[0] in text and info.value.authorization_url == opened[0]
    assert info.value.user == "alice"


# ---------------------------------------------------------------- across processes

CHILD = textwrap.dedent(
    """
    import os, pathlib, sys, time
    import remotetables
    from tests.servers.walk import walk_consent

    config, marks = sys.argv[1], pathlib.Path(sys.argv[2])

    def consent(req):
        (marks / f"consent-{os.getpid()}").write_text(req.user)
        # give a second consent (the defect) time to start: both marks would then be there
        deadline = time.time() + 4
        while time.time() < deadline and len(list(marks.glob("consent-*"))) < 2:
            time.sleep(0.05)
        return walk_consent(req.authorization_url, username=req.user, password=req.user)

    (marks / f"ready-{os.getpid()}").write_text("")
    while len(list(marks.glob("ready-*"))) < 2:  # start the queries together
        time.sleep(0.01)
    conn = remotetables.connect(
        ":memory:", config=config, user="alice", consent=consent,
        environ={"REMOTETABLES_NO_KEYRING": "1"},
    )
    print(sorted(conn.execute("SELECT DISTINCT assigned_to FROM incidents").fetchall()))
    conn.close()
    """
)


def test_two_processes_started_at_once_make_exactly_one_consent(env: Env, tmp_path: Path) -> None:
    config = env.toml()
    env.store().close()  # the store file and its key exist, as after a first run
    marks = tmp_path / "marks"
    marks.mkdir()
    child_env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(config), str(marks)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == "[('alice',)]"
    assert len(list(marks.glob("consent-*"))) == 1
    assert len(env.cap.forms("/token", grant="authorization_code")) == 1
    record = env.store().get(env.key("alice"))
    assert record is not None and record.status == "active" and record.version == 1


# ---------------------------------------------------------------- the lease, in one process
# Two runtimes on one store file behave as two processes: each has its own store connection,
# locks and OAuth service; only the store is shared.

Q = "SELECT DISTINCT assigned_to FROM incidents"


def two_sessions(
    env: Env, holder: Callable[[ConsentRequest], str], *, holder_may_finish: threading.Event
) -> tuple[dict[str, Any], list[str]]:
    """alice queries in two 'processes' at once; the first asks through ``holder``; the
    second must not ask. Returns what each got (rows or the exception) and who was asked."""
    cfg = env.toml()
    asked: list[str] = []
    results: dict[str, Any] = {}
    first_asking, second_waiting = threading.Event(), threading.Event()

    def first_consent(req: ConsentRequest) -> str:
        asked.append("first")
        first_asking.set()
        assert holder_may_finish.wait(30)
        return holder(req)

    def second_consent(req: ConsentRequest) -> str:
        asked.append("second")
        return walker()(req)

    def waiting_sleep(seconds: float) -> None:
        second_waiting.set()
        time.sleep(min(seconds, 0.05))

    def run(name: str, consent: Callable[[ConsentRequest], str], **kw: Any) -> None:
        conn = env.connect(cfg, consent=consent, **kw)
        try:
            results[name] = conn.execute(Q).fetchall()
        except BaseException as exc:
            results[name] = exc
        finally:
            conn.close()

    first = threading.Thread(target=run, args=("first", first_consent))
    first.start()
    assert first_asking.wait(30)
    second = threading.Thread(
        target=run, args=("second", second_consent), kwargs={"sleep": waiting_sleep}
    )
    second.start()
    assert second_waiting.wait(30)  # it found the lease taken and waits
    holder_may_finish.set()
    first.join(60)
    second.join(60)
    return results, asked


def test_a_waiting_process_uses_the_grant_the_other_one_got(env: Env) -> None:
    results, asked = two_sessions(env, walker(), holder_may_finish=threading.Event())
    assert results == {"first": [("alice",)], "second": [("alice",)]}
    assert asked == ["first"]
    assert len(env.cap.forms("/token", grant="authorization_code")) == 1


def test_a_waiting_process_fails_with_the_other_ones_failure(env: Env) -> None:
    def denied(req: ConsentRequest) -> str:
        raise RuntimeError("the user closed the window")

    results, asked = two_sessions(env, denied, holder_may_finish=threading.Event())
    assert asked == ["first"]
    assert isinstance(results["first"], ConsentFailed)
    err = results["second"]
    assert isinstance(err, ConsentFailed), err
    assert "another process" in str(err) and err.user == "alice" and err.provider == "demo"
    assert "RuntimeError" in str(err)
    assert env.store().get(env.key("alice")) is None


def test_a_lease_left_by_a_dead_process_is_taken_over_at_once(env: Env) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = f"{socket.gethostname()}:{int(dead.stdout)}:0badc0de"
    store = env.store()
    assert store.try_consent_lease(
        env.key("alice"), owner=owner, now=time.time(), lease_seconds=600
    )
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        assert len(naps) < 40, "waited for a dead process"
        time.sleep(seconds)

    conn = env.connect(consent=walker(), sleep=sleep)
    try:
        assert conn.execute(Q).fetchall() == [("alice",)]
    finally:
        conn.close()
    lease = store.consent_lease(env.key("alice"))
    assert lease is not None and lease.owner is None and lease.error is None


TTY_CHILD = textwrap.dedent(
    """
    import os, sys
    import remotetables
    from remotetables.auth.consent import browser_consent

    config, tty = sys.argv[1], sys.argv[2]
    os.close(os.open(tty, os.O_RDWR))  # a session leader opening a terminal: its /dev/tty
    consent = browser_consent(timeout=20, open_browser=lambda url: False)
    conn = remotetables.connect(
        ":memory:", config=config, user="alice", consent=consent,
        environ={"REMOTETABLES_NO_KEYRING": "1"},
    )
    print(conn.execute("SELECT DISTINCT assigned_to FROM incidents").fetchall())
    conn.close()
    """
)


def test_no_browser_and_stdin_not_a_terminal_reads_the_paste_from_the_terminal(
    env: Env, tmp_path: Path
) -> None:
    """stdin is not a terminal (a script, /dev/null), but the process has one: the redirect
    address is pasted there (/dev/tty), and nothing goes to stdout but the rows."""
    import pty

    from tests.servers.walk import walk_consent

    config = env.toml()
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", TTY_CHILD, str(config), os.ttyname(slave)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
            start_new_session=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            url, seen = None, []
            for _ in range(50):
                line = proc.stderr.readline()
                seen.append(line)
                if not line or "/authorize?" in line:
                    url = line.strip() or None
                    break
            assert url, "".join(seen)
            landed = walk_consent(url, username="alice", password="alice")
            os.write(master, (landed + "\n").encode())
            err = proc.stderr.read()  # to the end (communicate() would skip what is buffered)
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, "".join(seen) + err
    assert out.strip() == "[('alice',)]"
    assert "paste the address" in "".join(seen) + err
