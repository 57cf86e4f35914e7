"""A throw-away PostgreSQL server on 127.0.0.1 for the tests.

Debian's PostgreSQL 15 binaries (``/usr/lib/postgresql/15/bin``) are installed by
``scripts/install-postgres.sh`` when missing. The server refuses to run as root, so as root
``initdb``/``pg_ctl`` run via ``runuser -u postgres``; the data directory lives under /tmp and
is owned by that user. One server per test process (:func:`shared_server`), stopped at exit;
each test gets its own database (:func:`new_database`).

In a test module::

    from tests.pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_VERSION = os.environ.get("PG_VERSION", "15")
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
INSTALL_SCRIPT = ROOT / "scripts" / "install-postgres.sh"
SUPERUSER = "postgres"


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be installed or started here (the reason is the message)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_binaries() -> Path:
    """The bin directory, installing PostgreSQL first if needed; else :class:`PostgresUnavailable`."""
    if (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists():
        return PG_BIN
    if not INSTALL_SCRIPT.exists():
        raise PostgresUnavailable(f"{PG_BIN} is missing and {INSTALL_SCRIPT} is not there")
    proc = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 or not (PG_BIN / "initdb").exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise PostgresUnavailable(
            f"PostgreSQL {PG_VERSION} is not installed and {INSTALL_SCRIPT.name} failed "
            f"(exit {proc.returncode}): {' / '.join(tail)}"
        )
    return PG_BIN


class PostgresServer:
    """initdb + pg_ctl start on a random loopback port; ``stop()`` removes everything."""

    def __init__(self, *, durable: bool = False) -> None:
        """``durable``: commits survive :meth:`crash` (``synchronous_commit`` stays on)."""
        self.durable = durable
        self.bin = ensure_binaries()
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="rt-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self._started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> PostgresServer:
        if self._as_root:
            try:
                pw = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresUnavailable(
                    "there is no 'postgres' OS user to run the server"
                ) from None
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.base.chmod(0o700)
        self.sock.mkdir()
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        init = self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
            "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        pwfile.unlink()
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        last = ""
        for _ in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            opts = self._options()
            proc = self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", "60", "start", "-o", opts,
            )  # fmt: skip
            if proc.returncode == 0:
                self._started = True
                return self
            last = proc.stderr.strip() or self._log_tail()
        raise PostgresUnavailable(f"pg_ctl start failed: {last[-500:]}")

    def _options(self) -> str:
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off"
            f" -c synchronous_commit={'on' if self.durable else 'off'}"
            " -c full_page_writes=off -c max_connections=200"
        )

    def crash(self) -> None:
        """Stop at once (``-m immediate``: connections drop, as in an outage)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        """Start again on the same port after :meth:`crash`."""
        proc = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", "60", "start", "-o", self._options(),
        )  # fmt: skip
        if proc.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed: {proc.stderr.strip()[-500:]}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-500:]
        except OSError:
            return ""

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name is ours: [a-z0-9_]
        return self.url(name)


_lock = threading.Lock()
_server: PostgresServer | None = None
_failure: str | None = None


def shared_server() -> PostgresServer:
    """The process-wide server, started on first use and stopped at interpreter exit."""
    global _server, _failure
    with _lock:
        if _server is not None:
            return _server
        if _failure is not None:
            raise PostgresUnavailable(_failure)
        try:
            server = PostgresServer()
        except PostgresUnavailable as exc:
            _failure = str(exc)
            raise
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        atexit.register(server.stop)
        _server = server
        return server


def _server_or_skip() -> PostgresServer:
    try:
        return shared_server()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") and os.geteuid() == 0:
            # CI can install PostgreSQL: a failure there is a real failure, not a skip
            raise
        pytest.skip(f"PostgreSQL is not available: {exc}")


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PostgresServer]:
    """The shared loopback PostgreSQL server (skips when PostgreSQL cannot be installed)."""
    server = _server_or_skip()
    yield server
    # stopped at exit (several modules import this fixture, so one of them must not stop it)


@pytest.fixture(name="pg_url")
def pg_url_fixture(pg_server: PostgresServer) -> str:
    """A fresh, empty database on the shared server for one test."""
    return pg_server.create_database()


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A private server for a ``with`` block (scripts, benchmarks)."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
