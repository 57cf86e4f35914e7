"""The ``remotetables`` command line: the click group, and where each command group lives.

A thin layer over the library: expected errors become :class:`click.ClickException` with the
library's message (no traceback, never a secret). One module per command group: :mod:`.demo`,
:mod:`.query` (shell, query), :mod:`.tables`, :mod:`.check`, :mod:`.export` (export, sync),
:mod:`.init`, :mod:`.tokens` (login, logout, tokens); what they share is in :mod:`.common`.
"""

from __future__ import annotations

import logging
import sys

import click

from remotetables import __version__
from remotetables.cli.check import check
from remotetables.cli.demo import demo
from remotetables.cli.export import export, sync
from remotetables.cli.init import init
from remotetables.cli.query import query, shell
from remotetables.cli.tables import tables
from remotetables.cli.tokens import login, logout, tokens

__all__ = ["main"]


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


for _command in (demo, shell, query, tables, check, export, sync, init, login, logout, tokens):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
