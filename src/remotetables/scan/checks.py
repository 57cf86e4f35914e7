"""Local re-checks with SQLite's rules, and the small edits a page's items get before rows are
built (filled and echoed fields)."""

from __future__ import annotations

from itertools import compress
from typing import TYPE_CHECKING, Any

from remotetables.errors import (
    CoercionError,
)
from remotetables.pushdown import check
from remotetables.rows import JsonPath, RowBuilder, sql_equal

if TYPE_CHECKING:
    pass

from remotetables.scan.args import Row

__all__ = ["apply_checks", "apply_op_checks"]


def _matches(row: Row, checks: list[tuple[int, list[Any]]]) -> bool:
    for index, allowed in checks:
        value = row[index]
        if not any(sql_equal(value, a) for a in allowed):
            return False
    return True


def apply_checks(rows: list[Row], checks: list[tuple[int, list[Any]]]) -> list[Row]:
    """The rows that pass every check, with SQLite's equality.

    Row values are already of their column's type (TEXT: str; numeric: int/float; never bool)
    and the allowed values have had the column's affinity applied, so Python's ``==`` and set
    membership give SQLite's answer (``1 == 1.0``; a str never equals a number; None is never
    allowed). One check with one value, the common case, is a single comprehension.
    """
    if not checks:
        return rows
    if len(checks) == 1:
        index, allowed = checks[0]
        if len(allowed) == 1:
            want = allowed[0]
            return [r for r in rows if r[index] == want]
        wanted = frozenset(allowed)
        return [r for r in rows if r[index] in wanted]
    return [r for r in rows if _matches(r, checks)]


def apply_op_checks(rows: list[Row], op_checks: list[tuple[int, str, Any]]) -> list[Row]:
    """The rows SQLite keeps for every ``column op value`` term (see pushdown.check)."""
    if not op_checks:
        return rows
    return [r for r in rows if all(check(r[i], op, v) for i, op, v in op_checks)]


def _set_field(items: list[Any], path: JsonPath, value: Any) -> None:
    """Set ``value`` at ``path`` in every item (a path parameter: the row is the value sent)."""
    *parents, last = path
    if not isinstance(last, str) or not all(isinstance(step, str) for step in parents):
        return
    for item in items:
        cur = item
        for step in parents:
            if not isinstance(cur, dict):
                break
            nxt = cur.get(step)
            if not isinstance(nxt, dict):
                nxt = cur[step] = {}
            cur = nxt
        else:
            if isinstance(cur, dict):
                cur[last] = value


def _has_path(item: Any, path: JsonPath) -> bool:
    """Whether ``item`` has a value (JSON null included) at ``path``."""
    cur = item
    for step in path:
        if isinstance(step, str):
            if not isinstance(cur, dict) or step not in cur:
                return False
        elif not isinstance(cur, list) or not -len(cur) <= step < len(cur):
            return False
        cur = cur[step]
    return True


def _fill_absent(items: list[Any], path: JsonPath, value: Any) -> None:
    """Set ``value`` at ``path`` in every item that lacks it (a filter-only API parameter)."""
    *parents, last = path
    if not isinstance(last, str) or not all(isinstance(step, str) for step in parents):
        return  # a path through arrays: nothing to add
    for item in items:
        cur = item
        for step in parents:
            if not isinstance(cur, dict):
                break
            cur = cur.setdefault(step, {})
        else:
            if isinstance(cur, dict) and last not in cur:
                cur[last] = value


def _build_passing(
    builder: RowBuilder,
    prefilter: RowBuilder,
    items: list[Any],
    first_row: int,
    checks: list[tuple[int, list[Any]]],
) -> list[Row]:
    """Whole rows (``builder``) for the items whose checked columns (``prefilter``) pass."""
    keys = prefilter.build_page(items, first_row)
    if len(checks) == 1:
        index, allowed = checks[0]
        if len(allowed) == 1:
            want = allowed[0]
            mask = [k[index] == want for k in keys]
        else:
            wanted = frozenset(allowed)
            mask = [k[index] in wanted for k in keys]
    else:
        mask = [_matches(k, checks) for k in keys]
    selected = list(compress(items, mask))
    if len(selected) == len(items):
        return builder.build_page(items, first_row)
    try:
        return builder.build_page(selected, first_row)
    except CoercionError:
        # name the failing row by its place in the page, not in the selection
        for n in compress(range(len(items)), mask):
            builder.build_page([items[n]], first_row + n)
        raise
