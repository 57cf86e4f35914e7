"""BestIndex inputs -> a query plan -> ``idxStr`` (pure: no apsw types here).

The virtual table hands :func:`make_plan` plain data (constraints as ``(column, op, usable,
rhs_known)``, the number of ORDER BY terms) and applies what comes back to its IndexInfo.

Rules (see shared/reference/apsw-facts.md):

* equality and IN on a column with ``param`` become Filter arguments;
* a pushed constraint is ``omit``-ted (SQLite does not re-check it) only when Filter applies it
  exactly as SQLite would: numeric columns always; text columns when the right-hand side is a
  constant text (a number, or a column from another table, may carry an affinity that changes
  the comparison);
* other operators (``>``, ``>=``, ``<``, ``<=``, ``!=``, ``LIKE``, ``GLOB``, ``IS [NOT] NULL``)
  become Filter arguments on a column whose ``filters`` map them (a strict bound also through the
  inclusive one); they are omitted and re-checked in Filter under the same rule as equality,
  except LIKE and GLOB, which SQLite always re-checks (PRAGMA case_sensitive_like);
* a path parameter (``{name}`` in the URL) takes = and IN like a ``param`` column, an IN one
  value per Filter call (SQLite re-checks each);
* one ORDER BY term on a column with ``sort`` is sent to the API; it is consumed
  (``orderByConsumed``) only when the column is ``sort_exact`` and one Filter call returns every
  row (no IN handed out value by value);
* LIMIT/OFFSET are taken only when there is no ORDER BY or it is consumed; SQLite offers them
  only when every WHERE term is a Filter argument;
* a required parameter with no usable constraint in this variant rejects the plan; with no
  constraint at all the plan says so and Filter raises a clear error naming the column.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from remotetables.config import ColumnSpec, TableSpec
from remotetables.pushdown import OPS_BY_CODE, RANGE_OPS
from remotetables.rows import affinity_of

__all__ = ["OP_EQ", "OP_LIMIT", "OP_OFFSET", "Constraint", "Plan", "PlanResult", "make_plan"]

OP_EQ = 2
OP_LIMIT = 73
OP_OFFSET = 74


@dataclass(frozen=True)
class Constraint:
    column: int  # -1 for rowid; unused for LIMIT/OFFSET
    op: int
    usable: bool
    rhs_known: bool = False  # SQLite gave the right-hand side at plan time (a constant)
    rhs_text: bool = False  # ... and it is a text value
    in_capable: bool = False  # sqlite3_vtab_in() says this EQ is an IN (...) list
    binary: bool = True  # BINARY collation (a COLLATE NOCASE comparison is left to SQLite)


@dataclass
class Plan:
    """What Filter needs; travels through SQLite as JSON in idxStr."""

    # ("eq"|"in"|"local"|"limit"|"offset", column), or (an operator of FILTER_OPS, column)
    args: list[tuple[str, int]] = field(default_factory=list)
    recheck: list[int] = field(default_factory=list)  # argv positions Filter must apply locally
    kept: list[int] = field(default_factory=list)  # argv positions SQLite re-checks (not omitted)
    missing_required: list[str] = field(default_factory=list)
    used: list[int] | None = None  # columns the query reads (None: all)
    sort: tuple[int, bool] | None = None  # ORDER BY sent to the API: (column, descending)

    def to_idxstr(self) -> str:
        return json.dumps(
            {
                "a": self.args,
                "r": self.recheck,
                "k": self.kept,
                "m": self.missing_required,
                "u": self.used,
                "s": self.sort,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_idxstr(cls, text: str | None) -> Plan:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            args=[(str(k), int(c)) for k, c in data["a"]],
            recheck=[int(i) for i in data["r"]],
            kept=[int(i) for i in data.get("k", [])],
            missing_required=[str(m) for m in data["m"]],
            used=None if data.get("u") is None else [int(c) for c in data["u"]],
            sort=None if data.get("s") is None else (int(data["s"][0]), bool(data["s"][1])),
        )


@dataclass
class PlanResult:
    plan: Plan
    # per constraint index: (argv index 1-based, omit, use IN list) ; absent = not used
    usage: dict[int, tuple[int, bool, bool]]
    estimated_cost: float
    estimated_rows: int
    accept: bool = True
    order_consumed: bool = False  # the rows come in the ORDER BY's order (orderByConsumed)


def make_plan(
    spec: TableSpec,
    constraints: Sequence[Constraint],
    n_order_by: int,
    col_used: Collection[int] | None = None,
    order_by: Sequence[tuple[int, bool]] = (),
) -> PlanResult:
    usage: dict[int, tuple[int, bool, bool]] = {}
    plan = Plan()
    if col_used is not None and not any(c >= 63 for c in col_used):  # 63: "63 or more"
        plan.used = sorted(c for c in col_used if c < len(spec.columns))
    taken_columns: set[int] = set()
    taken_ops: set[tuple[int, str]] = set()
    all_consumed = True
    required_seen_unusable: set[str] = set()

    for i, c in enumerate(constraints):
        if c.op in (OP_LIMIT, OP_OFFSET):
            continue
        col = spec.columns[c.column] if 0 <= c.column < len(spec.columns) else None
        op_name = OPS_BY_CODE.get(c.op)
        if col is not None and op_name is not None and c.usable:
            took = _take_operator(col, c, op_name, taken_ops, plan, usage, i)
            if took is None or not took:
                all_consumed = False  # not pushed, or SQLite re-checks it (LIKE, GLOB)
            continue
        if col is None or c.op != OP_EQ or not c.binary:
            all_consumed = False
            continue
        if col.param is None and not col.path_param and "=" not in col.query_ops:
            # no API parameter: applied in Filter when that is exactly SQLite's comparison,
            # so SQLite neither asks for the column nor sees the rows that fail it
            local_ok = affinity_of(col.type) != "TEXT" or (c.rhs_known and c.rhs_text)
            if not c.usable or c.in_capable or c.column in taken_columns or not local_ok:
                all_consumed = False
                continue
            taken_columns.add(c.column)
            plan.args.append(("local", c.column))
            plan.recheck.append(len(plan.args) - 1)
            usage[i] = (len(plan.args), True, False)
            continue
        if not c.usable:
            all_consumed = False
            if col.required:
                required_seen_unusable.add(col.name)
            continue
        if c.column in taken_columns:
            all_consumed = False  # a second constraint on the same column: SQLite checks it
            continue
        numeric = affinity_of(col.type) != "TEXT"
        text_literal = c.rhs_known and c.rhs_text
        in_style = col.in_style
        if col.query_field:  # a query language takes a list in one term, or not at all
            in_style = "comma" if "IN" in col.query_ops else "separate"
        if (
            c.in_capable
            and in_style == "separate"
            and not numeric
            and not text_literal
            and not col.path_param
        ):
            # SQLite re-checks an IN handed out one value at a time with text comparison on a
            # TEXT column, where the IN itself compares numerically for a numeric subquery
            # ('01' IN (SELECT 1)): leave such an IN to SQLite entirely.
            all_consumed = False
            continue
        taken_columns.add(c.column)
        use_in = c.in_capable and in_style != "separate"
        plan.args.append(("in" if use_in else "eq", c.column))
        argv = len(plan.args)
        numeric = affinity_of(col.type) != "TEXT"
        # A text column compared with a constant text keeps the text; a number may carry an
        # affinity (CAST(1 AS INTEGER), another table's column) that makes SQLite compare numerically.
        omit = numeric or (c.rhs_known and c.rhs_text)
        if not omit:
            plan.kept.append(argv - 1)
            all_consumed = False  # SQLite re-checks it: a LIMIT taken here could cut rows it keeps
        if omit and not col.exact:
            plan.recheck.append(argv - 1)
        usage[i] = (argv, omit, use_in)

    for col_index, col in enumerate(spec.columns):
        if col.required and col_index not in taken_columns:
            if col.name in required_seen_unusable:
                # another join order can make it usable; reject this variant
                return PlanResult(plan, {}, 1e99, 10**9, accept=False)
            plan.missing_required.append(col.name)

    consumed = False
    sorts = spec.order_by is not None or (
        spec.query is not None and spec.query.order_asc is not None
    )
    if len(order_by) == 1 and sorts and 0 <= order_by[0][0] < len(spec.columns):
        sort_col = spec.columns[order_by[0][0]]
        if sort_col.sort:
            plan.sort = order_by[0]
            # one Filter call per IN value gives sorted runs, not one sorted whole
            several_calls = any(
                constraints[i].in_capable and not use_in for i, (_, _, use_in) in usage.items()
            )
            consumed = sort_col.sort_exact and not several_calls

    if all_consumed and (n_order_by == 0 or consumed):
        for i, c in enumerate(constraints):
            if c.op in (OP_LIMIT, OP_OFFSET) and c.usable:
                plan.args.append(("limit" if c.op == OP_LIMIT else "offset", -1))
                usage[i] = (len(plan.args), True, False)

    n_eq = sum(1 for kind, _ in plan.args if kind in ("eq", "in"))
    n_ops = sum(1 for kind, _ in plan.args if kind in OPS_BY_CODE.values())
    rows = max(1, 100_000 // (10**n_eq) // (2**n_ops))
    cost = 1_000_000.0 / (10**n_eq) / (2**n_ops)
    if any(kind == "limit" for kind, _ in plan.args):
        cost /= 10
    if consumed:
        cost *= 0.9  # no sort step
    return PlanResult(plan, usage, cost, rows, order_consumed=consumed)


def _take_operator(
    col: ColumnSpec,
    c: Constraint,
    op: str,
    taken: set[tuple[int, str]],
    plan: Plan,
    usage: dict[int, tuple[int, bool, bool]],
    index: int,
) -> bool | None:
    """Make ``col op rhs`` a Filter argument if the column maps the operator. Returns None when
    not taken, else whether it is omitted (applied in Filter; False: SQLite re-checks it)."""
    has = col.filter_for(op) is not None or op in col.query_ops
    if op in (">", "<") and not has:  # a strict bound through the inclusive one
        has = col.filter_for(op + "=") is not None or op + "=" in col.query_ops
    if not has or not c.binary or (c.column, op) in taken:
        return None
    numeric = affinity_of(col.type) != "TEXT"
    if op in (*RANGE_OPS, "!=") and not numeric and not (c.rhs_known and c.rhs_text):
        # a number, or another column with its own affinity, may compare numerically with the
        # text (SQLite's rules): only a constant text compares as text for certain
        return None
    taken.add((c.column, op))
    plan.args.append((op, c.column))
    omit = op not in ("LIKE", "GLOB")
    usage[index] = (len(plan.args), omit, False)
    return omit
