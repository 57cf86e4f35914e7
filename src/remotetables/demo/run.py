"""``remotetables demo``: the embedded authorization server and incidents API, a config, a tour.

:class:`Demo` starts both servers on 127.0.0.1, writes ``remotetables.toml`` and ``demo.db`` in
the demo directory (a fresh token store each run) and opens connections as a demo user.
:func:`run_tour` is the non-interactive path (CI, no terminal): consent is given by signing in
with the demo password (:func:`sign_in_and_approve`), a few SELECTs are printed as tables.

>>> import io, tempfile
>>> with tempfile.TemporaryDirectory() as d, Demo(d, out=io.StringIO()) as demo:
...     run_tour(demo, out=io.StringIO())
0
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import textwrap
from collections.abc import Callable, Sequence
from html import unescape
from pathlib import Path
from types import TracebackType
from typing import TextIO
from urllib.parse import urljoin, urlsplit

import httpx2

from remotetables.auth.consent import ConsentRequest
from remotetables.dbapi import Connection, connect
from remotetables.demo.api.server import IncidentsAPI
from remotetables.demo.authserver.server import DEFAULT_CLIENT_ID, DEFAULT_USERS, DemoAuthServer
from remotetables.errors import ConsentFailed

__all__ = [
    "DEMO_USERS",
    "EXAMPLES_PORT",
    "Demo",
    "auto_consent",
    "default_demo_dir",
    "run_tour",
    "sign_in_and_approve",
]

DEMO_USERS = dict(DEFAULT_USERS)  # name -> password (the password is the name)
PROVIDER = "demo"
# The configs in sql_examples/ point at http://127.0.0.1:8766: `remotetables demo --serve`
# serves that API there (no sign-in, the data the test suite runs the examples against).
EXAMPLES_PORT = 8766
EXAMPLES_ROWS, EXAMPLES_SEED = 250, 7

_CONFIG = """\
# Written by `remotetables demo`; rewritten (new ports) every time the demo starts.
[settings]
token_store = {token_store}
key_file = {key_file}
consent = "browser"

[providers.demo]
issuer = "{issuer}"
client_id = "{client_id}"
scopes = ["incidents.read"]
integration = "personal"
login_hint = "{{user}}"   # the sign-in form is filled in with the user's name
account = "{{user}}"      # a grant by another account (alice signed in for bob) is refused

# ServiceNow-shaped Table API: each user sees the incidents assigned to them
[tables.incidents]
provider = "demo"
url = "{api}/api/now/table/incident"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 25

[tables.incidents.columns]
number = "TEXT"
short_description = "TEXT"
state = {{ type = "TEXT", param = "state" }}
priority = {{ type = "INTEGER", param = "priority" }}
assigned_to = "TEXT"
opened_at = "TEXT"
caller = {{ type = "TEXT", path = "caller.name" }}

# GitHub-shaped list API: issues of acme/widgets, the same for everybody
[tables.issues]
provider = "demo"
url = "{api}/repos/acme/widgets/issues"
rows = ""
pagination = "link"
page_size_param = "per_page"
max_page_size = 50

[tables.issues.columns]
number = "INTEGER"
title = "TEXT"
state = {{ type = "TEXT", param = "state" }}
author = {{ type = "TEXT", path = "user.login" }}
created_at = "TEXT"
"""

TOUR: tuple[tuple[str, str, str], ...] = (
    (
        "alice",
        "alice's open incidents",
        "SELECT number, short_description, priority, caller FROM incidents "
        "WHERE state = 'open' ORDER BY priority, number LIMIT 5",
    ),
    (
        "alice",
        "alice's incidents by state",
        "SELECT state, count(*) AS n FROM incidents GROUP BY state ORDER BY state",
    ),
    (
        "bob",
        "the same query as bob: bob's token, bob's rows",
        "SELECT number, short_description, priority, caller FROM incidents "
        "WHERE state = 'open' ORDER BY priority, number LIMIT 5",
    ),
    (
        "bob",
        "bob's incidents: how many, and assigned to whom",
        "SELECT current_user() AS querying_as, count(*) AS incidents, min(assigned_to) AS assigned_to FROM incidents",
    ),
)


def default_demo_dir() -> Path:
    """``<platform data dir>/remotetables/demo``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("remotetables", appauthor=False)) / "demo"


def _private_dir(directory: Path) -> None:
    """Make ``directory`` (and any missing parent) with mode 0700: it holds the token store and
    its key. The default demo directory is ours, so an older, wider one is narrowed to 0700;
    an existing directory given with ``--dir`` keeps its mode (the token store refuses one
    that others can write to)."""
    missing = []
    at = directory
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)  # whatever the umask
    if (
        not missing
        and directory.resolve() == default_demo_dir().resolve()
        and stat.S_IMODE(directory.stat().st_mode) & 0o077
    ):
        directory.chmod(0o700)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Demo:
    """Both demo servers on 127.0.0.1 plus the files in ``directory``; a context manager."""

    def __init__(
        self,
        directory: str | Path,
        *,
        out: TextIO | None = None,
        n_rows: int = 120,
        seed: int = 1,
        access_token_ttl: int = 3600,
        examples_port: int | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.out = out if out is not None else sys.stdout
        self.config_path = self.dir / "remotetables.toml"
        self.database = self.dir / "demo.db"
        self.token_store = self.dir / "tokens.db"
        self.key_file = self.dir / "token.key"
        self.auth = DemoAuthServer(users=DEMO_USERS, access_token_ttl=access_token_ttl)
        self.api = IncidentsAPI(
            n_rows=n_rows,
            users=tuple(DEMO_USERS),
            token_validator=self.auth.validate_token,
            seed=seed,
        )
        # the API the sql_examples/ configs point at: public (no token), on a fixed port
        self.examples_api = (
            None
            if examples_port is None
            else IncidentsAPI(
                n_rows=EXAMPLES_ROWS,
                seed=EXAMPLES_SEED,
                users=tuple(DEMO_USERS),
                port=examples_port,
            )
        )
        self.examples_problem: str | None = None  # why it is not running, if it is not
        self._examples_port = examples_port
        self._started = False

    def start(self) -> Demo:
        _private_dir(self.dir)
        # Tokens of an earlier run belong to a server that no longer exists.
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(self.token_store) + suffix).unlink()
        self.auth.start()
        try:
            self.api.start()
            if self.examples_api is not None:
                try:
                    self.examples_api.start()
                except OSError as exc:  # the port is taken (another demo --serve?)
                    self.examples_api = None
                    self.examples_problem = (
                        f"cannot listen on 127.0.0.1:{self._examples_port}: "
                        f"{exc.strerror or exc} (is another `remotetables demo --serve` running?)"
                    )
            self.config_path.write_text(
                _CONFIG.format(
                    token_store=_toml_str(str(self.token_store)),
                    key_file=_toml_str(str(self.key_file)),
                    issuer=self.auth.issuer,
                    client_id=DEFAULT_CLIENT_ID,
                    api=self.api.base_url,
                ),
                encoding="utf-8",
            )
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        if self.examples_api is not None:
            self.examples_api.stop()
        self.api.stop()
        self.auth.stop()
        self._started = False

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def connect(self, user: str, consent: object = None) -> Connection:
        """A connection to ``demo.db`` as ``user`` (``consent``: a mode or a callable)."""
        return connect(
            self.database,
            config=self.config_path,
            user=user,
            consent=consent,
            environ={**os.environ, "REMOTETABLES_NO_KEYRING": "1"},
        )

    def banner(self, *, interactive: bool) -> str:
        """What is running and what to do, for a newcomer."""
        text = f"""\
        remotetables demo
        =================
        Two small servers are running on this machine (127.0.0.1 only; they stop with the demo):
          authorization server  {self.auth.issuer}   OAuth 2.0 sign-in and consent pages
          incidents API         {self.api.base_url}   each user sees only the incidents assigned to them
        Demo users: alice, bob and carol; each password is the user name.
        Files: {self.dir}
          remotetables.toml (the config: provider "demo", tables incidents and issues),
          demo.db (the SQLite database), tokens.db (the users' tokens, encrypted)
        """
        if interactive:
            more = """\

            You are alice. Try:
              SELECT number, short_description, priority FROM incidents WHERE state = 'open';
            The first query asks alice to consent: a browser opens (or a URL is printed;
            sign in as alice / alice, click Allow, then paste the address you land on).
            Then switch user and run the same query to see bob's rows:
              .user bob
            Also: .tables  .stats  .tokens  .cache  .help   Leave with .exit or Ctrl-D.
            No browser that can reach 127.0.0.1 here (SSH)? Run `remotetables demo --auto`.
            """
        else:
            more = """\

            Non-interactive tour: consent is given automatically by signing in with the demo
            password, the way you would in the browser. Run `remotetables demo` in a terminal
            to type your own queries.
            """
        return textwrap.dedent(text) + textwrap.dedent(more)


# ---------------------------------------------------------------- consent without a browser

_FORM = re.compile(r"<form\b[^>]*\baction=\"([^\"]*)\"[^>]*>(.*?)</form>", re.S | re.I)
_HIDDEN = re.compile(r"<input type=hidden name=\"([^\"]*)\" value=\"([^\"]*)\">", re.I)


def _form(html: str, url: str) -> tuple[str, dict[str, str], bool]:
    """The page's form: action URL, hidden fields, and whether it asks for a password."""
    match = _FORM.search(html)
    if match is None:
        raise ConsentFailed(f"demo: no form on {urlsplit(url).path}", provider=PROVIDER)
    fields = {unescape(k): unescape(v) for k, v in _HIDDEN.findall(match.group(2))}
    is_login = "type=password" in match.group(2)
    return urljoin(url, unescape(match.group(1))), fields, is_login


def sign_in_and_approve(
    authorization_url: str, *, username: str, password: str, max_steps: int = 8
) -> str:
    """Sign in to the demo authorization server and click Allow; return the redirect URL.

    Only for the demo server's own pages (the forms a browser would show).
    """
    issuer = "{0.scheme}://{0.netloc}".format(urlsplit(authorization_url))
    with httpx2.Client(follow_redirects=False, timeout=10.0) as http:
        resp = http.get(authorization_url)
        for _ in range(max_steps):
            if resp.is_redirect:
                target = urljoin(str(resp.url), resp.headers["location"])
                if not target.startswith(issuer + "/"):
                    return target  # the redirect to the client: done
                resp = http.get(target)
                continue
            if resp.status_code >= 400:
                raise ConsentFailed(
                    f"demo: the authorization server answered {resp.status_code} "
                    f"at {urlsplit(str(resp.url)).path}",
                    provider=PROVIDER,
                    user=username,
                )
            action, fields, is_login = _form(resp.text, str(resp.url))
            if is_login:
                fields.update(username=username, password=password)
            else:
                fields["decision"] = "allow"
            resp = http.post(action, data=fields, headers={"Origin": issuer})
        raise ConsentFailed(f"demo: consent did not finish for {username}", provider=PROVIDER)


def auto_consent(
    out: TextIO | None = None, passwords: dict[str, str] | None = None
) -> Callable[[ConsentRequest], str]:
    """A consent callback that signs in with the demo password and approves."""
    known = DEMO_USERS if passwords is None else passwords

    def consent(request: ConsentRequest) -> str:
        password = known.get(request.user)
        if password is None:
            raise ConsentFailed(
                f"{request.user} is not a demo user (try {', '.join(known)})",
                provider=request.provider,
                user=request.user,
            )
        if out is not None:
            login = "{0.scheme}://{0.netloc}/login".format(urlsplit(request.authorization_url))
            print(
                f"  [consent] {request.user} has no token for provider {request.provider!r} yet: "
                f"signing in at {login} as {request.user} and clicking Allow",
                file=out,
                flush=True,
            )
        return sign_in_and_approve(
            request.authorization_url, username=request.user, password=password
        )

    return consent


# ---------------------------------------------------------------- the tour


def _plural(n: int | float, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _stats_line(stats: dict[str, float | int | str]) -> str:
    """``2 HTTP requests, 0 from cache, 0.08 s`` (what the last statement did)."""
    return (
        f"{_plural(int(stats.get('requests', 0)), 'HTTP request')}, "
        f"{stats.get('cache_hits', 0)} from cache, {float(stats.get('wall_time', 0)):.2f} s"
    )


def run_tour(
    demo: Demo,
    *,
    out: TextIO | None = None,
    steps: Sequence[tuple[str, str, str]] = TOUR,
) -> int:
    """Run ``steps`` (user, title, SQL) printing tables; return the exit status (0: fine)."""
    from remotetables.shell import format_table

    out = out if out is not None else sys.stdout
    conn = demo.connect(steps[0][0] if steps else "alice", consent=auto_consent(out))
    try:
        for user, title, sql in steps:
            if conn.user != user:
                conn.set_user(user)
                print(f"\n>>> SELECT set_user('{user}');   -- now querying as {user}", file=out)
            print(f"\n-- {title}\n>>> {sql};", file=out, flush=True)
            cur = conn.execute(sql)
            rows = cur.fetchall()
            headers = [d[0] for d in cur.description or ()]
            print(format_table(headers, rows), file=out)
            s = conn.last_stats
            print(f"({_plural(len(rows), 'row')}; {_stats_line(s)})", file=out)
        from remotetables.shell import token_rows

        headers, tokens = token_rows(conn.runtime)
        print("\n-- the tokens now stored (encrypted) in tokens.db; what .tokens shows", file=out)
        print(format_table(headers, tokens), file=out)
        print(
            "\nSame SQL, two users, two result sets: each query used that user's own OAuth "
            "token.\nThe demo servers stop now. Run `remotetables demo` in a terminal to type "
            "your own queries.",
            file=out,
            flush=True,
        )
    finally:
        conn.close()
    return 0
