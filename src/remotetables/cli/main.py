"""The ``remotetables`` command line: demo, shell, query, tables, check, export, sync, login, logout,
tokens.

A thin layer over the library: expected errors become :class:`click.ClickException` with the
library's message (no traceback, never a secret). What the commands share is in
:mod:`.common`; login, logout and tokens are in :mod:`.tokens`, check in :mod:`.check`,
export and sync in :mod:`.export`.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click
import orjson

from remotetables import __version__
from remotetables.cli.check import check
from remotetables.cli.common import (
    _config,
    _consent,
    _errors,
    config_option,
    consent_option,
)
from remotetables.cli.export import export, sync
from remotetables.cli.init import init
from remotetables.cli.tokens import login, logout, tokens
from remotetables.config import Config, TableSpec
from remotetables.dbapi import Connection, connect
from remotetables.sqltext import dml_target

__all__ = ["main"]


# ---------------------------------------------------------------- shared plumbing


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError


user_option = click.option("--user", "-u", help="Query as this user (whose token and rows).")
lock_user_option = click.option(
    "--lock-user",
    is_flag=True,
    help="SQL may not change the user (set_user, .user) nor ATTACH files, load extensions or "
    "use file PRAGMAs; the shell then offers only dot-commands that reach no other file.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remotetables")
@click.option(
    "--verbose",
    "-v",
    count=True,
    help="Log to stderr: -v retries, refreshes and consent; -vv every request too.",
)
def main(verbose: int) -> None:
    """Query remote HTTP APIs from SQLite, each user with their own OAuth 2.0 token.

    New here? Run `remotetables demo`.
    """
    if verbose:
        _log_to_stderr(logging.DEBUG if verbose > 1 else logging.INFO)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (one per process)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - logging must never break a command
            self.handleError(record)


def _log_to_stderr(level: int) -> None:
    """remotetables' own loggers (redacted: no token, code or secret) on stderr."""
    logger = logging.getLogger("remotetables")
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


# login, logout and tokens (with tokens migrate) are defined in tokens.py
main.add_command(login)
main.add_command(logout)
main.add_command(tokens)
main.add_command(export)
main.add_command(sync)
main.add_command(check)
main.add_command(init)


# ---------------------------------------------------------------- demo


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Where to write the demo config and database [default: the platform data dir].",
)
@click.option(
    "--auto",
    is_flag=True,
    help="No questions: approve consent automatically and run a scripted tour, then exit "
    "(the default when there is no terminal).",
)
@click.option("--user", "-u", default="alice", show_default=True, help="Demo user to start as.")
@click.option(
    "--serve",
    is_flag=True,
    help="Only run the two servers (and write the config) until Ctrl-C, to try your own "
    "configs, the CLI or a BI tool against them.",
)
@click.option(
    "--examples-port",
    type=click.IntRange(0, 65535),
    default=8766,
    show_default=True,
    help="With --serve: the port of the API the configs in sql_examples/ point at (0: any).",
)
def demo(directory: str | None, auto: bool, user: str, serve: bool, examples_port: int) -> None:
    """Try remotetables with a local authorization server and API.

    Starts a demo OAuth server and an incidents API on 127.0.0.1, writes a config and a
    database, and opens the shell as alice. Users alice, bob and carol; each password is
    the user name.
    """
    from remotetables.demo.run import DEMO_USERS, Demo, default_demo_dir, run_tour
    from remotetables.shell import run_shell

    if user not in DEMO_USERS:
        raise click.ClickException(f"{user!r} is not a demo user: choose {', '.join(DEMO_USERS)}")
    interactive = not auto and sys.stdin.isatty() and sys.stdout.isatty()
    where = Path(directory) if directory else default_demo_dir()
    if serve:
        with _errors(), Demo(where, examples_port=examples_port) as d:
            _serve(d)
        return
    with _errors(), Demo(where) as d:
        click.echo(d.banner(interactive=interactive))
        if not interactive:
            status = run_tour(d, out=sys.stdout)
            if status:
                raise SystemExit(status)
            return
        conn = d.connect(user, consent="auto")
        try:
            run_shell(conn, intro="")
        except SystemExit as exc:  # .exit
            if exc.code not in (None, 0):
                raise
        finally:
            conn.close()


def _serve(d: Any) -> None:
    """Keep the demo servers up until SIGINT/SIGTERM, saying how to use them."""
    import signal
    import threading

    cfg = d.config_path
    if d.examples_api is not None:
        examples = (
            f"  sql_examples API      {d.examples_api.base_url}   no sign-in; the configs in "
            "sql_examples/ point here\n"
        )
    else:
        examples = f"  sql_examples API      not started: {d.examples_problem}\n"
    click.echo(
        "remotetables demo servers (127.0.0.1 only; Ctrl-C stops them):\n"
        f"  authorization server  {d.auth.issuer}\n"
        f"  incidents API         {d.api.base_url}\n"
        + examples
        + "Demo users: alice, bob and carol; each password is the user name.\n"
        f"Config: {cfg}\n"
        "Try, in another terminal:\n"
        f"  remotetables shell {d.database} -c {cfg} -u alice\n"
        f"  remotetables login demo -u bob -c {cfg} --consent prompt\n"
        f'  remotetables query {d.database} -c {cfg} -u bob "SELECT count(*) FROM incidents"\n'
        + (
            "In a checkout of the repository, the SQL examples (one per .sql file):\n"
            "  remotetables shell ex.db -c sql_examples/github.toml < sql_examples/github.sql\n"
            if d.examples_api is not None
            else ""
        )
        + "Tokens from an earlier run are deleted at start: they belong to servers that are gone.",
    )
    sys.stdout.flush()
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo("demo servers stopped")


# ---------------------------------------------------------------- shell and query


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@config_option
@user_option
@lock_user_option
@consent_option
def shell(
    database: str, config_path: str | None, user: str | None, lock_user: bool, consent: str | None
) -> None:
    """Interactive SQL shell (APSW's) with the remote tables.

    Extra dot-commands: .user NAME (switch user), .tokens, .cache, .stats. Long fetches
    show progress; Ctrl-C stops a fetch and the shell goes on.
    """
    from remotetables.shell import run_shell

    cfg = _config(config_path)
    with _errors():
        conn = connect(
            database, config=cfg, user=user, lock_user=lock_user, consent=_consent(consent, cfg)
        )
    tables = ", ".join(sorted(cfg.tables)) or "none configured"
    intro = (
        f"remotetables {__version__} shell on {database}"
        + (f" as {user}" if user else " (no user yet: .user NAME)")
        + f"\nRemote tables: {tables}\n"
        "Type SQL ending in ';'. .help lists commands; .user NAME switches user; .exit leaves.\n"
    )
    try:
        with _errors():
            run_shell(conn, intro=intro)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    finally:
        conn.close()


def _json_kinds(cfg: Config, origins: Sequence[tuple[str | None, str | None]] | None) -> list[str]:
    """The declared type of each result column that is a remote table's column as such."""
    kinds = []
    lowered = {name.lower(): spec for name, spec in cfg.tables.items()}
    for table, column in origins or ():
        spec = lowered.get((table or "").lower())
        col = next((c for c in spec.columns if c.name == column), None) if spec else None
        kinds.append(col.type if col is not None else "")
    return kinds


def _as_json_values(
    rows: Iterator[tuple[Any, ...]], kinds: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """JSON columns as JSON (not a string holding JSON), BOOLEAN columns as true/false."""
    convert = [(i, kind) for i, kind in enumerate(kinds) if kind in ("JSON", "BOOLEAN")]
    if not convert:
        yield from rows
        return
    for row in rows:
        values = list(row)
        for i, kind in convert:
            v = values[i]
            if kind == "BOOLEAN" and v in (0, 1) and not isinstance(v, float):
                values[i] = bool(v)
            elif kind == "JSON" and isinstance(v, str):
                with contextlib.suppress(orjson.JSONDecodeError):  # not JSON: kept as text
                    values[i] = orjson.loads(v)
        yield tuple(values)


def _write_rows(
    out: TextIO,
    fmt: str,
    headers: Sequence[str],
    rows: Iterator[tuple[Any, ...]],
    kinds: Sequence[str] = (),
) -> int:
    from remotetables.shell import format_table

    n = 0
    if fmt in ("json", "jsonl"):
        rows = _as_json_values(rows, kinds)
    if fmt == "table":
        listed = list(rows)
        if headers:
            out.write(format_table(headers, listed) + "\n")
        return len(listed)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        for row in rows:
            writer.writerow(
                ["" if v is None else v.hex() if isinstance(v, bytes) else v for v in row]
            )
            n += 1
        return n
    if fmt == "jsonl":
        for row in rows:
            out.write(
                orjson.dumps(dict(zip(headers, row, strict=True)), default=_jsonable).decode()
                + "\n"
            )
            n += 1
        return n
    out.write("[")
    for row in rows:
        out.write(("," if n else "") + "\n  ")
        out.write(orjson.dumps(dict(zip(headers, row, strict=True)), default=_jsonable).decode())
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("sql")
@config_option
@user_option
@lock_user_option
@consent_option
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "csv", "json", "jsonl"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--param", "-p", "params", multiple=True, help="A value for the next ? in SQL (repeatable)."
)
def query(
    database: str,
    sql: str,
    config_path: str | None,
    user: str | None,
    lock_user: bool,
    consent: str | None,
    fmt: str,
    params: tuple[str, ...],
) -> None:
    """Run one SQL statement and print the rows (for scripts).

    Example: remotetables query work.db "SELECT number FROM incidents WHERE state = ?" -p open
    -u alice -f csv
    """
    from remotetables.shell import ProgressReporter

    cfg = _config(config_path)
    progress: Callable[[Any], None] | None = None
    reporter = ProgressReporter(sys.stderr) if sys.stderr.isatty() else None
    progress = reporter
    with _errors():
        conn = connect(
            database,
            config=cfg,
            user=user,
            lock_user=lock_user,
            consent=_consent(consent, cfg),
            progress=progress,
        )
        try:
            _one_statement(conn, sql)
            cur = conn.execute(sql, list(params) if params else None)
            first = cur.fetchone()
            headers = [d[0] for d in cur.description or ()]
            kinds = _json_kinds(cfg, cur.column_origins)
            if not headers and dml_target(sql) is not None and cur.rowcount >= 0:
                click.echo(f"{_plural(cur.rowcount, 'row')} changed", err=True)

            def rows() -> Iterator[tuple[Any, ...]]:
                if first is not None:
                    yield first
                    yield from cur

            try:
                _write_rows(sys.stdout, fmt, headers, rows(), kinds)
                sys.stdout.flush()
            except BrokenPipeError:
                # the reader went away (`| head`): stop quietly, as Unix tools do
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
        finally:
            if reporter is not None:
                reporter.finish()
            conn.close()


def _one_statement(conn: Connection, sql: str) -> None:
    """`query` runs exactly one statement: several would print rows of different shapes under
    one header."""
    import apsw.ext

    try:
        info = apsw.ext.query_info(conn.apsw, sql)
        rest = info.query_remaining
        more = bool(rest) and apsw.ext.query_info(conn.apsw, rest or "").has_vdbe
    except apsw.Error:
        return  # SQLite's own error, raised by the real execution, says it best
    if not info.has_vdbe:
        raise click.UsageError("no SQL statement given")
    if more:
        raise click.UsageError(
            "query runs one SQL statement at a time; run the others separately (or use "
            "`remotetables shell`)"
        )


# ---------------------------------------------------------------- tables and check


def _describe(spec: TableSpec) -> list[tuple[str, str, str]]:
    from remotetables.pushdown import describe_columns

    pushed: dict[str, list[str]] = {}
    for _, name, _, op, param, _, _ in describe_columns(spec):
        if op is not None:
            pushed.setdefault(name, []).append(f"{op} -> {param}")
    out = []
    for col in spec.columns:
        notes = list(pushed.get(col.name, ()))
        if col.required:
            notes.append("required")
        if col.exact:
            notes.append("exact")
        path = ".".join(str(p) for p in col.path)
        if path and path != col.name and not col.path_param:
            notes.append(f"from {path}")
        out.append((col.name, col.type, "; ".join(notes)))
    return out


@main.command()
@config_option
def tables(config_path: str | None) -> None:
    """List the remote tables: columns, types and what is pushed down to the API."""
    from remotetables.errors import redact_url
    from remotetables.shell import format_table

    cfg = _config(config_path)
    if not cfg.tables:
        click.echo(f"no tables in {cfg.path}")
        return
    for i, spec in enumerate(cfg.tables.values()):
        provider = "none (public)" if spec.provider == "__none__" else spec.provider
        click.echo(("\n" if i else "") + f"{spec.name}  provider: {provider}")
        if spec.description:
            click.echo(f"  {spec.description}")
        click.echo(f"  GET {redact_url(spec.url)}  (pagination: {spec.pagination.style})")
        fixed = ", ".join(f"{k}={v}" for k, v in spec.params)
        if fixed:
            click.echo(f"  always sends: {fixed}")
        facts = []
        if spec.key:
            facts.append(f"key: {spec.key}")
        w = spec.write
        writes = [n for n, on in (("INSERT", w and w.insert), ("UPDATE", w and w.update),
                                  ("DELETE", w and w.delete)) if on]  # fmt: skip
        facts.append(f"writes: {', '.join(writes)}" if writes else "read-only")
        facts.append(f"rows cached {spec.cache_ttl:g} s" if spec.cache_ttl > 0 else "not cached")
        click.echo("  " + "; ".join(facts))
        table = format_table(["column", "type", "pushed down / source"], _describe(spec))
        click.echo("\n".join("  " + line for line in table.splitlines()))


if __name__ == "__main__":  # pragma: no cover
    main()
