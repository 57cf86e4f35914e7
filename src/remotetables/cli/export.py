"""`remotetables export` and `remotetables sync`: a user's rows copied into native tables of
a plain SQLite file, for BI tools and the stock sqlite3 CLI, which cannot load the module.
The copying itself is :mod:`remotetables.plain`."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import click

from remotetables import errors
from remotetables.cli.common import _config, _consent, _errors, config_option, consent_option
from remotetables.config import Config, TableSpec
from remotetables.dbapi import Connection, connect
from remotetables.plain import TableCopy, parse_interval, write_plain

__all__ = ["export", "sync"]


def _specs(cfg: Config, names: tuple[str, ...], database: str, target: str) -> list[TableSpec]:
    with _errors():
        specs = [cfg.table(n) for n in names] if names else list(cfg.tables.values())
    if not specs:
        raise click.ClickException(f"no remote tables in {cfg.path}")
    if Path(target).exists() and Path(database).exists() and Path(target).samefile(database):
        raise click.ClickException("--to must be another file than DATABASE")
    return specs


def _needs_user(cfg: Config, specs: list[TableSpec], user: str | None) -> None:
    if user is not None:
        return
    for spec in specs:
        p = cfg.providers.get(spec.provider)
        if p is not None and p.per_user:
            raise click.UsageError(
                f"--user is needed: table {spec.name} reads each user's own rows "
                f"(provider {p.name} uses personal tokens)"
            )


def _open(database: str, cfg: Config, user: str | None, consent: str | None) -> Connection:
    from remotetables.shell import ProgressReporter

    return connect(
        database,
        config=cfg,
        user=user,
        consent=_consent(consent, cfg),
        progress=ProgressReporter(sys.stderr) if sys.stderr.isatty() else None,
    )


def _owner(conn: Connection, user: str | None) -> Callable[[TableSpec], str | None]:
    """Whose rows a table holds: the user for personal tokens, else the shared identity."""

    def owner(spec: TableSpec) -> str | None:
        p = conn.runtime.config.providers.get(spec.provider)
        if p is None:
            return "(public)"
        return user if p.per_user else "(system)"

    return owner


target_option = click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(dir_okay=False),
    help="Plain SQLite file to write.",
)
tables_option = click.option(
    "--table", "-t", "names", multiple=True, help="Only this remote table (repeatable)."
)
user_option = click.option(
    "--user", "-u", help="Whose rows to copy (needed when a table uses personal tokens)."
)
replace_option = click.option(
    "--replace",
    is_flag=True,
    help="Also replace a table of the target that export or sync did not write (its rows are "
    "lost); without it such a table is refused.",
)


@click.command()
@click.argument("database", type=click.Path(dir_okay=False))
@target_option
@tables_option
@config_option
@user_option
@consent_option
@replace_option
def export(
    database: str,
    target: str,
    names: tuple[str, ...],
    config_path: str | None,
    user: str | None,
    consent: str | None,
    replace: bool,
) -> None:
    """Copy a user's rows into native tables of a plain SQLite file.

    For BI tools and the stock sqlite3 CLI, which cannot load the module. Each table gets its
    declared types and its key as PRIMARY KEY. Tables an earlier copy wrote are replaced
    atomically (on failure the target stays as it was); the table _remotetables_export
    records what was copied when, and for whom. Any other table of the same name in the
    target is refused (nothing changes) unless --replace.
    """
    cfg = _config(config_path)
    specs = _specs(cfg, names, database, target)
    _needs_user(cfg, specs, user)
    with _errors():
        conn = _open(database, cfg, user, consent)
        try:
            copies = write_plain(conn, specs, target, _owner(conn, user), replace=replace)
        finally:
            conn.close()
    for c in copies:
        click.echo(f"{c.name}: {c.total} rows")
    whose = f"{user}'s" if user else "the"
    click.echo(f"exported {whose} rows to {target}")


@click.command()
@click.argument("database", type=click.Path(dir_okay=False))
@target_option
@tables_option
@config_option
@user_option
@consent_option
@click.option(
    "--every",
    default="10m",
    show_default=True,
    help="Time between the starts of two cycles: 30s, 10m, 1h.",
)
@click.option(
    "--cycles", type=click.IntRange(min=1), help="Stop after this many cycles (default: never)."
)
@click.option("--full", is_flag=True, help="Copy every table whole (no incremental updated_since).")
@replace_option
def sync(
    database: str,
    target: str,
    names: tuple[str, ...],
    config_path: str | None,
    user: str | None,
    consent: str | None,
    every: str,
    cycles: int | None,
    full: bool,
    replace: bool,
) -> None:
    """Keep a plain SQLite copy of a user's rows fresh, one cycle every --every.

    A table with updated_since is asked only for the rows changed since its copy's newest
    value (replaced by key; a row deleted at the API goes at the next full copy: --full, or
    export); others are copied whole. A failed cycle says why on stderr and leaves the previous
    copy as it was; the next cycle tries again. Ctrl-C stops. Exits 1 if the last cycle failed.
    """
    cfg = _config(config_path)
    specs = _specs(cfg, names, database, target)
    _needs_user(cfg, specs, user)
    with _errors():
        interval = parse_interval(every)
        conn = _open(database, cfg, user, consent)
    done = 0
    ok = True
    try:
        while True:
            started = time.monotonic()
            ok = _cycle(conn, specs, target, user, incremental=not full, replace=replace)
            done += 1
            if cycles is not None and done >= cycles:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        click.echo("sync stopped", err=True)
    finally:
        conn.close()
    if not ok:
        sys.exit(1)


def _cycle(
    conn: Connection,
    specs: list[TableSpec],
    target: str,
    user: str | None,
    *,
    incremental: bool,
    replace: bool = False,
) -> bool:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        copies = write_plain(
            conn, specs, target, _owner(conn, user), incremental=incremental, replace=replace
        )
    except errors.ProgrammingError as exc:
        # a mistake no later cycle can fix (a table of the target that a copy did not write,
        # a target holding remote tables): stop
        raise click.ClickException(
            f"{stamp} sync stopped, {target} was not changed: {exc}"
        ) from None
    except (errors.Error, apsw.Error, OSError) as exc:  # a locked or full target too
        click.echo(f"{stamp} sync failed, {target} keeps its previous copy: {exc}", err=True)
        return False
    click.echo(f"{stamp} " + "; ".join(_summary(c) for c in copies))
    return True


def _summary(c: TableCopy) -> str:
    if c.mode == "incremental":
        return f"{c.name}: {c.rows} updated since {c.since}, {c.total} rows"
    return f"{c.name}: {c.total} rows"
