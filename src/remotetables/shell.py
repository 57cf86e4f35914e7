"""APSW's interactive shell with the remote tables registered.

:class:`RemoteShell` is :class:`apsw.shell.Shell` plus:

* the module and SQL functions on every connection it opens (also after ``.open``);
* dot-commands ``.user NAME``, ``.tokens``, ``.cache [clear [TABLE]]`` and ``.stats``;
* progress on stderr for fetches that take longer than about a second;
* Ctrl-C stops a fetch (the session is interrupted, pending pages are dropped) and the shell
  goes on;
* on a connection locked to its user (``--lock-user``), only the dot-commands that reach no other
  file and cannot change the user (:data:`LOCKED_COMMANDS`); ``.tokens`` shows that user's grants;
* ``.help`` lists its own dot-commands first, under their own heading;
* read from a script (not a terminal), it goes on after an error as the ``sqlite3`` CLI
  does, and :func:`run_shell` then exits with status 1.

>>> import io, remotetables
>>> conn = remotetables.connect(":memory:")
>>> out = io.StringIO()
>>> sh = RemoteShell(conn, stdin=io.StringIO("select 1+1;\\n"), stdout=out, stderr=out)
>>> sh.cmdloop(intro="")
>>> out.getvalue().strip()
'2'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import apsw
import apsw.shell
import orjson

from remotetables import errors
from remotetables.dbapi import Connection, install
from remotetables.errors import redact_text
from remotetables.session import Runtime, Session, StatementStats

__all__ = ["ProgressReporter", "RemoteShell", "format_table", "local_time", "token_rows"]


# ---------------------------------------------------------------- small formatting helpers


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as an aligned plain-text table (``NULL`` for None), headers underlined.

    >>> print(format_table(["a", "bb"], [(1, None), ("xyz", 2)]))
    a    bb
    ---  ----
    1    NULL
    xyz  2
    """
    cells = [[_cell(v).replace("\n", " ") for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def local_time(ts: float, *, seconds: bool = False, tz: dt.tzinfo | None = None) -> str:
    """A timestamp as local time (or in ``tz``) with its time zone, never a bare clock time.

    >>> local_time(0, tz=dt.timezone(dt.timedelta(hours=1), "CET"))
    '1970-01-01 01:00 CET'
    """
    local = dt.datetime.fromtimestamp(ts, dt.UTC).astimezone(tz)
    fmt = "%Y-%m-%d %H:%M:%S " if seconds else "%Y-%m-%d %H:%M "
    return local.strftime(fmt) + (local.tzname() or local.strftime("UTC%z"))


def _when(ts: float | None, now: float, tz: dt.tzinfo | None = None) -> str:
    """An expiry time, local unless ``tz`` is given, with its time zone and how far off."""
    if ts is None:
        return "-"
    left = ts - now
    stamp = local_time(ts, tz=tz)
    if left <= 0:
        return f"{stamp} (expired)"
    if left < 3600:
        return f"{stamp} (in {max(1, round(left / 60))} min)"
    if left < 2 * 86400:
        return f"{stamp} (in {round(left / 3600)} h)"
    return f"{stamp} (in {round(left / 86400)} days)"


def token_rows(runtime: Runtime) -> tuple[list[str], list[tuple[str, ...]]]:
    """Who has a token for which provider: headers and rows, never token material."""
    from remotetables.auth.service import SYSTEM_SUBJECT

    # a personal and a system provider may share a client: the subject tells them apart
    names = {
        (p.token_key_issuer, p.client_id, p.integration == "system"): p.name
        for p in runtime.config.providers.values()
        if p.auth == "oauth"
    }
    now = runtime.clock()
    rows: list[tuple[str, ...]] = []
    for info in runtime.oauth_service().tokens():
        system = info.subject == SYSTEM_SUBJECT
        provider = names.get(
            (info.provider, info.client_id, system), f"{info.provider} ({info.client_id})"
        )
        who = "(system)" if system else info.subject
        rows.append(
            (
                provider,
                who,
                info.account or "-",
                str(info.status)
                + (f" ({info.reason})" if info.reason and info.status != "active" else ""),
                # a grant that needs consent has no usable access token, whatever its expiry
                _when(info.expires_at, now) if str(info.status) == "active" else "-",
                info.scope or "-",
                "yes" if info.has_refresh_token else "no",
            )
        )
    rows.sort()
    headers = ["provider", "user", "account", "status", "access token expires", "scopes", "refresh"]
    return headers, rows


# ---------------------------------------------------------------- progress


class ProgressReporter:
    """A ``progress`` callback: one status line on ``out`` once a statement runs > ``threshold`` s.

    On a terminal the line is rewritten in place; elsewhere a line is written at most every
    ``interval`` seconds. Call :meth:`finish` when the statement ends.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        threshold: float = 1.0,
        interval: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
        tty: bool | None = None,
    ) -> None:
        self.out = out
        self.threshold = threshold
        self.interval = interval
        self.clock = clock
        self.tty = bool(getattr(out, "isatty", lambda: False)()) if tty is None else tty
        self._shown = False
        self._last = -1e9
        self._lock = threading.Lock()

    def __call__(self, stats: StatementStats) -> None:
        now = self.clock()
        elapsed = now - stats.started - stats.paused
        with self._lock:
            if elapsed < self.threshold or now - self._last < self.interval:
                return
            self._last = now
            pages = "page" if stats.pages == 1 else "pages"
            line = (
                f"fetching: {stats.pages} {pages}, {stats.rows} rows so far, "
                f"{elapsed:.0f} s (Ctrl-C to stop)"
            )
            if self.tty:
                self.out.write("\r\x1b[K" + line)
            else:
                self.out.write(line + "\n")
            self.out.flush()
            self._shown = True

    def finish(self) -> None:
        with self._lock:
            if self._shown and self.tty:
                self.out.write("\r\x1b[K")
                self.out.flush()
            self._shown = False
            self._last = -1e9


class _Wiping:
    """An output stream that wipes the progress line before each write."""

    def __init__(self, stream: TextIO, progress: ProgressReporter) -> None:
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        self._progress.finish()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# ---------------------------------------------------------------- the shell

# what a shell locked to its user may run: output settings and looking at this database
LOCKED_COMMANDS = frozenset(
    [
        "bail",
        "cache",
        "changes",
        "color",
        "colour",
        "databases",
        "dump",
        "echo",
        "exceptions",
        "exit",
        "find",
        "ftsq",
        "header",
        "headers",
        "help",
        "indices",
        "limit",
        "mode",
        "nullvalue",
        "parameter",
        "print",
        "prompt",
        "quit",
        "schema",
        "separator",
        "show",
        "stats",
        "tables",
        "timer",
        "tokens",
        "user",
        "version",
        "width",
    ]
)


def _is_open(db: apsw.Connection) -> bool:
    try:
        db.filename  # noqa: B018 (raises once closed)
    except apsw.ConnectionClosedError:
        return False
    return True


class RemoteShell(apsw.shell.Shell):
    """APSW's shell on a remotetables connection; see the module docstring."""

    def __init__(
        self,
        connection: Connection,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        args: list[str] | None = None,
        progress: ProgressReporter | None = None,
    ) -> None:
        self._connection = connection
        self._runtime = connection.runtime
        self._stopped_statement = False  # Ctrl-C stopped a statement (not an idle prompt)
        self._sessions: dict[apsw.Connection, Session] = {connection.apsw: connection.session}
        self._progress = progress
        connection.session.progress = progress
        out = stdout or sys.stdout
        if progress is not None:
            out = _Wiping(out, progress)
        super().__init__(stdin=stdin, stdout=out, stderr=stderr, args=args, db=connection.apsw)
        self.prompt = self._prompt_text()

    # -- every connection gets the module (the shell opens new ones on .open and filenames)

    def _get_db(self) -> apsw.Connection:
        db: apsw.Connection = apsw.shell.Shell._ensure_db(self)  # type: ignore[no-untyped-call]
        if db not in self._sessions:
            self._prepare(db)
        return db

    db = property(_get_db, apsw.shell.Shell._set_db, None, "The current apsw.Connection")

    def _prepare(self, db: apsw.Connection) -> None:
        current = self._connection.session
        session = Session(
            self._runtime,
            user=current.user,
            consent=current.consent,
            progress=self._progress,
            lock_user=current.lock_user,
        )
        self._sessions[db] = session
        install(db, session)
        try:
            Connection(db, session, owns_runtime=False).ensure_tables()
        except errors.Error as exc:
            self._warn(f"remote tables not created in this database: {exc}\n")

    def _say(self, text: str) -> None:
        self.write(self.stdout, text)  # type: ignore[no-untyped-call]

    def _warn(self, text: str) -> None:
        self.write(self.stderr, text)  # type: ignore[no-untyped-call]

    @property
    def session(self) -> Session:
        """The session of the current connection."""
        return self._sessions[self.db]

    def _prompt_text(self) -> str:
        user = self._connection.session.user
        return f"{user}@remotetables> " if user else "remotetables> "

    # -- statements: progress line and Ctrl-C

    def process_sql(
        self, sql: str, bindings: Any = None, internal: bool = False, summary: Any = None
    ) -> None:
        # The shell gives its cursors a no-op exec trace: run the connection's (remotetables'
        # statement boundary: keep the last remote statement's stats, reset counters, clear a
        # Ctrl-C) once per input.
        trace = self.db.exec_trace
        if trace is not None and not internal:
            trace(None, sql, bindings)
        try:
            super().process_sql(sql, bindings, internal, summary)
        except KeyboardInterrupt:
            self._stopped_statement = True  # handle_interrupt (called next) says so
            raise
        finally:
            if self._progress is not None:
                self._progress.finish()

    def handle_interrupt(self) -> None:
        """Ctrl-C: stop the fetch (pending pages, retry waits) and keep the shell running."""
        for session in self._sessions.values():
            session.interrupt()
        with contextlib.suppress(apsw.Error):
            self.db.interrupt()
        if self._progress is not None:
            self._progress.finish()
        if self.bail:
            raise
        if self._stopped_statement:
            self._stopped_statement = False
            self._warn("Interrupted: the statement was stopped.\n")
        else:
            self._warn("\n(nothing was running; .exit or Ctrl-D leaves the shell)\n")

    # -- errors: a script that fails makes the shell exit non-zero

    errors_seen = 0
    """Errors reported while reading a script (non-interactive input); see :func:`run_shell`."""

    def handle_exception(self) -> None:
        """APSW's, except that ``.exceptions on`` shows where the error happened (function, file,
        line) and never the frames' local variables: those hold refresh tokens, request forms and
        pasted redirect URLs with their codes."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, SystemExit | KeyboardInterrupt) and not self.interactive:
            self.errors_seen += 1
        detail = bool(self.exceptions) and not (
            isinstance(exc, SystemExit) or getattr(exc, "_handle_exception_saw_this", False)
        )
        saved, self.exceptions = self.exceptions, False
        try:
            super().handle_exception()  # type: ignore[no-untyped-call]
        finally:
            self.exceptions = saved
            if detail and exc is not None:
                self._write_frames(exc)

    def command_connection(self, cmd: list[str]) -> None:
        """connection ?NUMBER?: List this shell's connections, or switch to one

        Only the connections this shell opened (the first one and those of .open) are listed:
        never other APSW connections of the process, such as the token store's.
        """
        dbs = [c for c in self._sessions if _is_open(c)]
        if len(cmd) > 1:
            raise self.Error("Too many arguments")
        if cmd:
            try:
                chosen = dbs[int(cmd[0])]
            except (ValueError, IndexError):
                raise self.Error(
                    f"no connection {cmd[0]}: .connection lists them (0 to {len(dbs) - 1})"
                ) from None
            if self.db is not chosen:
                self._db = chosen  # type: ignore[assignment]
                self.dbfilename = chosen.filename  # type: ignore[assignment]
            return
        current = self.db
        for i, c in enumerate(dbs):
            sel = "*" if c is current else " "
            self._say(f'{sel} {i:2} - "{c.filename}"\n')

    def _write_frames(self, exc: BaseException) -> None:
        lines = [
            f"\nFrame {f.name} in {f.filename} at line {f.lineno}\n"
            for f in traceback.extract_tb(exc.__traceback__)
        ]
        lines.append(f"\n{type(exc).__name__}: {redact_text(str(exc))}\n")
        self.write(self.stderr, "".join(lines))  # type: ignore[no-untyped-call]

    # -- dot-commands

    def process_command(self, command: str) -> Any:
        """A locked session (``--lock-user``) runs only the dot-commands that reach no other file
        and cannot change the user: no .open, .shell, .py, .load, .read, .output, .import ..."""
        if self._connection.session.lock_user:
            name = (
                command.strip().split(None, 1)[0][1:].replace("-", "_") if command.strip() else ""
            )
            if name and name not in LOCKED_COMMANDS:
                who = self._connection.session.user
                raise self.Error(
                    f".{name} is not available: this shell is locked to user {who!r} "
                    "(it may not change the user, open other files or run programs)"
                )
        return super().process_command(command)  # type: ignore[no-untyped-call]

    OWN_COMMANDS = ("user", "tokens", "cache", "stats")  # in the order .help lists them

    def command_help(self, cmd: list[str]) -> None:
        """help ?COMMAND?: Shows list of commands and their usage

        If COMMAND is specified then shows detail about that COMMAND.
        ``.help all`` will show detailed help about all commands.
        """
        if cmd:
            super().command_help(cmd)  # type: ignore[no-untyped-call]
            return
        listing, self.stderr = self.stderr, io.StringIO()
        try:
            super().command_help(cmd)  # type: ignore[no-untyped-call]
            text = self.stderr.getvalue()
        finally:
            self.stderr = listing
        # one entry per command: its line, then the indented lines its description wraps to
        entries: list[tuple[str, str]] = []
        for line in text.strip("\n").splitlines(keepends=True):
            if line.startswith(".") or not entries:
                entries.append((line[1:].split(" ", 1)[0].strip(), line))
            else:
                entries[-1] = (entries[-1][0], entries[-1][1] + line)
        order = {name: i for i, name in enumerate(self.OWN_COMMANDS)}
        ours = sorted((e for e in entries if e[0] in order), key=lambda e: order[e[0]])
        theirs = [e for e in entries if e[0] not in order]
        self._warn(
            "\nremotetables commands:\n"
            + "".join(text for _, text in ours)
            + "\nSQLite shell commands (APSW's):\n"
            + "".join(text for _, text in theirs)
            + "\n"
        )

    def _all_sessions(self) -> Iterator[Session]:
        yield from self._sessions.values()

    def command_user(self, cmd: list[str]) -> None:
        """user ?NAME?: Show or set who you query as (whose token and rows are used)

        With no NAME, shows the current user. The first query of a new user
        asks that user to consent (in the browser, or by pasting the redirect URL).
        """
        if len(cmd) > 1:
            raise self.Error("Usage: .user ?NAME?")
        if not cmd:
            user = self.session.user
            self._say(f"{user}\n" if user else "no user set: .user NAME\n")
            return
        if self._connection.session.lock_user:
            try:
                self.session.set_user_from_sql(cmd[0])
            except errors.Error as exc:
                raise self.Error(str(exc)) from None
        for session in self._all_sessions():
            try:
                session.set_user(cmd[0])
            except errors.Error as exc:
                raise self.Error(str(exc)) from None
        self.prompt = self._prompt_text()
        self._say(f"now querying as {cmd[0]}\n")

    def command_tokens(self, cmd: list[str]) -> None:
        """tokens: Who has a token for which provider (expiry, scopes; never the tokens)"""
        if cmd:
            raise self.Error("Usage: .tokens")
        try:
            headers, rows = token_rows(self._runtime)
        except errors.Error as exc:
            raise self.Error(str(exc)) from None
        if self._connection.session.lock_user:  # other users' grants are not this user's business
            rows = [r for r in rows if r[1] in (self._connection.session.user, "(system)")]
        if not rows:
            providers = self._runtime.config.providers.values()
            bearers = [f"{p.name} (${p.token_env})" for p in providers if p.auth == "bearer"]
            if any(p.auth == "oauth" for p in providers):
                self._say("no tokens stored yet: query a remote table to connect\n")
            else:
                self._say(
                    "no OAuth provider in the config, so no token is stored"
                    + (
                        f"; bearer tokens come from environment variables: {', '.join(bearers)}"
                        if bearers
                        else ""
                    )
                    + "\n"
                )
            return
        self._say(format_table(headers, rows) + "\n")

    def command_cache(self, cmd: list[str]) -> None:
        """cache ?clear ?TABLE??: Show the row cache for the current user, or clear it

        .cache              cached result sets: table, whose rows, parameters, size, time left
        .cache clear        drop every cached row
        .cache clear TABLE  drop the cached rows of one remote table
        """
        db = self.db
        if cmd and cmd[0] == "clear" and len(cmd) <= 2:
            sql = "SELECT remotetables_cache_clear(" + ("?" if len(cmd) == 2 else "") + ")"
            try:
                (n,) = db.execute(sql, tuple(cmd[1:])).fetchone()
            except errors.Error as exc:
                raise self.Error(str(exc)) from None
            self._say(f"cleared {n} cached result set{'s' if n != 1 else ''}\n")
            return
        if cmd:
            raise self.Error("Usage: .cache ?clear ?TABLE??")
        entries = orjson.loads(db.execute("SELECT remotetables_cache()").fetchone()[0])
        if not entries:
            self._say("the row cache is empty\n")
            return
        rows = [
            (e["table"], e["principal"], e["params"], e["rows"], e["bytes"], f"{e['ttl_left']} s")
            for e in entries
        ]
        headers = ["table", "whose rows", "parameters", "rows", "bytes", "expires in"]
        self._say(format_table(headers, rows) + "\n")

    def command_stats(self, cmd: list[str]) -> None:
        """stats: What the last query on a remote table did (requests, pages, rows, time)"""
        if cmd:
            raise self.Error("Usage: .stats")
        stats = orjson.loads(self.db.execute("SELECT remotetables_stats()").fetchone()[0])
        if not stats:
            self._say("no remote table has been queried yet\n")
            return
        rows = [(k, v) for k, v in stats.items()]
        self._say(format_table(["statistic", "value"], rows) + "\n")


def run_shell(
    connection: Connection,
    *,
    intro: str | None = None,
    args: list[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> None:
    """Run the interactive shell on ``connection`` until ``.exit`` or end of input.

    Input that is not a terminal (``remotetables shell db < script.sql``) runs to its end like
    the ``sqlite3`` CLI, and any statement that failed makes this raise ``SystemExit(1)``.
    """
    err = stderr or sys.stderr
    shell = RemoteShell(
        connection,
        stdin=stdin,
        stdout=stdout,
        stderr=err,
        args=args,
        progress=ProgressReporter(err),
    )
    shell.cmdloop(intro=intro)  # type: ignore[no-untyped-call]
    if shell.errors_seen:  # a script with a failing statement fails, as with sqlite3
        raise SystemExit(1)
