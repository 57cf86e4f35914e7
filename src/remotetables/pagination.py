"""One paginator per style: link header, next URL in the body, cursor, offset, page number.

A paginator is a small state machine, driven by the scan (and by hand in tests)::

    pager = make_paginator(spec, url, params, page_size=1000)
    request = pager.first()
    while request is not None:
        body, headers = fetch(request)
        items = rows_of(body)
        request = pager.next(body, headers, len(items))

``parallel_rest`` returns the remaining requests as a lazy :class:`PageRange` when the style
allows it (offset or page number with a known total), so the scan can fetch them concurrently:
its ``count`` is known at once and nothing is built until a request is taken (a first page
claiming ``total_pages = 10**12`` costs nothing before ``max_pages`` refuses it).

Relative next links are resolved against the URL that answered (after redirects), not the URL
asked for.

A page with fewer rows than asked for, or none, is not the end: ServiceNow applies ACLs after
paging, Google Calendar and Slack return short or empty pages while more follow. A scan ends
only when the style says so: no next link, no next URL, no cursor, ``has_more`` false, the
offset or page past a known total, or (offset and page styles with neither a total nor a
``has_more`` flag, where nothing else can tell) an empty page. Offsets advance by the page size
asked for, unless ``offset_by = "rows"`` says the API counts the rows it returned. The
scan's guards stop runaways: ``max_pages`` and a next request it has already made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import orjson

from remotetables.config import BodySpec, PaginationSpec
from remotetables.rows import get_path

__all__ = [
    "PageRange",
    "PageRequest",
    "Paginator",
    "build_url",
    "fill_body",
    "make_paginator",
    "parse_link_header",
]


@dataclass(frozen=True)
class PageRequest:
    url: str  # full URL, query included
    body: Any = field(default=None, compare=False)  # the JSON body of a POST listing

    def __str__(self) -> str:
        return self.url

    @property
    def identity(self) -> str:
        """What makes two requests the same (a POST listing asks one URL for every page)."""
        if self.body is None:
            return self.url
        return self.url + " " + orjson.dumps(self.body, option=orjson.OPT_SORT_KEYS).decode()


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.$-]*)\}")
_MISSING = object()


def fill_body(spec: BodySpec, params: Sequence[tuple[str, str]], kinds: Mapping[str, str]) -> Any:
    """The JSON body of a POST listing: ``spec.template`` with each ``"{name}"`` replaced by the
    parameter's value (typed by ``kinds``: ``int``, ``float``, ``bool``; several values: a
    list), and left out when the parameter has none; parameters the template does not place go
    into the object at ``spec.params_at``."""
    values: dict[str, Any] = {}
    for name, text in params:
        value = _typed(text, kinds.get(name))
        if name in values:
            old = values[name]
            values[name] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            values[name] = value
    used: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            m = _PLACEHOLDER.fullmatch(node)
            if m is None:
                return node
            used.add(m.group(1))
            return values.get(m.group(1), _MISSING)
        if isinstance(node, Mapping):
            out = {k: walk(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not _MISSING}
        if isinstance(node, list):
            return [x for x in (walk(v) for v in node) if x is not _MISSING]
        return node

    body = walk(spec.template)
    target = body
    for step in spec.params_at:
        target = target.setdefault(step, {})
    for name, value in values.items():
        if name not in used:
            target[name] = value
    return body


def _typed(text: str, kind: str | None) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return text
    if kind == "bool":
        return text.lower() in ("true", "1")
    return text


class PageRange:
    """Requests ``make(n)`` for ``n`` in ``range(start, stop, step)``, built one at a time.

    ``count`` is exact and costs nothing (``len`` of a range fails past ``sys.maxsize``).
    """

    def __init__(
        self, start: int, stop: int, step: int, make: Callable[[int], PageRequest]
    ) -> None:
        self._range = range(start, stop, step)
        self._make = make
        self.count = max(0, -(-(stop - start) // step))

    def __iter__(self) -> Iterator[PageRequest]:
        return (self._make(n) for n in self._range)


def build_url(url: str, params: Sequence[tuple[str, str]]) -> str:
    """Merge ``params`` into the query of ``url`` (a param given here replaces the URL's own)."""
    parts = urlsplit(url)
    names = {k for k, _ in params}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    query.extend(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+=(?:"[^"]*"|[^;,]*)\s*)*)')


def parse_link_header(value: str) -> dict[str, str]:
    """``<url>; rel="next", <url2>; rel="last"`` -> ``{"next": url, "last": url2}``."""
    out: dict[str, str] = {}
    for m in _LINK.finditer(value):
        url, params = m.group(1), m.group(2)
        for p in params.split(";"):
            key, _, val = p.strip().partition("=")
            if key.strip().lower() == "rel":
                for rel in val.strip().strip('"').split():
                    out.setdefault(rel.lower(), url)
    return out


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # "²".isdigit() is True and int("²") fails; int() refuses more than 4300 digits
        if text.isascii() and text.isdigit() and len(text) <= 30:
            return int(text)
    return None


class Paginator:
    """Base: a single request, no pages."""

    supports_parallel = False

    def __init__(self, spec: PaginationSpec, url: str, params: Sequence[tuple[str, str]]) -> None:
        self.spec = spec
        self.url = url
        self.params = list(params)
        self.current: PageRequest | None = None
        self.body: BodySpec | None = None  # a POST listing: parameters go into its body
        self.kinds: Mapping[str, str] = {}

    def _request(self, params: Sequence[tuple[str, str]]) -> PageRequest:
        if self.body is not None:
            return PageRequest(self.url, fill_body(self.body, params, self.kinds))
        return PageRequest(build_url(self.url, params))

    def first(self) -> PageRequest:
        self.current = self._request(self.params)
        return self.current

    def next(
        self, body: Any, headers: Mapping[str, str], n_items: int, base: str | None = None
    ) -> PageRequest | None:
        """The next request, or None. ``base``: the URL that answered (after redirects),
        against which a relative next link is resolved."""
        return None

    def parallel_rest(
        self, body: Any, headers: Mapping[str, str], n_items: int
    ) -> PageRange | None:
        """The remaining requests (lazily), when they can be known now; else None."""
        return None

    def _no_more(self, body: Any) -> bool:
        """The body says this was the last page (``has_more_path`` holds false)."""
        if self.spec.has_more_path is None:
            return False
        flag = get_path(body, self.spec.has_more_path)
        return (
            flag is False
            or flag == 0
            or (isinstance(flag, str) and flag.lower() in ("false", "0", "no"))
        )

    def _total(self, body: Any, headers: Mapping[str, str]) -> int | None:
        if self.spec.total_path is not None:
            return _number(get_path(body, self.spec.total_path))
        if self.spec.total_header:
            return _number(headers.get(self.spec.total_header))
        return None


class LinkPaginator(Paginator):
    def next(
        self, body: Any, headers: Mapping[str, str], n_items: int, base: str | None = None
    ) -> PageRequest | None:
        link = headers.get("link")
        if not link or self._no_more(body):
            return None
        nxt = parse_link_header(link).get("next")
        if not nxt:
            return None
        assert self.current is not None
        self.current = PageRequest(urljoin(base or self.current.url, nxt))
        return self.current


class NextUrlPaginator(Paginator):
    def next(
        self, body: Any, headers: Mapping[str, str], n_items: int, base: str | None = None
    ) -> PageRequest | None:
        assert self.current is not None
        if self.spec.next_path is not None:
            nxt = get_path(body, self.spec.next_path)
        else:
            nxt = headers.get(self.spec.next_header or "")
        if not nxt or not isinstance(nxt, str) or self._no_more(body):
            return None
        self.current = PageRequest(urljoin(base or self.current.url, nxt))
        return self.current


class CursorPaginator(Paginator):
    def next(
        self, body: Any, headers: Mapping[str, str], n_items: int, base: str | None = None
    ) -> PageRequest | None:
        if self.spec.cursor_path is not None:
            cursor = get_path(body, self.spec.cursor_path)
        else:
            cursor = headers.get(self.spec.cursor_header or "")
        # an empty page with a cursor is not the end (Google Calendar, Slack: only the missing
        # cursor is); the scan's loop check stops a cursor that comes back unchanged
        if cursor is None or cursor == "" or cursor is False or self._no_more(body):
            return None
        self.current = self._request([*self.params, (self.spec.cursor_param, str(cursor))])
        return self.current


class OffsetPaginator(Paginator):
    supports_parallel = True

    def __init__(
        self,
        spec: PaginationSpec,
        url: str,
        params: Sequence[tuple[str, str]],
        start: int = 0,
        page_size: int | None = None,
    ) -> None:
        super().__init__(spec, url, params)
        self.offset = start
        self.page_size = page_size  # what each request asks for (None: the API's default)

    def _step(self, n_items: int) -> int:
        if self.spec.offset_by == "rows" or self.page_size is None:
            return n_items
        return self.page_size

    def _at(self, offset: int) -> PageRequest:
        return self._request([*self.params, (self.spec.offset_param, str(offset))])

    def first(self) -> PageRequest:
        self.current = self._at(self.offset)
        return self.current

    def next(
        self, body: Any, headers: Mapping[str, str], n_items: int, base: str | None = None
    ) -> PageRequest | None:
        if self._no_more(body):
            return None
        total = self._total(body, headers)
        if n_items == 0 and total is None and self.spec.has_more_path is None:
            return None  # nothing else can say where the rows end
        step = self._step(n_items)
        if step == 0:
            return None  # the API counts returned rows and returned none: no way forward
        self.offset += step
        if total is not None and self.offset >= total:
            return None
        self.current = self._at(self.offset)
        return self.current

    def parallel_rest(
        self, body: Any, headers: Mapping[str, str], n_items: int
    ) -> PageRange | None:
        total = self._total(body, headers)
        if total is None or self.page_size is None or self.spec.offset_by == "rows":
            return None  # only a known page size says where each page starts
        return PageRange(self.offset + self.page_size, total, self.page_size, self._at)


class PagePaginator(Paginator):
    supports_parallel = True

    def __init__(
        self,
        spec: PaginationSpec,
        url: str,
        params: Sequence[tuple[str, str]],
        page_size: int | None = None,
    ) -> None:
        super().__init__(spec, url, params)
        self.page = spec.first_page
        self.page_size = page_size

    def _at(self, page: int) -> PageRequest:
        return self._request([*self.params, (self.spec.page_param, str(page))])

    def first(self) -> PageRequest:
        self.current = self._at(self.page)
        return self.current

    def _last_page(self, body: Any, headers: Mapping[str, str], n_items: int) -> int | None:
        if self.spec.total_pages_path is not None:
            pages = _number(get_path(body, self.spec.total_pages_path))
            if pages is not None:
                return self.spec.first_page + pages - 1
        total = self._total(body, headers)
        if total is not None and self.page_size:
            # integer ceiling: total / page_size overflows a float for a hostile total
            return self.spec.first_page + -(-total // self.page_size) - 1
        return None

    def next(
        self, body: Any, headers: Mapping[str, str], n_items: int, base: str | None = None
    ) -> PageRequest | None:
        if self._no_more(body):
            return None
        last = self._last_page(body, headers, n_items)
        if last is not None and self.page >= last:
            return None
        if last is None and n_items == 0 and self.spec.has_more_path is None:
            return None  # nothing else can say where the rows end
        self.page += 1
        self.current = self._at(self.page)
        return self.current

    def parallel_rest(
        self, body: Any, headers: Mapping[str, str], n_items: int
    ) -> PageRange | None:
        last = self._last_page(body, headers, n_items)
        if last is None or n_items == 0:
            return None
        return PageRange(self.page + 1, last + 1, 1, self._at)


def make_paginator(
    spec: PaginationSpec,
    url: str,
    params: Sequence[tuple[str, str]],
    *,
    start_offset: int = 0,
    body: BodySpec | None = None,
    kinds: Mapping[str, str] | None = None,
    page_size: int | None = None,
) -> Paginator:
    """``page_size``: the rows each request asks for (None: the API's own default); ``body``: a
    POST listing, its parameters put into that body (typed by ``kinds``)."""
    pager = _make(spec, url, params, start_offset, page_size)
    pager.body = body
    pager.kinds = kinds or {}
    return pager


def _make(
    spec: PaginationSpec,
    url: str,
    params: Sequence[tuple[str, str]],
    start_offset: int,
    page_size: int | None,
) -> Paginator:
    style = spec.style
    if style == "link":
        return LinkPaginator(spec, url, params)
    if style == "next_url":
        return NextUrlPaginator(spec, url, params)
    if style == "cursor":
        return CursorPaginator(spec, url, params)
    if style == "offset":
        return OffsetPaginator(spec, url, params, start_offset, page_size)
    if style == "page":
        return PagePaginator(spec, url, params, page_size)
    return Paginator(spec, url, params)
