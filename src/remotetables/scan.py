"""One Filter call: pushed-down parameters, cache, pages, local re-checks, LIMIT budget.

:func:`scan` returns an iterator of row pages (lists of tuples). Pages are requested lazily:
page N+1 only when the virtual table has consumed page N, except that offset and page-number
styles with a known total fetch ahead in parallel (bounded by the table's ``concurrency``).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Any

from remotetables.cache import CacheKey
from remotetables.config import ColumnSpec, TableSpec, origin_of
from remotetables.errors import (
    CoercionError,
    ConfigError,
    MissingParameterError,
    PaginationError,
    RemoteProtocolError,
    redact_url,
)
from remotetables.http.client import JsonResponse, RequestContext
from remotetables.pagination import PageRequest, make_paginator
from remotetables.plan import Plan
from remotetables.pushdown import OPS_BY_CODE, check, fill_path, like_term, request_param
from remotetables.rows import JsonPath, RowBuilder, affinity_of, apply_affinity, get_path, sql_equal

if TYPE_CHECKING:
    from remotetables.session import Runtime, Session

__all__ = ["ScanArgs", "prepare", "scan"]

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
    # pushed columns with one value: a row without the field gets it (the API filtered on it)
    fills: list[tuple[int, Any]] = field(default_factory=list)
    multi: list[int] = field(default_factory=list)  # pushed columns with several values at once
    # other operators applied locally: (column, operator, value with the column's affinity)
    op_checks: list[tuple[int, str, Any]] = field(default_factory=list)
    path: dict[str, str] = field(default_factory=dict)  # {placeholder} -> value (the URL's path)
    echo: list[tuple[int, Any]] = field(default_factory=list)  # path columns take the value sent


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


def _operator(out: ScanArgs, col_index: int, col: ColumnSpec, op: str, arg: Any) -> None:
    """One ``col op arg`` term: the API parameter when it is safe, the local check unless the
    parameter is exactly the term on an ``exact`` column. LIKE and GLOB SQLite re-checks."""
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
            out.used = sorted(used)
        elif not any(kind in ("eq", "in", "local") or kind in _OPERATORS for kind, _ in plan.args):
            out.used = sorted(used)
        # else: a keyless table's rowid hashes the whole row, and SQLite merges the scans of
        # `a = 1 OR b = 2` by rowid: such scans build whole rows
    for pos, ((kind, col_index), arg) in enumerate(zip(plan.args, args, strict=True)):
        if kind == "limit":
            out.limit = None if arg is None or int(arg) < 0 else int(arg)
            continue
        if kind == "offset":
            out.offset = max(0, int(arg or 0))
            continue
        col = spec.columns[col_index]
        if kind in _OPERATORS:
            _operator(out, col_index, col, kind, arg)
            continue
        affinity = affinity_of(col.type)
        raw_values = sorted(arg, key=repr) if kind == "in" else [arg]
        values = [apply_affinity(v, affinity) for v in raw_values if v is not None]
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
        assert col.param is not None
        if pos not in plan.recheck:
            out.covered = False  # the API's own filter is trusted: a wider scan cannot answer it
        texts = [_format_param(v, col.type) for v in values]
        if kind == "in" and col.in_style == "comma":
            out.pushed.append((col.param, ",".join(texts)))
        else:
            out.pushed.extend((col.param, t) for t in texts)
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
        for index in out.used:
            col = spec.columns[index]
            first = col.path[0] if col.path else None
            if not col.path_param and isinstance(first, str) and first not in names:
                names.append(first)
        if names:
            out.pushed.append((spec.fields_param, spec.fields_separator.join(names)))


def _numeric_looking(value: Any) -> bool:
    if isinstance(value, str):
        return apply_affinity(value, "NUMERIC") is not value
    return value is not None


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


MAX_URL_LENGTH = 64 * 1024  # a next link longer than this is not followed


def _digest(url: str) -> bytes:
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def scan(
    runtime: Runtime, session: Session, spec: TableSpec, plan: Plan, args: Sequence[Any]
) -> Iterator[list[Row]]:
    """The rows of one Filter call, page by page."""
    session.last_stats = session.stats
    sargs = prepare(spec, plan, args)
    if sargs.empty:
        return iter(())
    creds = runtime.credentials(spec.provider)
    principal = creds.principal(session)
    provider = None if spec.provider == "__none__" else spec.provider
    ctx = RequestContext(table=spec.name, provider=provider, user=session.user)
    # taken before the first request: a write after this point keeps these rows out of the cache
    epoch = runtime.cache.epoch(spec.name)
    return _Scan(runtime, session, spec, sargs, principal, ctx, epoch).pages()


class _Scan:
    def __init__(
        self,
        runtime: Runtime,
        session: Session,
        spec: TableSpec,
        sargs: ScanArgs,
        principal: str,
        ctx: RequestContext,
        epoch: int,
    ) -> None:
        self.rt = runtime
        self.epoch = epoch
        self.session = session
        self.spec = spec
        self.sargs = sargs
        self.principal = principal
        self.ctx = ctx
        self.stats = session.stats
        self.builder = runtime.row_builder(spec)

    # ---------------------------------------------------------------- cache path

    def pages(self) -> Iterator[list[Row]]:
        path_key = [("{" + k + "}", v) for k, v in sorted(self.sargs.path.items())]
        key = CacheKey.make(self.principal, self.spec.name, [*path_key, *self.sargs.pushed])
        # the scan behind a write (UPDATE/DELETE ... WHERE) decides which rows change and
        # what they held: it asks the API, never the cache
        use_cache = self.spec.cache_ttl > 0 and not self.session.statement_writes
        cached = self.rt.cache.get(key) if use_cache else None
        checks = self.sargs.checks
        if cached is None and use_cache and self.sargs.covered:
            # every pushed parameter is re-checked locally: a cached whole-table scan answers it
            cached = self.rt.cache.get_covering(key)
        if cached is not None:
            self.stats.cache_hits += 1
            rows = apply_op_checks(apply_checks(cached, checks), self.sargs.op_checks)
            rows = rows[self.sargs.offset :]
            if self.sargs.limit is not None:
                rows = rows[: self.sargs.limit]
            self.stats.rows += len(rows)
            if rows:
                yield rows
            return
        yield from self._fetch(key)

    # ---------------------------------------------------------------- network path

    def _fetch(self, key: Any) -> Iterator[list[Row]]:
        spec, sargs = self.spec, self.sargs
        skip, want = sargs.offset, sargs.limit
        start_offset = 0
        if spec.pagination.style == "offset" and skip and not sargs.checks and not sargs.op_checks:
            start_offset, skip = skip, 0  # the API skips for us
        page_size = spec.max_page_size
        if want is not None and spec.page_size_param and not sargs.local:
            page_size = max(1, min(page_size or (want + skip), want + skip))
        pushed_names = {name for name, _ in sargs.pushed}
        # a parameter the query sets replaces the table's static one of that name
        params = [p for p in spec.params if p[0] not in pushed_names] + sargs.pushed
        if spec.page_size_param and page_size:
            params.append((spec.page_size_param, str(page_size)))
        url = fill_path(spec.url, sargs.path) if sargs.path else spec.url
        pager = make_paginator(spec.pagination, url, params, start_offset=start_offset)
        auth = self.rt.credentials(spec.provider).auth(self.session, self.ctx)
        allowed = self.rt.allowed_origins(spec.provider)
        policy = self.rt.retry_policy(spec.provider)
        headers = self.rt.extra_headers(spec.provider)

        def get(req: PageRequest) -> JsonResponse:
            return self.rt.http.request_json(
                "GET",
                req.url,
                ctx=self.ctx,
                policy=policy,
                auth=auth,
                headers=headers,
                counters=self.stats.net,
                interrupted=self.session.interrupted,
            )

        # a scan that starts past the first row is not the whole table: never cache it
        collect: list[Row] | None = [] if spec.cache_ttl > 0 and start_offset == 0 else None
        # rows that go into the cache are whole; others need only the columns the query reads
        builder = self.builder if collect is not None else self.rt.row_builder(spec, sargs.used)
        # a filtered scan that keeps nothing builds the checked columns first, then whole rows
        # only for the items that pass (a selective WHERE then converts a fraction of the values)
        checked = {index for index, _ in sargs.checks}
        prefilter = (
            self.rt.row_builder(spec, sorted(checked))
            if checked and len(checked) < len(builder.used)
            else None
        )
        # A pushed column whose field no row of the first page carries is a filter-only
        # parameter (the API filters on it but does not return it): its rows take the value
        # sent. A field that some rows carry is only sparse: rows without it stay NULL.
        filter_only: dict[int, bool] = {}  # column -> decided on the first non-empty page
        fills = [(i, spec.columns[i].path, v) for i, v in sargs.fills if spec.columns[i].path]
        # several values in one request, re-checked here: a filter-only row would vanish
        multi = [i for i in sargs.multi if spec.columns[i].path and i in checked]
        # a whole-table entry answers narrower queries only if its rows carry every param field
        unseen = set() if sargs.pushed else {c.path for c in spec.columns if c.param and c.path}
        collected_bytes = 0
        cache_budget = self.rt.cache.entry_budget()
        emitted = 0
        rows_seen = 0

        def build_for_cache(items: list[Any]) -> list[Row]:
            """Whole rows; if a column the query does not read cannot be converted, the scan
            goes on uncached with only the columns it reads (the error belongs to queries that
            read that column)."""
            nonlocal builder, collect
            try:
                return builder.build_page(items, rows_seen)
            except CoercionError as exc:
                read = sargs.used if sargs.used is not None else range(len(spec.columns))
                if exc.column in {spec.columns[i].name for i in read}:
                    raise
            collect = None
            builder = self.rt.row_builder(spec, sargs.used)
            return builder.build_page(items, rows_seen)

        def emit(response: JsonResponse, items: list[Any]) -> tuple[list[Row], bool]:
            """Rows of one page to hand to SQLite, and whether the LIMIT is met."""
            nonlocal collect, collected_bytes, emitted, rows_seen, skip
            self.stats.pages += 1
            for index, value in sargs.echo:
                _set_field(items, spec.columns[index].path, value)
            if items:
                for index in (*(f[0] for f in fills), *multi):
                    if index not in filter_only:
                        path = spec.columns[index].path
                        filter_only[index] = not any(_has_path(item, path) for item in items)
                for index in multi:
                    if filter_only[index]:
                        raise self._no_field_for_in(spec.columns[index])
                for index, path, value in fills:
                    if filter_only[index]:
                        _fill_absent(items, path, value)
                if unseen and collect is not None:
                    unseen.difference_update(
                        [path for path in unseen if any(_has_path(item, path) for item in items)]
                    )
            if collect is None and prefilter is not None:
                out = _build_passing(builder, prefilter, items, rows_seen, sargs.checks)
            else:
                rows = (
                    build_for_cache(items)
                    if collect is not None
                    else builder.build_page(items, rows_seen)
                )
                if collect is not None:
                    # decoded tuples take about 2.6x their JSON in memory (benchmarks/bench_scan.py)
                    collected_bytes += response.nbytes * 5 // 2
                    if collected_bytes > cache_budget:
                        collect = None  # too big to cache: stream it without keeping it
                    else:
                        collect.extend(rows)
                out = apply_checks(rows, sargs.checks)
            out = apply_op_checks(out, sargs.op_checks)
            rows_seen += len(items)
            if skip:
                taken = min(skip, len(out))
                out = out[taken:]
                skip -= taken
            done = False
            if want is not None and emitted + len(out) >= want:
                out = out[: want - emitted]
                done = True
            emitted += len(out)
            self.stats.rows += len(out)
            self.session.report_progress()
            return out, done

        request: PageRequest | None = pager.first()
        if request is not None:  # what went to the API, for remotetables_stats()
            self.stats.add_url(redact_url(request.url))
        seen_urls: set[bytes] = set()  # digests: a hostile API's long unique links cost 16 bytes
        n_pages = 0
        while request is not None:
            seen_urls.add(_digest(request.url))
            response = get(request)
            n_pages += 1
            items = self._items(response, n_pages)
            out, done = emit(response, items)
            if out:
                yield out
            if done:
                return  # the LIMIT is met: nothing more is fetched, nothing is cached
            rest = None
            if n_pages == 1 and pager.supports_parallel:
                # a known total says now whether the scan would pass max_pages
                rest = pager.parallel_rest(response.body, response.headers, len(items))
                if rest is not None and 1 + rest.count > spec.max_pages and want is None:
                    raise self._runaway(spec.max_pages)
            if rest is not None and want is None and spec.concurrency > 1:
                for response, items in self._parallel(rest, get):
                    out, _ = emit(response, items)
                    if out:
                        yield out
                break
            # a relative next link is resolved against the URL that answered (redirects)
            request = pager.next(response.body, response.headers, len(items), response.url)
            if request is None:
                break
            self._check_next(request, allowed, seen_urls, n_pages)
        if collect is not None:
            self.rt.cache.put(
                key,
                collect,
                collected_bytes,
                spec.cache_ttl,
                covering=not unseen,
                epoch=self.epoch,
            )

    def _no_field_for_in(self, col: ColumnSpec) -> ConfigError:
        return ConfigError(
            f"table {self.spec.name}: the API's rows have no field for column {col.name}, so a "
            f'query with several values at once (in = "{col.in_style}") cannot tell which value '
            f'a row matched; set in = "separate" on the column (one request per value)',
            key=f"tables.{self.spec.name}.columns.{col.name}.in",
        )

    def _parallel(
        self, rest: Iterable[PageRequest], get: Any
    ) -> Iterator[tuple[JsonResponse, list[Any]]]:
        """Fetch ``rest`` with at most ``concurrency`` requests in flight; yield in order.

        Requests are taken from ``rest`` only as the window has room: never more than
        ``concurrency`` of them exist at once."""
        window: deque[Future[JsonResponse]] = deque()
        queue = iter(rest)
        more = True
        try:
            while True:
                while more and len(window) < self.spec.concurrency:
                    request = next(queue, None)
                    if request is None:
                        more = False
                    else:
                        window.append(self.rt.submit(get, request))
                if not window:
                    return
                response = window.popleft().result()
                yield response, self._items(response, 2)
        finally:
            for fut in window:
                fut.cancel()

    def _check_next(
        self, request: PageRequest, allowed: frozenset[str], seen: set[bytes], n_pages: int
    ) -> None:
        spec = self.spec
        if len(request.url) > MAX_URL_LENGTH:
            raise PaginationError(
                f"table {spec.name}: the next page link is {len(request.url)} characters long "
                f"(more than {MAX_URL_LENGTH}); not following it",
                url=request.url[:200],
                table=spec.name,
                provider=self.ctx.provider,
                user=self.ctx.user,
            )
        if origin_of(request.url) not in allowed:
            raise PaginationError(
                f"table {spec.name}: the next page link points to {origin_of(request.url)}, which is not "
                + (
                    f"one of provider {self.ctx.provider}'s API origins; not following it (the token "
                    "would leak; add the origin to the provider's api_origins if it is trusted)"
                    if self.ctx.provider
                    else "the table's origin; not following it"
                ),
                url=request.url,
                table=spec.name,
                provider=self.ctx.provider,
                user=self.ctx.user,
            )
        if _digest(request.url) in seen:
            raise PaginationError(
                f"table {spec.name}: pagination loops: the API gave the same next page twice",
                url=request.url,
                table=spec.name,
                provider=self.ctx.provider,
                user=self.ctx.user,
            )
        if n_pages >= spec.max_pages:
            raise self._runaway(spec.max_pages)

    def _runaway(self, max_pages: int) -> PaginationError:
        return PaginationError(
            f"table {self.spec.name}: more than {max_pages} pages; stopping (raise max_pages in the "
            "table's config if the resource really is that large)",
            table=self.spec.name,
            provider=self.ctx.provider,
            user=self.ctx.user,
        )

    def _items(self, response: JsonResponse, page: int) -> list[Any]:
        items = get_path(response.body, self.spec.rows_path)
        if isinstance(items, list):
            return items
        if items is None and page > 1:
            return []
        if isinstance(items, dict) and not self.spec.rows_path:
            return [items]
        where = ".".join(str(p) for p in self.spec.rows_path) or "the top level"
        found = "nothing" if items is None else f"a JSON {type(items).__name__}"
        if items is None:  # say what is there: often an error sent with 200 (Slack's ok: false)
            found += f"; {response.outline()}"
        raise RemoteProtocolError(
            f"table {self.spec.name}: expected a list of rows at {where} of the answer from "
            f"{response.url.split('?')[0]}, found {found} (check the table's 'rows' setting)",
            status_code=response.status,
            url=response.url,
            table=self.spec.name,
            provider=self.ctx.provider,
            user=self.ctx.user,
        )
