"""One Filter call: pushed-down parameters, cache, pages, local re-checks, LIMIT budget.

``args`` resolves Filter's arguments (what goes to the API, what is checked here), ``checks``
applies SQLite's rules to rows, ``pages`` fetches and hands pages to the virtual table.
"""

from __future__ import annotations

from remotetables.scan.args import Row, ScanArgs, prepare
from remotetables.scan.checks import _build_passing, apply_checks, apply_op_checks
from remotetables.scan.pages import PartialPage, scan

__all__ = [
    "PartialPage",
    "Row",
    "ScanArgs",
    "_build_passing",
    "apply_checks",
    "apply_op_checks",
    "prepare",
    "scan",
]
