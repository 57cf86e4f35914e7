"""`remotetables export`: a user's rows copied into native tables of a plain SQLite file,
for BI tools and the stock sqlite3 CLI, which cannot load the module."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import apsw
import click

from remotetables.cli.common import _config, _consent, _errors, config_option, consent_option
from remotetables.config import TableSpec
from remotetables.dbapi import Connection, connect
from remotetables.vtable import MODULE_NAME

__all__ = ["export"]

_SQL_TYPE = {
    "INTEGER": "INTEGER",
    "REAL": "REAL",
    "TEXT": "TEXT",
    "BOOLEAN": "INTEGER",
    "JSON": "TEXT",
}


@click.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(dir_okay=False),
    help="Plain SQLite file to write.",
)
@click.option("--table", "-t", "names", multiple=True, help="Only this remote table (repeatable).")
@config_option
@click.option(
    "--user", "-u", help="Whose rows to export (needed when a table uses personal tokens)."
)
@consent_option
def export(
    database: str,
    target: str,
    names: tuple[str, ...],
    config_path: str | None,
    user: str | None,
    consent: str | None,
) -> None:
    """Copy a user's rows into native tables of a plain SQLite file.

    For BI tools and the stock sqlite3 CLI, which cannot load the module. Tables of the same
    name in the target are replaced; the table _remotetables_export records what was copied
    when, and for whom.
    """
    cfg = _config(config_path)
    with _errors():
        specs = [cfg.table(n) for n in names] if names else list(cfg.tables.values())
    if not specs:
        raise click.ClickException(f"no remote tables in {cfg.path}")
    if Path(target).exists() and Path(database).exists() and Path(target).samefile(database):
        raise click.ClickException("--to must be another file than DATABASE")
    if Path(target).exists():
        _check_plain_target(target)
    if user is None:
        for spec in specs:
            p = cfg.providers.get(spec.provider)
            if p is not None and p.per_user:
                raise click.UsageError(
                    f"--user is needed: table {spec.name} reads each user's own rows "
                    f"(provider {p.name} uses personal tokens)"
                )
    with _errors():
        from remotetables.shell import ProgressReporter

        conn = connect(
            database,
            config=cfg,
            user=user,
            consent=_consent(consent, cfg),
            progress=ProgressReporter(sys.stderr) if sys.stderr.isatty() else None,
        )
        try:
            counts = _export(conn, specs, target, user)
        finally:
            conn.close()
    for name, n in counts:
        click.echo(f"{name}: {n} rows")
    whose = f"{user}'s" if user else "the"
    click.echo(f"exported {whose} rows to {target}")


def _check_plain_target(target: str) -> None:
    """The target is for tools without the module: it must not hold remote tables itself."""
    try:
        db = apsw.Connection(target, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            remote = [
                str(name)
                for name, sql in db.execute(
                    "SELECT name, sql FROM sqlite_schema WHERE type = 'table'"
                )
                if MODULE_NAME in str(sql or "").lower()
            ]
        finally:
            db.close()
    except apsw.Error as exc:
        raise click.ClickException(f"{target} is not a SQLite database: {exc}") from None
    if remote:
        raise click.ClickException(
            f"{target} holds remote tables ({', '.join(remote)}): --to must be a plain SQLite "
            "file (a new one, or one written by export)"
        )


def _owner(conn: Connection, spec: TableSpec, user: str | None) -> str | None:
    """Whose rows a table holds: the user for personal tokens, else the shared identity."""
    p = conn.runtime.config.providers.get(spec.provider)
    if p is None:
        return "(public)"
    if p.per_user:
        return user
    return "(system)"


def _export(
    conn: Connection, specs: Sequence[TableSpec], target: str, user: str | None
) -> list[tuple[str, int]]:
    created = not Path(target).exists()
    out = apsw.Connection(target)
    counts = []
    try:
        with out:  # one transaction: all tables or none
            out.execute(
                "CREATE TABLE IF NOT EXISTS _remotetables_export(table_name TEXT PRIMARY KEY, "
                "user TEXT, rows INTEGER, exported_at TEXT)"
            )
            for spec in specs:
                q = '"' + spec.name.replace('"', '""') + '"'
                cols = ", ".join(
                    '"' + c.name.replace('"', '""') + '" ' + _SQL_TYPE[c.type] for c in spec.columns
                )
                out.execute(f"DROP TABLE IF EXISTS {q}")
                out.execute(f"CREATE TABLE {q}({cols})")
                marks = ", ".join("?" * len(spec.columns))
                names = ", ".join('"' + c.name.replace('"', '""') + '"' for c in spec.columns)
                rows = conn.execute(f"SELECT {names} FROM {q}").fetchall()
                out.executemany(f"INSERT INTO {q} VALUES ({marks})", rows)
                stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                out.execute(
                    "INSERT OR REPLACE INTO _remotetables_export VALUES (?, ?, ?, ?)",
                    (spec.name, _owner(conn, spec, user), len(rows), stamp),
                )
                counts.append((spec.name, len(rows)))
    except BaseException:
        out.close()
        if created:  # a failed export (no consent, an API error) leaves no empty file behind
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target + suffix)
        raise
    out.close()
    return counts
