"""``remotetables shell`` and ``remotetables query``: SQL on remote tables, results as a table, CSV or JSON."""

from __future__ import annotations

import base64
import contextlib
import csv
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import click
import orjson

from remotetables import __version__
from remotetables.cli.common import (
    _config,
    _consent,
    _errors,
    _plural,
    config_option,
    consent_option,
    lock_user_option,
    user_option,
)
from remotetables.config import Config
from remotetables.dbapi import Connection, connect
from remotetables.sqltext import dml_target

__all__ = ["query", "shell"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError


@click.command()
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


@click.command()
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
