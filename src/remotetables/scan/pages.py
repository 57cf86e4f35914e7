"""One Filter call: pushed-down parameters, cache, pages, local re-checks, LIMIT budget.

:func:`scan` returns an iterator of row pages (lists of tuples). Page 2 is requested only when
the virtual table has consumed page 1 (a LIMIT inside page 1 costs one page); from then on page
N+1 is fetched in the runtime's pool while SQLite reads page N, one page ahead at most. Offset
and page-number styles with a known total fetch the rest in parallel (bounded by the table's
``concurrency``). When the statement ends first, the requests on their way are cancelled or
waited for. Pages decode through the fast path (:mod:`remotetables.decoders`) when they can.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any

import orjson

from remotetables.cache import CacheKey, PageCopies, PageCopy
from remotetables.config import ColumnSpec, TableSpec, origin_of
from remotetables.decoders import PageDecoder
from remotetables.errors import (
    CoercionError,
    ConfigError,
    PaginationError,
    RemoteError,
    RemoteProtocolError,
    redact_url,
)
from remotetables.http.client import JsonResponse, RequestContext
from remotetables.http.conditional import graphql_errors, kept_page, reuse
from remotetables.http.response import loads_json
from remotetables.pagination import PageRequest, make_paginator
from remotetables.plan import Plan
from remotetables.pushdown import fill_path
from remotetables.rows import JsonPath, RowBuilder, get_path
from remotetables.scan.args import Row, ScanArgs, prepare
from remotetables.scan.checks import (
    _build_passing,
    _set_field,
    apply_checks,
    apply_op_checks,
)

if TYPE_CHECKING:
    from remotetables.session import Runtime, Session

__all__ = ["PartialPage", "scan"]


class _WholeRows:
    """A fast-decoded page's whole rows, read from its bytes at the first rowid asked."""

    __slots__ = ("_builder", "_by_id", "_content", "_not_json", "_rows", "_rows_path")

    def __init__(
        self,
        rows: list[Row],
        content: bytes,
        rows_path: JsonPath,
        builder: RowBuilder,
        not_json: Callable[[orjson.JSONDecodeError], Exception],
    ) -> None:
        self._rows = rows  # the page's partial tuples, one object each
        self._content = content
        self._rows_path = rows_path
        self._builder = builder
        # the general path's error for a body it refuses: msgspec skips what a statement does
        # not read, and a value there is seen only now (the decoder checks UTF-8 and
        # loads_json reads numbers beyond a double's range, so none is known to get here)
        self._not_json = not_json
        self._by_id: dict[int, Row] | None = None

    def of(self, row: Row) -> Row:
        if self._by_id is None:
            try:
                doc = loads_json(self._content)
            except orjson.JSONDecodeError as exc:
                raise self._not_json(exc) from exc
            items = get_path(doc, self._rows_path)
            build = self._builder.identity
            # the same reading the general path gives (loads_json, then the whole-row build)
            self._by_id = {id(r): build(item) for r, item in zip(self._rows, items, strict=True)}
            self._content = b""
        return self._by_id[id(row)]


class PartialPage(list[Row]):
    """Rows of a keyless table holding only the columns a statement reads: :meth:`whole` gives
    a row's whole row (its identity, for the rowid) when SQLite asks, not before."""

    __slots__ = ("_whole",)

    def __init__(self, rows: list[Row], whole: _WholeRows) -> None:
        super().__init__(rows)
        self._whole = whole

    def whole(self, row: Row) -> Row:
        """The whole row of ``row`` (a tuple of this page, by identity)."""
        return self._whole.of(row)


def _param_kinds(spec: TableSpec) -> dict[str, str]:
    """JSON types of the parameters a POST body carries: numbers for the page size, offset
    and page; a pushed column's own type."""
    kinds = {}
    for col in spec.columns:
        if col.param:
            kind = {"INTEGER": "int", "REAL": "float", "BOOLEAN": "bool"}.get(col.type)
            if kind:
                kinds[col.param] = kind
    p = spec.pagination
    for name in (spec.page_size_param, p.offset_param, p.page_param):
        if name:
            kinds[name] = "int"
    return kinds


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
        # the API skips for us only when its offset counts the rows it returns: an API that
        # filters after paging (ServiceNow's ACLs; offset_by = "page_size", the default)
        # counts rows SQL's OFFSET never sees
        by_rows = spec.pagination.style == "offset" and spec.pagination.offset_by == "rows"
        if by_rows and skip and not sargs.checks and not sargs.op_checks:
            start_offset, skip = skip, 0
        page_size = spec.max_page_size
        if want is not None and spec.page_size_param and not sargs.local:
            page_size = max(1, min(page_size or (want + skip), want + skip))
        pushed_names = {name for name, _ in sargs.pushed}
        # a parameter the query sets replaces the table's static one of that name
        params = [p for p in spec.params if p[0] not in pushed_names] + sargs.pushed
        if spec.page_size_param and page_size:
            params.append((spec.page_size_param, str(page_size)))
        url = fill_path(spec.url, sargs.path) if sargs.path else spec.url
        pager = make_paginator(
            spec.pagination,
            url,
            params,
            start_offset=start_offset,
            body=spec.body,
            kinds=_param_kinds(spec),
            page_size=page_size if spec.page_size_param else None,
        )
        auth = self.rt.credentials(spec.provider).auth(self.session, self.ctx)
        allowed = self.rt.allowed_origins(spec.provider)
        policy = self.rt.retry_policy(spec.provider)
        headers = self.rt.extra_headers(spec.provider)

        stop = threading.Event()  # the statement ended: a request fetched ahead stops waiting

        def interrupted() -> bool:
            return stop.is_set() or self.session.interrupted()

        # conditional requests are for GET (GitHub: not on POST unless an endpoint says so)
        copies = self.rt.cache.pages if spec.cache_ttl > 0 and spec.body is None else None

        # a keyless table's rowid is the whole row's identity: a page of partial rows keeps its
        # bytes and finds a row's whole row there only if SQLite asks for a rowid (PartialPage)
        used = sargs.used
        partial_keyless = (
            spec.key is None and used is not None and len(set(used)) < len(spec.columns)
        )
        # a page kept for revalidation is kept as it came
        keep_bytes = copies is not None or partial_keyless

        def get(req: PageRequest, decode: PageDecoder | None = None) -> JsonResponse:
            copy = copies.get(self.principal, spec.name, req.url) if copies is not None else None
            response = self.rt.http.request_json(
                spec.method,
                req.url,
                ctx=self.ctx,
                policy=policy,
                auth=auth,
                headers=headers + copy.conditions() if copy is not None else headers,
                json_body=req.body,
                idempotent=spec.body is None or spec.body.idempotent,
                counters=self.stats.net,
                interrupted=interrupted,
                # a body checked for GraphQL errors is decoded whole
                decode=decode if spec.body is None else None,
                principal=self.principal,
                keep=keep_bytes,
            )
            if spec.body is not None and spec.body.graphql:
                self._graphql_errors(response)
            if copies is not None:
                return revalidated(response, copy, copies, req.url)
            return response

        waited = [0.0]  # how long the last page's request waited for its answer

        def timed_get(req: PageRequest, decode: PageDecoder | None = None) -> JsonResponse:
            """``get``, noting its wait (wall time less this thread's CPU time)."""
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return get(req, decode)
            finally:
                waited[0] = (time.perf_counter() - start) - (time.thread_time() - cpu)

        def revalidated(
            response: JsonResponse, copy: PageCopy | None, copies: PageCopies, url: str
        ) -> JsonResponse:
            """A 304 hands on the kept page; a page with a validator is kept."""
            if response.status == 304:
                if copy is None:
                    raise RemoteProtocolError(
                        f"table {spec.name}: GET {redact_url(url)} answered 304 Not Modified "
                        "to a request that was not conditional",
                        status_code=304,
                        url=url,
                        table=spec.name,
                        provider=self.ctx.provider,
                        user=self.ctx.user,
                    )
                self.stats.net.add(revalidated=1)
                return reuse(response, copy)
            page = kept_page(response)
            if not partial_keyless:  # the copy holds the bytes now (or they are not kept)
                response.content = None
            if page is not None:
                copies.put(self.principal, spec.name, url, page)
            return response

        # a scan that starts past the first row is not the whole table: never cache it
        collect: list[Row] | None = [] if spec.cache_ttl > 0 and start_offset == 0 else None
        # rows that go into the cache are whole; others need only the columns the query reads
        builder = self.builder if collect is not None else self._partial_builder()
        # a filtered scan that keeps nothing builds the checked columns first, then whole rows
        # only for the items that pass (a selective WHERE then converts a fraction of the values)
        checked = {index for index, _ in sargs.checks}
        prefilter = (
            self.rt.row_builder(spec, sorted(checked))
            if checked and len(checked) < len(builder.used)
            else None
        )
        # A filter_only column (the API filters on it; its rows never carry it) echoes the value
        # sent. Any other missing field is NULL, always: nothing depends on a guess.
        fills = [(i, spec.columns[i].path, v) for i, v in sargs.fills if spec.columns[i].path]
        if sargs.multi:
            raise self._no_field_for_in(spec.columns[sargs.multi[0]])
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
            builder = self._partial_builder()
            return builder.build_page(items, rows_seen)

        def decoder() -> PageDecoder | None:
            """The fast decoder for the next request, when nothing needs the page's items."""
            if sargs.echo:
                return None  # values are set into the items
            if fills:
                return None  # a filter_only value is set into the items
            if collect is not None:
                return self.rt.page_decoder(spec, None)  # a cache fill: whole rows
            return self.rt.page_decoder(spec, used, distinct=partial_keyless)

        def emit(response: JsonResponse, items: list[Any]) -> tuple[list[Row], bool]:
            """Rows of one page to hand to SQLite, and whether the LIMIT is met."""
            nonlocal collect, collected_bytes, emitted, rows_seen, skip
            self.stats.pages += 1
            rows: list[Row] | None = None
            whole: _WholeRows | None = None
            if response.fast is not None:
                rows = items  # the fast decoder's tuples (nothing to look for or fill in)
                self.stats.fast_pages += 1
                if spec.key is None and not response.fast.whole:
                    assert response.content is not None  # get() keeps it
                    whole = _WholeRows(
                        items,
                        response.content,
                        spec.rows_path,
                        self.builder,
                        # not the response: it holds the bytes too, and they go at the 1st rowid
                        functools.partial(
                            self._not_json, response.url, response.status, response.nbytes
                        ),
                    )
            else:
                for index, value in sargs.echo:
                    _set_field(items, spec.columns[index].path, value)
                for _index, path, value in fills:
                    _set_field(items, path, value)
                if collect is None and prefilter is not None:
                    out = _build_passing(builder, prefilter, items, rows_seen, sargs.checks)
                elif collect is not None:
                    rows = build_for_cache(items)
                else:
                    rows = builder.build_page(items, rows_seen)
            if rows is not None:
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
            if whole is not None:
                out = PartialPage(out, whole)
            return out, done

        request: PageRequest | None = pager.first()
        if request is not None:  # what went to the API, for remotetables_stats()
            self.stats.add_url(redact_url(request.url))
        seen_urls: set[bytes] = set()  # digests of request identities (a POST's body included)
        n_pages = 0
        ahead: Future[JsonResponse] | None = None  # the next page, fetched while SQLite reads
        try:
            while request is not None:
                seen_urls.add(_digest(request.identity))
                if ahead is not None:
                    response, ahead = ahead.result(), None
                else:
                    response = timed_get(request, decoder())
                n_pages += 1
                items = self._items(response, n_pages)
                if n_pages >= 2 and self.rt.prefetch and waited[0] >= self.rt.prefetch_min_wait:
                    # SQLite has asked for page 2: fetch page N+1 while it reads page N (one
                    # page ahead at most; a LIMIT inside page 1 never costs a second page),
                    # when the API makes us wait (see Runtime.prefetch_min_wait).
                    # Without a LIMIT, the request goes out before this page's rows are built.
                    request = pager.next(response.body, response.headers, len(items), response.url)
                    refused: PaginationError | None = None
                    out, done = emit(response, items) if want is not None else ([], False)
                    if request is not None and not done:
                        try:
                            self._check_next(request, allowed, seen_urls, n_pages)
                        except PaginationError as exc:
                            refused = exc  # said after this page's rows, as without prefetch
                        else:
                            if not interrupted():
                                ahead = self.rt.submit(timed_get, request, decoder())
                    if want is None:
                        out, done = emit(response, items)
                    if out:
                        yield out
                    if done:
                        return  # the LIMIT is met: nothing more is fetched, nothing is cached
                    if refused is not None:
                        raise refused
                    continue
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
                    for response, items in self._parallel(rest, get, decoder, stop):
                        out, _ = emit(response, items)
                        if out:
                            yield out
                    break
                # a relative next link is resolved against the URL that answered (redirects)
                request = pager.next(response.body, response.headers, len(items), response.url)
                if request is None:
                    break
                self._check_next(request, allowed, seen_urls, n_pages)
        finally:
            if ahead is not None:  # the statement ended (or failed) with a page on its way
                stop.set()
                if not ahead.cancel():
                    wait([ahead])  # no request outlives its statement
        if collect is not None:
            self.rt.cache.put(
                key,
                collect,
                collected_bytes,
                spec.cache_ttl,
                epoch=self.epoch,
            )

    def _partial_builder(self) -> RowBuilder:
        """Only the columns the query reads; a keyless table's tuples carry their item too."""
        used = self.sargs.used
        partial = used is not None and len(used) < len(self.spec.columns)
        return self.rt.row_builder(self.spec, used, carry=self.spec.key is None and partial)

    def _not_json(
        self, url: str, status: int, nbytes: int, exc: orjson.JSONDecodeError
    ) -> Exception:
        """What the general path says of a body that is not JSON (http/client.py)."""
        return self.ctx.error(
            RemoteProtocolError,
            f"{self.spec.method} {redact_url(url)} answered {status} with a body that is not "
            f"valid JSON ({nbytes} bytes; {exc.msg} at byte {exc.pos})",
            status_code=status,
            url=url,
        )

    def _graphql_errors(self, response: JsonResponse) -> None:
        said = graphql_errors(response.body)
        if said is not None:
            raise self.ctx.error(
                RemoteError,
                f"the GraphQL API at {redact_url(response.url)} answered with errors: {said}",
                url=response.url,
                status_code=response.status,
            )

    def _no_field_for_in(self, col: ColumnSpec) -> ConfigError:
        return ConfigError(
            f"table {self.spec.name}: column {col.name} is filter_only (the API's rows do not "
            f'carry it), so a query with several values at once (in = "{col.in_style}") cannot '
            'tell which value a row matched; set in = "separate" on the column (one request '
            "per value)",
            key=f"tables.{self.spec.name}.columns.{col.name}.in",
        )

    def _parallel(
        self, rest: Iterable[PageRequest], get: Any, decoder: Any, stop: threading.Event
    ) -> Iterator[tuple[JsonResponse, list[Any]]]:
        """Fetch ``rest`` with at most ``concurrency`` requests in flight; yield in order.

        Requests are taken from ``rest`` only as the window has room: never more than
        ``concurrency`` of them exist at once. When the statement ends first, the requests
        on their way are waited for."""
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
                        window.append(self.rt.submit(get, request, decoder()))
                if not window:
                    return
                response = window.popleft().result()
                yield response, self._items(response, 2)
        finally:
            if window:
                stop.set()  # retry waits end now
                for fut in window:
                    fut.cancel()
                wait(window)  # no request outlives its statement

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
        if _digest(request.identity) in seen:
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
        if response.fast is not None:
            rows: list[Any] = response.fast.rows
            return rows
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
