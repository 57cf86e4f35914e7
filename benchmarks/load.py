"""Load test: many threads, several users, injected faults, expiring tokens.

Each thread has its own connection (all sharing one Runtime: one HTTP pool, one token store)
and loops ``SELECT`` over a paginated remote table as a user picked round-robin, switching
users with ``set_user()``. The loopback API fails ``--fault-rate`` of its pages (500 or a
reset) and accepts only tokens of the demo authorization server, which expires every access
token every ``--expire-every`` seconds (so 401 -> single-flight refresh happens under load).

Invariants checked (exit status 1 if broken): no row of another user, no lost grant (every
user's stored token still works, one consent per user, no refresh-token reuse), no deadlock
(every thread ends within the run time plus a margin).

    python benchmarks/load.py --seconds 60 --threads 32
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import remotetables
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DemoAuthServer
from remotetables.errors import Error

USERS = ("alice", "bob", "carol")


@dataclass
class Report:
    seconds: float
    threads: int
    queries: int = 0
    rows: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    wrong_user_rows: int = 0
    wrong_row_count: int = 0
    stuck_threads: int = 0
    lost_grants: list[str] = field(default_factory=list)
    consents: int = 0
    refreshes: int = 0
    reuse_detected: int = 0
    faults_fired: int = 0
    api_requests: int = 0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]

    @property
    def ok(self) -> bool:
        return (
            not (
                self.wrong_user_rows
                or self.wrong_row_count
                or self.stuck_threads
                or self.lost_grants
            )
            and self.reuse_detected == 0
            and self.consents == len(USERS)
        )

    def text(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return textwrap.dedent(f"""\
            load: {self.threads} threads x {self.seconds:g} s, users {", ".join(USERS)}
            queries: {self.queries} ({self.queries / self.seconds:.1f}/s), rows: {self.rows}
            errors: {sum(self.errors.values())} ({kinds})
            latency: p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms
            api requests: {self.api_requests}, injected faults: {self.faults_fired}
            token refreshes: {self.refreshes}, consents: {self.consents}, refresh-token reuse: {self.reuse_detected}
            invariants: wrong-user rows {self.wrong_user_rows}, wrong row counts {self.wrong_row_count}, \
stuck threads {self.stuck_threads}, lost grants {len(self.lost_grants)} -> {"OK" if self.ok else "BROKEN"}""")


def _config(tmp: Path, issuer: str, base: str) -> Path:
    text = textwrap.dedent(f"""
        [settings]
        token_store = "{tmp / "tokens.db"}"
        key_file = "{tmp / "token.key"}"
        consent = "raise"
        [providers.demo]
        issuer = "{issuer}"
        client_id = "remotetables-demo"
        scopes = ["incidents.read"]
        read_timeout = 10
        max_retries = 4
        [tables.inc]
        provider = "demo"
        url = "{base}/styles/link/incidents"
        rows = ""
        pagination = "link"
        page_size_param = "limit"
        max_page_size = 25
        cache_ttl = 0
        [tables.inc.columns]
        sys_id = "TEXT"
        assigned_to = {{ type = "TEXT", param = "assigned_to" }}
        priority = {{ type = "INTEGER", param = "priority" }}
        """)
    path = tmp / "load.toml"
    path.write_text(text)
    return path


def run_load(
    *,
    seconds: float = 60.0,
    threads: int = 32,
    fault_rate: float = 0.05,
    expire_every: float = 2.0,
    n_rows: int = 300,
    workdir: Path | None = None,
) -> Report:
    """Run the load and return the report (the invariants are in ``Report.ok``)."""
    from tests.servers.walk import walk_consent  # the browser stand-in for the first consent

    tmpdir = tempfile.TemporaryDirectory() if workdir is None else None
    tmp = Path(tmpdir.name) if tmpdir is not None else workdir
    assert tmp is not None
    report = Report(seconds, threads)
    consents: list[str] = []

    def consent(req: Any) -> str:
        consents.append(req.user)
        return walk_consent(req.authorization_url, username=req.user, password=req.user)

    with (
        DemoAuthServer() as auth,
        IncidentsAPI(n_rows=n_rows, seed=11, token_validator=auth.validate_token) as api,
    ):
        first = remotetables.connect(
            ":memory:", config=_config(tmp, auth.issuer, api.base_url), consent=consent
        )
        expected: dict[str, int] = {}
        for user in USERS:  # one consent per user, before the load starts
            first.execute("SELECT set_user(?)", (user,))
            expected[user] = len(first.execute("SELECT sys_id FROM inc").fetchall())
        api.faults.fault_rate = fault_rate
        stop = threading.Event()
        lock = threading.Lock()

        def chaos() -> None:
            while not stop.wait(expire_every):
                auth.expire_access_tokens()

        def worker(index: int) -> None:
            conn = remotetables.connect(":memory:", runtime=first.runtime, consent=consent)
            n = index
            try:
                while not stop.is_set():
                    user = USERS[n % len(USERS)]
                    n += 1
                    conn.execute("SELECT set_user(?)", (user,))
                    t0 = time.perf_counter()
                    try:
                        rows = conn.execute("SELECT sys_id, assigned_to FROM inc").fetchall()
                    except Error as exc:
                        with lock:
                            report.errors[type(exc).__name__] += 1
                        continue
                    dt = time.perf_counter() - t0
                    wrong = sum(1 for r in rows if r[1] not in (user, None))
                    with lock:
                        report.queries += 1
                        report.rows += len(rows)
                        report.latencies.append(dt)
                        report.wrong_user_rows += wrong
                        report.wrong_row_count += len(rows) != expected[user]
            finally:
                conn.close()

        pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        chaos_thread = threading.Thread(target=chaos, daemon=True)
        for t in pool:
            t.start()
        chaos_thread.start()
        time.sleep(seconds)
        stop.set()
        margin = 60.0  # retries with backoff may still be running
        end = time.monotonic() + margin
        for t in pool:
            t.join(max(0.0, end - time.monotonic()))
        report.stuck_threads = sum(t.is_alive() for t in pool)
        chaos_thread.join(5)
        api.faults.fault_rate = 0.0
        # no lost grant: every user's stored token (after a refresh if needed) still works
        for user in USERS:
            first.execute("SELECT set_user(?)", (user,))
            try:
                got = len(first.execute("SELECT sys_id FROM inc").fetchall())
                if got != expected[user]:
                    report.lost_grants.append(f"{user}: {got} rows")
            except Error as exc:
                report.lost_grants.append(f"{user}: {type(exc).__name__}")
        report.consents = len(consents)
        report.refreshes = auth.stats.refreshes
        report.reuse_detected = auth.stats.refresh_reuse_detected
        report.faults_fired = len(api.faults.fired)
        report.api_requests = len(api.requests)
        first.close()
    if tmpdir is not None:
        tmpdir.cleanup()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--expire-every", type=float, default=2.0)
    parser.add_argument("--rows", type=int, default=300)
    args = parser.parse_args(argv)
    report = run_load(
        seconds=args.seconds,
        threads=args.threads,
        fault_rate=args.fault_rate,
        expire_every=args.expire_every,
        n_rows=args.rows,
    )
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.servers.walk
    raise SystemExit(main())
