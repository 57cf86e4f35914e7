"""The ``remotetables`` command line: the click group in :mod:`.main`, one module per command group."""

from __future__ import annotations

from remotetables.cli.main import main

__all__ = ["main"]
