"""What each column can push to the API, as rows: the ``remotetables_columns`` SQL table and
``remotetables tables`` show them (as Steampipe's key-column listings do).

For ``url = ".../repos/{owner}/issues"`` and ``since = { filters = { ">=" = "since" } }``::

    ('t', 'owner', 'TEXT', '=', '{owner} in the path', 1, 0)
    ('t', 'owner', 'TEXT', 'IN', '{owner} in the path, one request per value', 1, 0)
    ('t', 'since', 'TEXT', '>=', 'since', 0, 0)
"""

from __future__ import annotations

from remotetables.config import TableSpec

__all__ = ["COLUMNS", "describe_columns"]

COLUMNS = ("table_name", "column_name", "type", "operator", "parameter", "required", "exact")

ColumnRow = tuple[str, str, str, str | None, str | None, int, int]


def describe_columns(spec: TableSpec) -> list[ColumnRow]:
    """One row per (column, operator pushed); a column that pushes nothing has one row with a
    NULL operator. ``required`` and ``exact`` are 0/1."""
    out: list[ColumnRow] = []
    for col in spec.columns:
        base = (spec.name, col.name, col.type)
        flags = (int(col.required), int(col.exact))
        n = len(out)
        if col.path_param:
            out.append((*base, "=", f"{{{col.name}}} in the path", *flags))
            out.append((*base, "IN", f"{{{col.name}}} in the path, one request per value", *flags))
        elif col.param:
            out.append((*base, "=", col.param, *flags))
            how = {"separate": "one request per value", "comma": "a,b", "repeat": "repeated"}
            out.append((*base, "IN", f"{col.param} ({how[col.in_style]})", *flags))
        for f in col.filters:
            if f.value is not None:
                text = f"{f.param}={f.value}"
            elif f.op in ("LIKE", "GLOB"):
                text = f"{f.param} ({f.match}" + (", any case)" if f.case == "insensitive" else ")")
            else:
                text = f.param + ("" if f.format == "text" else f" ({f.format})")
            out.append((*base, f.op, text, *flags))
        q = spec.query
        if q is not None and col.query_field is not None:
            for op in col.query_ops:
                template = q.template(op) or ""
                out.append(
                    (
                        *base,
                        op,
                        f"{q.param}: {template.replace('{field}', col.query_field)}",
                        *flags,
                    )
                )
        if col.sort and spec.order_by is not None:
            order = spec.order_by
            text = f"{order.param}={order.template.replace('{field}', col.sort)}"
            text += " (consumed)" if col.sort_exact else " (SQLite sorts again)"
            out.append((*base, "ORDER BY", text, *flags))
        elif col.sort and q is not None and q.order_asc is not None:
            text = f"{q.param}: {q.order_asc.replace('{field}', col.sort)}"
            text += " (consumed)" if col.sort_exact else " (SQLite sorts again)"
            out.append((*base, "ORDER BY", text, *flags))
        if len(out) == n:
            out.append((*base, None, None, *flags))
    return out
