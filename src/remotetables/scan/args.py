"""Filter's arguments resolved against the table: API parameters, path values, local checks
(SQLite semantics), sort and column-list parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from remotetables.config import ColumnSpec, TableSpec
from remotetables.errors import (
    MissingParameterError,
)
from remotetables.plan import Plan
from remotetables.pushdown import (
    OPS_BY_CODE,
    compile_query,
    like_term,
    query_term,
    request_param,
)
from remotetables.rows import affinity_of, apply_affinity

if TYPE_CHECKING:
    pass

__all__ = ["Row", "ScanArgs", "prepare"]

Row = tuple[Any, ...]


@dataclass
class ScanArgs:
    """Filter's arguments, resolved against the table."""

    pushed: list[tuple[str, str]]  # API parameters from WHERE
    checks: list[tuple[int, list[Any]]]  # (column, allowed values) applied locally
    limit: int | None
    offset: int
    empty: bool  # the WHERE clause cannot match anything (= NULL, IN ())
    covered: bool = True  # every pushed parameter is re-checked locally
    local: bool = False  # some WHERE term is applied only here (the API returns more rows)
    used: list[int] | None = None  # columns to build (None: all)
    # filter_only columns with their one value: every row echoes it (the API filtered on it)
    fills: list[tuple[int, Any]] = field(default_factory=list)
    multi: list[int] = field(default_factory=list)  # filter_only columns sent several values
    # other operators applied locally: (column, operator, value with the column's affinity)
    op_checks: list[tuple[int, str, Any]] = field(default_factory=list)
    query_terms: list[str] = field(default_factory=list)  # terms of the table's query language
    path: dict[str, str] = field(default_factory=dict)  # {placeholder} -> value (the URL's path)
    echo: list[tuple[int, Any]] = field(default_factory=list)  # path columns take the value sent


def _is_blob(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))


def _format_param(value: Any, sql_type: str) -> str:
    if sql_type == "BOOLEAN" and isinstance(value, int) and value in (0, 1):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and sql_type != "REAL":
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_OPERATORS = frozenset(OPS_BY_CODE.values())


def _missing(spec: TableSpec, missing: list[str]) -> MissingParameterError:
    cols = ", ".join(missing)
    first = spec.columns[spec.column_index(missing[0])]
    if first.path_param:
        return MissingParameterError(
            f"table {spec.name}: its URL's path needs a value for {cols}: add WHERE "
            + " AND ".join(f"{name} = ..." for name in missing)
            + " to the query (or IN (...), or join on them)"
        )
    if affinity_of(first.type) == "TEXT" and first.in_style == "separate":
        # SQLite keeps such an IN to itself (see the README's pushdown section)
        alternative = (
            '; an IN list on it needs in = "comma" or "repeat" on the column (the '
            "API's list syntax)"
        )
    else:
        alternative = " (or IN (...))"
    return MissingParameterError(
        f"table {spec.name}: the API needs a value for {cols}: add WHERE {first.name} = "
        f"... to the query{alternative}"
    )


def _in_query(col: ColumnSpec, op: str) -> bool:
    return col.query_field is not None and (
        op in col.query_ops or (op in ("<", ">") and op + "=" in col.query_ops)
    )


def _operator(
    spec: TableSpec, out: ScanArgs, col_index: int, col: ColumnSpec, op: str, arg: Any
) -> None:
    """One ``col op arg`` term: the API parameter (or a term of the table's query language)
    when it is safe, the local check unless what was sent is exactly the term on an ``exact``
    column. LIKE and GLOB SQLite re-checks."""
    query = spec.query if _in_query(col, op) else None
    if query is not None and op in ("LIKE", "GLOB"):
        term = query_term(query, col, op, [arg])
        if term is not None:
            out.query_terms.append(term[0])
            out.covered = False
        else:
            out.local = True
        return
    if op in ("LIKE", "GLOB"):
        f = col.filter_for(op)
        text = None if f is None else like_term(f, op, arg)
        if f is not None and text is not None:
            out.pushed.append((f.param, text))
            out.covered = False
        else:
            out.local = True
        return
    value = None if op in ("IS NULL", "IS NOT NULL") else apply_affinity(arg, affinity_of(col.type))
    if value is None and op not in ("IS NULL", "IS NOT NULL"):
        out.empty = True  # a comparison with NULL is never true
        return
    if query is not None:
        term = query_term(query, col, op, [value])
        sent = None if term is None else ("", term[0], term[1])
        if term is not None:
            out.query_terms.append(term[0])
    else:
        sent = request_param(col, op, value)
        if sent is not None and any(name == sent[0] for name, _ in out.pushed):
            sent = None  # the parameter already carries another term: this one stays local
        if sent is not None:
            out.pushed.append((sent[0], sent[1]))
    if sent is None or not sent[2] or not col.exact:
        out.op_checks.append((col_index, op, value))
        if sent is None:
            out.local = True
    else:
        out.covered = False  # the API's own filter is trusted: a wider scan cannot answer it


def prepare(spec: TableSpec, plan: Plan, args: Sequence[Any]) -> ScanArgs:
    """Turn Filter's ``args`` into API parameters and local checks (SQLite semantics)."""
    if plan.missing_required:
        raise _missing(spec, plan.missing_required)
    out = ScanArgs([], [], None, 0, False)
    if plan.used is not None:
        used = {
            *plan.used,
            *(c for kind, c in plan.args if kind in ("eq", "in", "local") or kind in _OPERATORS),
        }
        if spec.key is not None:
            used.add(spec.column_index(spec.key))  # rowids come from the key
        # a keyless table's rowid is the identity of the whole row: its tuples carry their JSON
        # item, and the cursor builds the whole row from it only when SQLite asks for a rowid
        out.used = sorted(used)
    for pos, ((kind, col_index), arg) in enumerate(zip(plan.args, args, strict=True)):
        if kind == "limit":
            out.limit = None if arg is None or int(arg) < 0 else int(arg)
            continue
        if kind == "offset":
            out.offset = max(0, int(arg or 0))
            continue
        col = spec.columns[col_index]
        if kind in _OPERATORS:
            _operator(spec, out, col_index, col, kind, arg)
            continue
        affinity = affinity_of(col.type)
        raw_values = sorted(arg, key=repr) if kind == "in" else [arg]
        # a BLOB never equals a number or a text (and no column holds BLOBs): it matches nothing
        values = [
            apply_affinity(v, affinity) for v in raw_values if v is not None and not _is_blob(v)
        ]
        if affinity != "TEXT":
            # a text that is not a number never equals a numeric column's value
            values = [v for v in values if not isinstance(v, str)]
        if not values:
            out.empty = True
            continue
        if col.path_param:
            text = _format_param(values[0], col.type)
            if text == "":
                out.empty = True  # no resource is named by an empty path segment
                continue
            out.path[col.name] = text
            out.echo.append((col_index, values[0]))
            out.covered = False
            continue
        if affinity == "TEXT" and pos in plan.kept and any(_numeric_looking(v) for v in raw_values):
            # A number (or a number turned to text by SQLite) against a text column: SQLite may
            # compare numerically ('01' = 1) depending on the other side's affinity, which Filter
            # cannot see. Sending it to the API could drop rows SQLite would keep: leave it to SQLite.
            continue
        if kind == "local":  # no API parameter: only the local check
            out.checks.append((col_index, values))
            out.local = True
            continue
        if col.param is None and spec.query is not None:  # a term of the query language
            op = "IN" if len(values) > 1 else "="
            term = query_term(spec.query, col, op, values)
            if term is None:  # not sent: checked here, or by SQLite when it keeps the term
                if pos not in plan.kept:
                    out.checks.append((col_index, values))
                out.local = True
                continue
            out.query_terms.append(term[0])
        else:
            assert col.param is not None
            texts = [_format_param(v, col.type) for v in values]
            if col.in_style == "comma" and any("," in t for t in texts):
                # the API would split the value on its comma: never send it; SQLite's own
                # comparison decides (here when SQLite omitted the term, else SQLite re-checks it)
                if col.filter_only or col.required:
                    raise MissingParameterError(
                        f"table {spec.name}: column {col.name} sends its values as one "
                        f'comma-separated list (in = "comma"), and a value holds a comma that the '
                        "API would split; the API needs this parameter, so the query cannot be "
                        'answered (set in = "separate" or "repeat" on the column)'
                    )
                if pos not in plan.kept:
                    out.checks.append((col_index, values))
                    out.local = True
                continue
            if kind == "in" and col.in_style == "comma":
                out.pushed.append((col.param, ",".join(texts)))
            else:
                out.pushed.extend((col.param, t) for t in texts)
        if pos not in plan.recheck or col.filter_only:
            out.covered = False  # the API's own filter is trusted: a wider scan cannot answer it
        if col.filter_only:
            if len(values) == 1:
                out.fills.append((col_index, values[0]))
            else:
                out.multi.append(col_index)
        if pos in plan.recheck:
            out.checks.append((col_index, values))
    _order_and_fields(spec, plan, out)
    return out


def _order_and_fields(spec: TableSpec, plan: Plan, out: ScanArgs) -> None:
    """The API's sort parameters (ORDER BY) and column list (the columns the query reads)."""
    order = spec.order_by
    query = spec.query
    if query is not None:
        sort = None
        if plan.sort is not None and order is None:
            name = spec.columns[plan.sort[0]].sort
            sort = None if name is None else (name, plan.sort[1])
            out.covered = False  # a cached whole-table scan is in another order
        text = compile_query(query, out.query_terms, sort)
        if text is not None:
            out.pushed.append((query.param, text))
    if plan.sort is not None and order is not None:
        col = spec.columns[plan.sort[0]]
        assert col.sort is not None
        direction = order.desc if plan.sort[1] else order.asc
        out.pushed.append((order.param, order.template.format(field=col.sort, dir=direction)))
        if order.direction_param:
            out.pushed.append((order.direction_param, direction))
        out.covered = False  # a cached whole-table scan is in another order
    if spec.fields_param and out.used is not None:
        names: list[str] = []
        # a keyless table's rowid is the identity of the whole row: every field is asked for
        # (scans reading other columns meet on rowid: OR merges, self-joins, rowid IN)
        asked = out.used if spec.key is not None else range(len(spec.columns))
        for index in asked:
            col = spec.columns[index]
            first = col.query_field or (col.path[0] if col.path else None)
            if not col.path_param and isinstance(first, str) and first not in names:
                names.append(first)
        if names:
            out.pushed.append((spec.fields_param, spec.fields_separator.join(names)))


def _numeric_looking(value: Any) -> bool:
    if isinstance(value, str):
        return apply_affinity(value, "NUMERIC") is not value
    return value is not None
