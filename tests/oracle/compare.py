"""Comparing a remote answer with the native one: values and their types, as SQLite gives them."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from tests.oracle.queries import Query

Rows = list[tuple[Any, ...]]


def strict(rows: Sequence[tuple[Any, ...]]) -> list[tuple[tuple[str, Any], ...]]:
    """Rows with each value tagged by its type: 2, 2.0 and '2' all differ."""
    return [tuple((type(v).__name__, v) for v in r) for r in rows]


def bag(rows: Sequence[tuple[Any, ...]]) -> list[tuple[tuple[str, Any], ...]]:
    return sorted(strict(rows), key=repr)


def sub_bag(part: Sequence[tuple[Any, ...]], whole: Sequence[tuple[Any, ...]]) -> bool:
    pool: dict[str, int] = {}
    for r in strict(whole):
        pool[repr(r)] = pool.get(repr(r), 0) + 1
    for r in strict(part):
        k = repr(r)
        if pool.get(k, 0) <= 0:
            return False
        pool[k] -= 1
    return True


_LIMIT = re.compile(r"\s+LIMIT\s+(-?\d+)(?:\s+OFFSET\s+(\d+))?\s*$")


def check(run: Callable[[str, tuple[Any, ...]], Rows], q: Query, remote: str, native: str) -> None:
    """Run ``q`` on both tables; ``q.mode``: bag, ordered, or window (LIMIT, no ORDER BY)."""
    sql_r = q.template.replace("{t}", remote)
    sql_n = q.template.replace("{t}", native)
    got = run(sql_r, q.params)
    want = run(sql_n, q.params)
    where = f"{sql_r} {q.params!r}"
    if q.mode == "ordered":
        assert strict(got) == strict(want), where
    elif q.mode == "bag":
        assert bag(got) == bag(want), where
    else:
        m = _LIMIT.search(q.template)
        assert m is not None, q.template
        full = _LIMIT.sub("", q.template)
        full_want = run(full.replace("{t}", native), q.params)
        assert len(got) == len(want), f"{where}: row count"
        assert sub_bag(got, full_want), f"{where}: rows not in the answer"
