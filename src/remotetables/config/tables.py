"""``[tables.X]`` -> :class:`TableSpec`: the API resource, its rows, pagination, columns, writes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from remotetables.config.listing import LISTING_KEYS, listing
from remotetables.config.parse import (
    _Ctx,
    _get,
    _is_secret_name,
    _only,
    _path,
    _str_map,
    _table,
    _url,
)
from remotetables.config.types import (
    FILTER_FORMATS,
    FILTER_MATCHES,
    FILTER_OPS,
    IDENT,
    IN_STYLES,
    PAGINATION_STYLES,
    SQL_TYPES,
    ColumnSpec,
    FilterSpec,
    OrderBySpec,
    PaginationSpec,
    ProviderConfig,
    QuerySpec,
    TableSpec,
    WriteSpec,
)
from remotetables.rows import JsonPath

_TABLE_KEYS = {
    "provider", "url", "rows", "pagination", "page_size_param", "max_page_size", "params",
    "cache_ttl", "max_pages", "columns", "concurrency", "key", "write", "description",
    "updated_since",
    "order_by", "fields_param", "fields_separator", "query",
}  # fmt: skip
_COLUMN_KEYS = {
    "type", "path", "param", "required", "exact", "in", "on_error", "writable", "filters",
    "sort", "sort_exact", "query", "filter_only",
}  # fmt: skip
_QUERY_KEYS = {
    "param", "terms", "joiner", "quote", "escapes", "local_if", "quote_numbers", "list_separator",
    "base", "order_asc", "order_desc", "order_joiner", "like_case",
}  # fmt: skip
_FILTER_KEYS = {"param", "format", "match", "case", "value"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _path_params(ctx: _Ctx, key: str, url: str) -> list[str]:
    """The ``{name}`` placeholders of a table URL: path segments only, each a plain name."""
    parts = urlsplit(url)
    for where, text in (
        ("host", parts.netloc),
        ("query", parts.query),
        ("fragment", parts.fragment),
    ):
        if "{" in text or "}" in text:
            raise ctx.err(
                key, f"a {{placeholder}} may only stand in the URL's path, not its {where}"
            )
    names = _PLACEHOLDER.findall(parts.path)
    if _PLACEHOLDER.sub("", parts.path).count("{") or _PLACEHOLDER.sub("", parts.path).count("}"):
        raise ctx.err(key, "unbalanced { or } in the URL's path")
    for name in names:
        if not IDENT.match(name):
            raise ctx.err(key, f"{{{name}}} must name a column (letters, digits, _)")
    if len({n.lower() for n in names}) != len(names):
        raise ctx.err(key, "a column may stand only once in the URL's path")
    return names


def _table_spec(
    ctx: _Ctx, name: str, raw: Mapping[str, Any], providers: Mapping[str, ProviderConfig]
) -> TableSpec:
    p = f"tables.{name}"
    _only(ctx, p, raw, _TABLE_KEYS | LISTING_KEYS)
    provider = _get(ctx, raw, p, "provider", str)
    if provider is None:
        if len(providers) == 1:
            provider = next(iter(providers))
        elif not providers:
            provider = "__none__"
        else:
            raise ctx.err(f"{p}.provider", "missing: say which provider's token this table uses")
    if provider != "__none__" and provider not in providers:
        known = ", ".join(sorted(providers)) or "none"
        raise ctx.err(f"{p}.provider", f"unknown provider {provider!r} (configured: {known})")
    url = _get(ctx, raw, p, "url", str)
    if not url:
        raise ctx.err(f"{p}.url", "missing: every table needs the URL of its API resource")
    _url(ctx, f"{p}.url", url)
    path_names = _path_params(ctx, f"{p}.url", url)
    rows_path = _path(ctx, f"{p}.rows", _get(ctx, raw, p, "rows", str, ""))
    pagination = _pagination(ctx, p, raw.get("pagination", "none"))
    max_page_size = _get(ctx, raw, p, "max_page_size", int)
    if max_page_size is not None and max_page_size < 1:
        raise ctx.err(f"{p}.max_page_size", "must be >= 1")
    params = _str_map(ctx, f"{p}.params", _get(ctx, raw, p, "params", dict, {}))
    for k in params:
        if _is_secret_name(k):
            raise ctx.err(
                f"{p}.params.{k}",
                "looks like a secret: secrets are never written in the config; for an API key "
                f'sent as a query parameter give the provider token_env = "VARIABLE" and '
                f'token_param = "{k}"',
            )
    ttl = _get(ctx, raw, p, "cache_ttl", float, 30.0)
    if ttl < 0:
        raise ctx.err(f"{p}.cache_ttl", "must be >= 0 (0 disables the cache)")
    max_pages = _get(ctx, raw, p, "max_pages", int, 10_000)
    if max_pages < 1:
        raise ctx.err(f"{p}.max_pages", "must be >= 1")
    concurrency = _get(ctx, raw, p, "concurrency", int, 4)
    if not 1 <= concurrency <= 32:
        raise ctx.err(f"{p}.concurrency", "must be between 1 and 32")
    raw_cols = raw.get("columns")
    if raw_cols is None:
        raise ctx.err(
            f"{p}.columns",
            'missing: list the columns (name = "TYPE" or name = { type = ..., path = ... })',
        )
    query = _query(ctx, p, raw.get("query"))
    cols = _columns(ctx, p, raw_cols, {n.lower() for n in path_names}, query)
    names = {c.name.lower() for c in cols}
    for n in path_names:
        if n.lower() not in names:
            raise ctx.err(
                f"{p}.url", f"{{{n}}} names no column: add a column {n} (its value fills the path)"
            )
    key = _get(ctx, raw, p, "key", str)
    if key is not None and key.lower() not in names:
        raise ctx.err(f"{p}.key", f"no column named {key!r}")
    write = _write(ctx, p, raw.get("write"), key, names)
    since = _updated_since(ctx, p, raw.get("updated_since"), key, cols)
    order_by = _order_by(ctx, p, raw.get("order_by"))
    sorted_cols = [c.name for c in cols if c.sort]
    if sorted_cols and order_by is None and (query is None or query.order_asc is None):
        raise ctx.err(
            f"{p}.order_by",
            f"columns {', '.join(sorted_cols)} have sort: say how the API sorts "
            '(order_by = { param = "sort", direction_param = "direction" })',
        )
    if write is not None and path_names:
        raise ctx.err(
            f"{p}.write", "writes to a table with {placeholders} in its URL are not supported yet"
        )
    method, body = listing(ctx, p, raw, pagination)
    return TableSpec(
        name=name,
        provider=provider,
        url=url,
        rows_path=rows_path,
        columns=cols,
        pagination=pagination,
        page_size_param=_get(ctx, raw, p, "page_size_param", str),
        max_page_size=max_page_size,
        params=tuple(params.items()),
        cache_ttl=ttl,
        max_pages=max_pages,
        concurrency=concurrency,
        key=key,
        write=write,
        description=_get(ctx, raw, p, "description", str),
        updated_since=since,
        order_by=order_by,
        fields_param=_get(ctx, raw, p, "fields_param", str),
        fields_separator=_get(ctx, raw, p, "fields_separator", str, ","),
        query=query,
        method=method,
        body=body,
    )


def _query(ctx: _Ctx, p: str, raw: Any) -> QuerySpec | None:
    if raw is None:
        return None
    key = f"{p}.query"
    raw = _table(ctx, key, raw)
    _only(ctx, key, raw, _QUERY_KEYS)
    param = _get(ctx, raw, key, "param", str)
    if not param:
        raise ctx.err(f"{key}.param", "missing: the parameter that holds the whole expression")
    terms = []
    for op_text, template in _table(ctx, f"{key}.terms", raw.get("terms", {})).items():
        op = " ".join(str(op_text).upper().split())
        if op not in ("=", "IN", *FILTER_OPS):
            raise ctx.err(
                f"{key}.terms.{op_text}", f"unknown operator; one of =, IN, {', '.join(FILTER_OPS)}"
            )
        if not isinstance(template, str) or "{field}" not in template:
            raise ctx.err(f"{key}.terms.{op_text}", "must be a text with {field}")
        needs = (
            "{values}" if op == "IN" else ("" if op in ("IS NULL", "IS NOT NULL") else "{value}")
        )
        if needs and needs not in template:
            raise ctx.err(f"{key}.terms.{op_text}", f"must contain {needs}")
        terms.append((op, template))
    if not terms:
        raise ctx.err(
            f"{key}.terms", 'missing: the term per operator ({ "=" = "{field}={value}" })'
        )
    escapes = _get(ctx, raw, key, "escapes", list, [])
    if not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in escapes
    ):
        raise ctx.err(f"{key}.escapes", 'must be a list of [from, to] pairs ([["\'", "\'\'"]])')
    local_if = _get(ctx, raw, key, "local_if", list, [])
    if not all(isinstance(x, str) and x for x in local_if):
        raise ctx.err(f"{key}.local_if", "must be a list of texts")
    like_case = _get(ctx, raw, key, "like_case", str, "sensitive")
    if like_case not in ("sensitive", "insensitive"):
        raise ctx.err(f"{key}.like_case", "must be 'sensitive' or 'insensitive'")
    return QuerySpec(
        param=param,
        terms=tuple(terms),
        joiner=_get(ctx, raw, key, "joiner", str, " and "),
        quote=_get(ctx, raw, key, "quote", str, ""),
        escapes=tuple((a, b) for a, b in escapes),
        local_if=tuple(local_if),
        quote_numbers=_get(ctx, raw, key, "quote_numbers", bool, False),
        list_separator=_get(ctx, raw, key, "list_separator", str, ","),
        base=_get(ctx, raw, key, "base", str),
        order_asc=_get(ctx, raw, key, "order_asc", str),
        order_desc=_get(ctx, raw, key, "order_desc", str),
        order_joiner=_get(ctx, raw, key, "order_joiner", str),
        like_case=like_case,
    )


def _query_column(
    ctx: _Ctx, ck: str, raw: Any, query: QuerySpec | None
) -> tuple[str | None, tuple[str, ...], str]:
    """A column's ``query = "field"`` or ``{ field, ops, format }``."""
    if raw is None:
        return None, (), "text"
    if query is None:
        raise ctx.err(f"{ck}.query", "the table has no query language (its query table)")
    if isinstance(raw, str):
        raw = {"field": raw}
    raw = _table(ctx, f"{ck}.query", raw)
    _only(ctx, f"{ck}.query", raw, {"field", "ops", "format"})
    field = _get(ctx, raw, f"{ck}.query", "field", str)
    if not field:
        raise ctx.err(f"{ck}.query.field", "missing: the column's name in the query language")
    known = [op for op, _ in query.terms]
    ops = _get(ctx, raw, f"{ck}.query", "ops", list, known)
    for op in ops:
        if op not in known:
            raise ctx.err(
                f"{ck}.query.ops", f"{op!r} has no term in the table's query ({', '.join(known)})"
            )
    fmt = _get(ctx, raw, f"{ck}.query", "format", str, "text")
    if fmt not in FILTER_FORMATS:
        raise ctx.err(f"{ck}.query.format", f"must be one of {', '.join(FILTER_FORMATS)}")
    return field, tuple(ops), fmt


def _order_by(ctx: _Ctx, p: str, raw: Any) -> OrderBySpec | None:
    if raw is None:
        return None
    key = f"{p}.order_by"
    raw = _table(ctx, key, raw)
    _only(ctx, key, raw, {"param", "template", "direction_param", "asc", "desc"})
    param = _get(ctx, raw, key, "param", str)
    if not param:
        raise ctx.err(f"{key}.param", "missing: the API parameter that says how to sort")
    template = _get(ctx, raw, key, "template", str, "{field}")
    if "{field}" not in template:
        raise ctx.err(f"{key}.template", "must contain {field}")
    direction_param = _get(ctx, raw, key, "direction_param", str)
    if direction_param is None and "{dir}" not in template:
        raise ctx.err(
            f"{key}.direction_param",
            "missing: the API needs the direction, as direction_param or {dir} in the template",
        )
    return OrderBySpec(
        param=param,
        template=template,
        direction_param=direction_param,
        asc=_get(ctx, raw, key, "asc", str, "asc"),
        desc=_get(ctx, raw, key, "desc", str, "desc"),
    )


def _updated_since(
    ctx: _Ctx, p: str, raw: Any, key: str | None, cols: tuple[ColumnSpec, ...]
) -> tuple[str, str] | None:
    """``updated_since = { param = "since", column = "updated_at" }``: what incremental sync
    sends (the greatest ``column`` value already copied, as ``param``)."""
    if raw is None:
        return None
    k = f"{p}.updated_since"
    raw = _table(ctx, k, raw)
    _only(ctx, k, raw, {"param", "column"})
    param = _get(ctx, raw, k, "param", str)
    column = _get(ctx, raw, k, "column", str)
    if not param:
        raise ctx.err(f"{k}.param", "missing: the API parameter that asks for rows updated since")
    if not column:
        raise ctx.err(f"{k}.column", "missing: the column that holds when a row was updated")
    by_name = {c.name.lower(): c.name for c in cols}
    if column.lower() not in by_name:
        raise ctx.err(f"{k}.column", f"no column named {column!r}")
    if key is None:
        raise ctx.err(
            k, "needs the table's key: an incremental sync replaces changed rows by their key"
        )
    return param, by_name[column.lower()]


def _pagination(ctx: _Ctx, p: str, raw: Any) -> PaginationSpec:
    key = f"{p}.pagination"
    if isinstance(raw, str):
        raw = {"style": raw}
    raw = _table(ctx, key, raw)
    allowed = {
        "style", "next_path", "cursor_path", "cursor_param", "offset_param", "page_param",
        "first_page", "total_path", "total_pages_path", "total_header", "next_header",
        "cursor_header", "has_more_path", "offset_by",
    }  # fmt: skip
    _only(ctx, key, raw, allowed)
    style = _get(ctx, raw, key, "style", str, "none")
    if style not in PAGINATION_STYLES:
        raise ctx.err(
            f"{key}.style",
            f"unknown pagination style {style!r}; one of {', '.join(PAGINATION_STYLES)}",
        )

    def opt_path(name: str) -> JsonPath | None:
        text = _get(ctx, raw, key, name, str)
        return None if text is None else _path(ctx, f"{key}.{name}", text)

    spec = PaginationSpec(
        style=style,
        next_path=opt_path("next_path"),
        cursor_path=opt_path("cursor_path"),
        cursor_param=_get(ctx, raw, key, "cursor_param", str, "cursor"),
        offset_param=_get(ctx, raw, key, "offset_param", str, "offset"),
        page_param=_get(ctx, raw, key, "page_param", str, "page"),
        first_page=_get(ctx, raw, key, "first_page", int, 1),
        total_path=opt_path("total_path"),
        total_pages_path=opt_path("total_pages_path"),
        total_header=_get(ctx, raw, key, "total_header", str),
        next_header=_get(ctx, raw, key, "next_header", str),
        cursor_header=_get(ctx, raw, key, "cursor_header", str),
        has_more_path=opt_path("has_more_path"),
        offset_by=_get(ctx, raw, key, "offset_by", str, "page_size"),
    )
    if spec.offset_by not in ("page_size", "rows"):
        raise ctx.err(
            f"{key}.offset_by",
            "must be 'page_size' (the offset advances by the page size asked for) or "
            "'rows' (by the rows the API returned)",
        )
    if style == "next_url" and spec.next_path is None and spec.next_header is None:
        raise ctx.err(
            f"{key}.next_path",
            "style next_url needs next_path (where the next URL is in the body) or next_header",
        )
    if style == "cursor" and spec.cursor_path is None and spec.cursor_header is None:
        raise ctx.err(
            f"{key}.cursor_path",
            "style cursor needs cursor_path (where the cursor is in the body) or cursor_header",
        )
    return spec


def _filters(ctx: _Ctx, ck: str, raw: Any) -> tuple[FilterSpec, ...]:
    key = f"{ck}.filters"
    raw = _table(ctx, key, raw)
    out: list[FilterSpec] = []
    for op_text, value in raw.items():
        op = " ".join(str(op_text).upper().split())
        fk = f"{key}.{op_text}"
        if op in ("=", "==", "IN"):
            raise ctx.err(fk, '= and IN go to the column\'s param (param = "name")')
        if op not in FILTER_OPS:
            raise ctx.err(fk, f"unknown operator; one of {', '.join(FILTER_OPS)}")
        if isinstance(value, str):
            value = {"param": value}
        value = _table(ctx, fk, value)
        _only(ctx, fk, value, _FILTER_KEYS)
        param = _get(ctx, value, fk, "param", str)
        if not param:
            raise ctx.err(f"{fk}.param", "missing: the API parameter this operator goes to")
        fmt = _get(ctx, value, fk, "format", str, "text")
        if fmt not in FILTER_FORMATS:
            raise ctx.err(f"{fk}.format", f"must be one of {', '.join(FILTER_FORMATS)}")
        match = _get(ctx, value, fk, "match", str, "contains")
        if match not in FILTER_MATCHES:
            raise ctx.err(f"{fk}.match", f"must be one of {', '.join(FILTER_MATCHES)}")
        case = _get(ctx, value, fk, "case", str, "sensitive")
        if case not in ("sensitive", "insensitive"):
            raise ctx.err(f"{fk}.case", "must be 'sensitive' or 'insensitive'")
        fixed = _get(ctx, value, fk, "value", str)
        if op in ("IS NULL", "IS NOT NULL") and fixed is None:
            raise ctx.err(f"{fk}.value", f"missing: the value {param} takes for {op}")
        if op not in ("IS NULL", "IS NOT NULL") and fixed is not None:
            raise ctx.err(f"{fk}.value", "only IS NULL and IS NOT NULL send a fixed value")
        if any(f.op == op for f in out):
            raise ctx.err(fk, "operator given twice")
        out.append(FilterSpec(op=op, param=param, format=fmt, match=match, case=case, value=fixed))
    return tuple(out)


def _columns(
    ctx: _Ctx,
    p: str,
    raw: Any,
    path_names: set[str] | None = None,
    query: QuerySpec | None = None,
) -> tuple[ColumnSpec, ...]:
    key = f"{p}.columns"
    raw = _table(ctx, key, raw)
    if not raw:
        raise ctx.err(key, "a table needs at least one column")
    seen: set[str] = set()
    out: list[ColumnSpec] = []
    for name, value in raw.items():
        ck = f"{key}.{name}"
        if not IDENT.match(name):
            raise ctx.err(ck, "a column name must be a plain SQL identifier (letters, digits, _)")
        if name.lower() in seen:
            raise ctx.err(ck, "duplicate column (names are case-insensitive in SQL)")
        if name.lower() == "rowid":
            raise ctx.err(ck, "rowid is reserved by SQLite")
        seen.add(name.lower())
        if isinstance(value, str):
            value = {"type": value}
        value = _table(ctx, ck, value)
        _only(ctx, ck, value, _COLUMN_KEYS)
        typ = str(_get(ctx, value, ck, "type", str, "TEXT")).upper()
        if typ not in SQL_TYPES:
            raise ctx.err(f"{ck}.type", f"unknown type {typ!r}; one of {', '.join(SQL_TYPES)}")
        in_style = _get(ctx, value, ck, "in", str, "separate")
        if in_style not in IN_STYLES:
            raise ctx.err(f"{ck}.in", f"must be one of {', '.join(IN_STYLES)}")
        on_error = _get(ctx, value, ck, "on_error", str, "error")
        if on_error not in ("error", "null"):
            raise ctx.err(f"{ck}.on_error", "must be 'error' or 'null'")
        param = _get(ctx, value, ck, "param", (str, bool))
        if param is True:
            param = name
        elif param is False:
            param = None
        filters = _filters(ctx, ck, value.get("filters", {}))
        query_field, query_ops, query_format = _query_column(ctx, ck, value.get("query"), query)
        path_param = name.lower() in (path_names or set())
        if path_param and (param or filters):
            raise ctx.err(
                f"{ck}.param" if param else f"{ck}.filters",
                f"column {name} fills {{{name}}} in the table's URL: it takes = and IN only",
            )
        if path_param and in_style != "separate":
            raise ctx.err(f"{ck}.in", "a path parameter takes one value per request (separate)")
        required = _get(ctx, value, ck, "required", bool, False) or path_param
        if required and not param and not path_param:
            raise ctx.err(
                f"{ck}.required", "only a column mapped to an API parameter (param) can be required"
            )
        exact = _get(ctx, value, ck, "exact", bool, False)
        if exact and not param and not filters and not query_field:
            raise ctx.err(
                f"{ck}.exact",
                "only a column mapped to an API parameter (param or filters) can be exact",
            )
        filter_only = _get(ctx, value, ck, "filter_only", bool, False)
        path_text = _get(ctx, value, ck, "path", str, name)
        path = _path(ctx, f"{ck}.path", path_text)
        if filter_only and (not param or not path or not all(isinstance(p, str) for p in path)):
            raise ctx.err(
                f"{ck}.filter_only",
                "only a column mapped to an API parameter (param), with a path of plain names "
                "(no [n] index), can be filter_only",
            )
        out.append(
            ColumnSpec(
                name=name,
                type=typ,
                path=path,
                param=param,
                required=required,
                exact=exact,
                in_style=in_style,
                filter_only=filter_only,
                on_error=on_error,
                writable=_get(ctx, value, ck, "writable", bool, True),
                filters=filters,
                path_param=path_param,
                sort=_get(ctx, value, ck, "sort", str),
                sort_exact=_get(ctx, value, ck, "sort_exact", bool, False),
                query_field=query_field,
                query_ops=query_ops,
                query_format=query_format,
            )
        )
    return tuple(out)


def _write(ctx: _Ctx, p: str, raw: Any, key: str | None, names: set[str]) -> WriteSpec | None:
    if raw is None:
        return None
    wk = f"{p}.write"
    raw = _table(ctx, wk, raw)
    _only(ctx, wk, raw, {"insert", "update", "delete", "body_path", "idempotency_header"})
    ops: dict[str, tuple[str, str] | None] = {}
    for op, default_method in (("insert", "POST"), ("update", "PATCH"), ("delete", "DELETE")):
        v = raw.get(op)
        if v is None or v is False:
            ops[op] = None
            continue
        if v is True:
            v = {}
        v = _table(ctx, f"{wk}.{op}", v)
        _only(ctx, f"{wk}.{op}", v, {"method", "url"})
        method = str(_get(ctx, v, f"{wk}.{op}", "method", str, default_method)).upper()
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            raise ctx.err(f"{wk}.{op}.method", "must be POST, PUT, PATCH or DELETE")
        url = _get(ctx, v, f"{wk}.{op}", "url", str, "{url}" if op == "insert" else "{url}/{key}")
        if op != "insert" and "{key}" not in url:
            raise ctx.err(f"{wk}.{op}.url", "must contain {key} (the row's key)")
        ops[op] = (method, url)
    if (ops["update"] or ops["delete"]) and key is None:
        raise ctx.err(f"{p}.key", "update and delete need the table's key column")
    body_text = _get(ctx, raw, wk, "body_path", str)
    return WriteSpec(
        key=key,
        insert=ops["insert"],
        update=ops["update"],
        delete=ops["delete"],
        body_path=None if body_text is None else _path(ctx, f"{wk}.body_path", body_text),
        idempotency_header=_get(ctx, raw, wk, "idempotency_header", str),
    )
