"""Running one operation against one hostile behaviour in a forked child, and measuring it.

The child makes a fresh runtime (its own HTTP client and memory token store), runs the
operation once, and reports through a pipe: how long it took, how much its peak RSS grew
(``ru_maxrss`` at the end minus the RSS when it started: a fork starts its high-water mark at
the RSS it inherits), what it raised, and every text a user could see (``str``, ``repr``, the
formatted traceback with its chained causes, each log record at DEBUG). Its address space is
capped, so a runaway allocation fails the case instead of the machine; a child that does not
finish in time is killed, and the case fails.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import select
import signal
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.hostile import ISSUED_ACCESS, ISSUED_REFRESH, HostileServer

STATIC_KEY = "hostile-static-key-7Qx9Lm2vB"
CLIENT_SECRET = "hostile-client-secret-Zp4Hq8"
CODE = "hostile-auth-code-Yt6Rw1"
SEEDED_ACCESS = "hostile-seeded-access-3KdJ5"
SEEDED_REFRESH = "hostile-seeded-refresh-9WnF2"
KNOWN_SECRETS = (
    STATIC_KEY,
    CLIENT_SECRET,
    CODE,
    SEEDED_ACCESS,
    SEEDED_REFRESH,
    ISSUED_ACCESS,
    ISSUED_REFRESH,
)
ENV = {"HOSTILE_KEY": STATIC_KEY, "HOSTILE_SECRET": CLIENT_SECRET}

T = 1.5  # request_timeout and oauth_timeout of the suite's providers
OPS = ("query", "login", "refresh", "logout", "discovery")
ENDPOINT = {
    "query": "api",
    "login": "token",
    "refresh": "token",
    "logout": "revoke",
    "discovery": "discovery",
}
# what each operation may take: two API attempts (max_retries = 1) and the backoff between
# them (at most 0.5 s); one token call; a token call then a query; two revocation calls
# (refresh and access token); two metadata URLs
QUERY = 2 * T + 0.5
DEADLINE = {"query": QUERY, "login": T, "refresh": T + QUERY, "logout": 2 * T, "discovery": 2 * T}
MARGIN = 3.0  # a busy 2-core machine, fork and teardown
RSS_BOUND = 100 * 1024 * 1024  # peak RSS growth of one call
LIMIT = 1024 * 1024  # the suite's max_response_bytes
_TEXT_CAP = 200_000


def config_text(a: HostileServer, mode: str, *, new_keys: bool = True) -> str:
    """Providers and tables whose every endpoint is the hostile ``mode`` on server ``a``.

    ``new_keys=False`` leaves out the keys this suite's fixes added (oauth_timeout,
    max_response_bytes) so that the same case runs on code that does not know them."""
    base = f"{a.base_url}/m/{mode}"
    limits = "request_timeout = 1.5\nread_timeout = 1.0\nconnect_timeout = 1.0\nmax_retries = 1\n"
    if new_keys:
        limits += f"max_response_bytes = {LIMIT}\noauth_timeout = {T}\n"
    return textwrap.dedent(f"""
        [settings]
        consent = "raise"

        [providers.key]
        auth = "bearer"
        token_env = "HOSTILE_KEY"
        {{limits}}
        [providers.o]
        client_id = "hostile-client"
        client_secret_env = "HOSTILE_SECRET"
        authorization_endpoint = "{base}/authorize"
        token_endpoint = "{base}/token"
        revocation_endpoint = "{base}/revoke"
        {{limits}}
        [providers.d]
        issuer = "{base}"
        client_id = "hostile-discovery"
        {{limits}}
        [tables.t_page]
        provider = "key"
        url = "{base}/api"
        rows = "items"
        pagination = {{ style = "page", page_param = "page", total_pages_path = "total_pages" }}
        max_pages = 100
        concurrency = 4
        cache_ttl = 0
        [tables.t_page.columns]
        id = "INTEGER"
        name = "TEXT"

        [tables.t_link]
        provider = "key"
        url = "{base}/api"
        rows = "items"
        pagination = "link"
        cache_ttl = 0
        [tables.t_link.columns]
        id = "INTEGER"
        name = "TEXT"

        [tables.t_oauth]
        provider = "o"
        url = "{a.base_url}/m/ok/api"
        rows = "items"
        cache_ttl = 0
        [tables.t_oauth.columns]
        id = "INTEGER"
        name = "TEXT"
        """).replace("{limits}", limits)


@dataclass
class Outcome:
    behaviour: str
    op: str
    elapsed: float | None  # None: killed (did not end)
    rss_growth: int
    error: str | None  # the exception's class name, None when the call returned
    is_library_error: bool
    texts: list[str]
    crash: str | None = None
    returned: str = ""  # what the call returned (short), when it did

    def leaks(self, secrets: tuple[str, ...] | list[str]) -> list[str]:
        return sorted({s for s in secrets if s and any(s in t for t in self.texts)})


def _consent(req: Any) -> str:
    state = parse_qs(urlsplit(req.authorization_url).query)["state"][0]
    return f"{req.redirect_uri}?code={CODE}&state={state}"


def _operation(op: str, config: Path, table: str) -> Callable[[], Any]:
    import remotetables
    from remotetables.auth.store import MemoryTokenStore, TokenSet

    conn = remotetables.connect(
        ":memory:",
        config=config,
        user="alice",
        environ=ENV,
        token_store=MemoryTokenStore(),
        consent="raise",
    )
    rt = conn.runtime
    if op == "query":
        return lambda: conn.execute(f"SELECT id, name FROM {table}").fetchall()
    svc = rt.oauth_service()
    if op == "discovery":
        return lambda: svc.client(rt.provider("d")).metadata()
    provider = rt.provider("o")
    if op == "login":
        return lambda: svc.login(provider, "alice", consent=_consent)
    now = time.time()
    expired = op == "refresh"
    tokens = TokenSet(
        access_token=SEEDED_ACCESS,
        refresh_token=SEEDED_REFRESH,
        expires_at=now - 100 if expired else now + 3600,
    )
    svc.store.put(svc.key(provider, "alice"), tokens, now=now)
    if op == "refresh":
        return lambda: conn.execute("SELECT id, name FROM t_oauth").fetchall()
    return lambda: svc.logout(provider, "alice")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record)[:_TEXT_CAP])
        except Exception as exc:  # a record that cannot be formatted is itself a finding
            self.lines.append(f"unformattable record: {exc!r}")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(op: str, config: Path, table: str) -> dict[str, Any]:
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = size + 2 * 1024**3  # far above the bound, far below what a runaway would take
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    call = _operation(op, config, table)
    rss0 = _rss()
    start = time.monotonic()
    error: BaseException | None = None
    returned = None
    try:
        returned = call()
    except BaseException as exc:
        error = exc
    elapsed = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import remotetables

    texts = list(handler.lines)
    if error is not None:
        texts += [str(error)[:_TEXT_CAP], repr(error)[:_TEXT_CAP]]
        texts.append("".join(traceback.format_exception(error))[-_TEXT_CAP:])
    return {
        "elapsed": elapsed,
        "rss_growth": max(0, peak - rss0),
        "error": None if error is None else type(error).__name__,
        "is_library_error": isinstance(error, remotetables.Error),
        "texts": texts,
        "returned": repr(returned)[:300],
    }


def run_case(
    behaviour: str,
    op: str,
    server: HostileServer,
    tmp: Path,
    *,
    table: str = "t_page",
    new_keys: bool = True,
    deadline: float | None = None,
) -> Outcome:
    """Run ``op`` against ``behaviour`` in a forked child; kill it past deadline + margin."""
    config = tmp / f"hostile-{behaviour}-{op}.toml"
    config.write_text(config_text(server, behaviour, new_keys=new_keys), encoding="utf-8")
    budget = (DEADLINE[op] if deadline is None else deadline) + MARGIN + 5.0
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process (the servers' threads live
        # on in the parent; the child only makes HTTP calls and leaves with os._exit)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            result = _child(op, config, table)
        except BaseException as exc:
            result = {"crash": "".join(traceback.format_exception(exc))[-5000:]}
        data = json.dumps(result).encode()
        with os.fdopen(w, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    end = time.monotonic() + budget
    killed = False
    with os.fdopen(r, "rb", buffering=0) as pipe:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            ready, _, _ = select.select([pipe], [], [], left)
            if ready:
                got = pipe.read(1 << 20)
                if not got:
                    break
                chunks.append(got)
    os.waitpid(pid, 0)
    if killed:
        return Outcome(behaviour, op, None, 0, None, False, [], crash="did not end: killed")
    raw = json.loads(b"".join(chunks) or b'{"crash": "no report"}')
    if "crash" in raw:
        return Outcome(behaviour, op, None, 0, None, False, [], crash=raw["crash"])
    return Outcome(
        behaviour,
        op,
        raw["elapsed"],
        raw["rss_growth"],
        raw["error"],
        raw["is_library_error"],
        raw["texts"],
        returned=raw["returned"],
    )
