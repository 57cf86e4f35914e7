"""``remotetables demo``: the embedded authorization server and API, a tour or a shell."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from remotetables.cli.common import (
    _errors,
)

__all__ = ["demo"]


@click.command()
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
