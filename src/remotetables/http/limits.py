"""Bounds on what a server can make us spend: a deadline over every byte of a call, and a cap
on the size of an answer.

A hostile or broken server can trickle a header line every second (each read is quick, so a
per-read timeout never fires), inflate 1 MB of gzip into 1 GB, or promise 2 GB and send nothing.
Three pieces stop that:

- :func:`deadline` sets, for the calling thread, the moment by which a call must be done. The
  transport from :func:`deadline_transport` gives every socket operation (connect, TLS, write,
  each read of the headers and of the body) at most the time left, so the deadline covers
  connect + headers + body, redirects included.
- :func:`read_limited` reads a streamed answer, decoding gzip / deflate itself in bounded steps,
  and stops as soon as the decoded body passes the limit.
- JSON is decoded with orjson, whose nesting limit (1024) turns a 200 000-deep document into an
  ordinary decode error (``json.loads`` raises ``RecursionError``); :data:`MAX_JSON_DEPTH`.

>>> with deadline(5.0):
...     time_left() is not None
True
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore2
import httpx2

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_RESPONSE_BYTES",
    "ResponseTooLarge",
    "deadline",
    "deadline_passed",
    "deadline_transport",
    "read_limited",
    "time_left",
]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # decoded; the default of max_response_bytes
MAX_JSON_DEPTH = 1024  # orjson's own limit: deeper documents fail to decode
_STEP = 64 * 1024  # at most this many decoded bytes come out of one decompression step

_local = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Within the block, the calling thread's network operations end ``seconds`` from now.

    The previous deadline is restored on exit (an OAuth call made inside an API request's auth
    flow has its own deadline, not what is left of the request's).
    """
    previous = getattr(_local, "until", None)
    until = time.monotonic() + seconds
    _local.until = until
    try:
        yield until
    finally:
        _local.until = previous


def time_left() -> float | None:
    """Seconds left before the calling thread's deadline (may be negative); None: no deadline."""
    until: float | None = getattr(_local, "until", None)
    return None if until is None else until - time.monotonic()


def deadline_passed() -> bool:
    left = time_left()
    return left is not None and left <= 0


def _bound(timeout: float | None, exc: type[Exception]) -> float | None:
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise exc("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    """A socket stream whose every operation waits at most until the thread's deadline."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bound(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bound(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context, server_hostname, _bound(timeout, httpcore2.ConnectTimeout)
        )
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, backend: httpcore2.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _bound(timeout, httpcore2.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path, _bound(timeout, httpcore2.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DeadlineTransport(httpx2.HTTPTransport):
    """httpx2's own transport over a connection pool whose sockets obey :func:`deadline`."""

    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext) -> None:
        # HTTPTransport.__init__ takes no network backend and only builds ``_pool``: build it
        # here the same way, with one (not calling it saves an SSL context per transport)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(httpcore2.SyncBackend()),
        )


def deadline_transport(
    *, max_connections: int, ssl_context: ssl.SSLContext | None = None
) -> httpx2.BaseTransport:
    """The transport of the runtime's HTTP clients: socket operations end at the deadline.
    ``ssl_context``: httpx2's default (certifi, no environment) unless given."""
    context = ssl_context or httpx2.create_ssl_context(trust_env=False)
    return _DeadlineTransport(max_connections=max_connections, ssl_context=context)


class ResponseTooLarge(Exception):
    """An answer passed the size limit (internal: the callers say whose answer it was)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit
        self.declared = declared


def read_limited(response: httpx2.Response, limit: int) -> bytearray:
    """The decoded body of a streamed ``response``; :class:`ResponseTooLarge` past ``limit``.

    gzip and deflate (also stacked: ``Content-Encoding: gzip, gzip``) are decoded here in steps
    of at most 64 KiB of output, so a compression bomb never inflates in one go. Other
    encodings are refused (the clients ask for gzip and deflate only). A ``Content-Length`` over
    the limit on an unencoded answer fails before any body is read. Decoding failures raise
    :class:`httpx2.DecodingError`.
    """
    if response.is_stream_consumed:  # an injected transport (tests) handed it over read
        if len(response.content) > limit:
            raise ResponseTooLarge(limit)
        return bytearray(response.content)
    codings = [
        c.strip().lower()
        for c in response.headers.get("content-encoding", "").split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    for coding in codings:
        if coding not in _INFLATE:
            raise httpx2.DecodingError(
                f"the answer's Content-Encoding {coding[:40]!r} is not supported"
            )
    if not codings:
        declared = response.headers.get("content-length", "").strip()
        known = declared.isascii() and declared.isdigit() and len(declared) < 20
        if known and int(declared) > limit:
            raise ResponseTooLarge(limit, int(declared))
    chunks: Iterator[bytes] = response.iter_raw()
    for coding in reversed(codings):  # listed in the order they were applied
        chunks = _inflate(chunks, coding)
    body = bytearray()  # grown in place: no second copy of a large answer
    for chunk in chunks:
        if len(body) + len(chunk) > limit:
            raise ResponseTooLarge(limit)
        body += chunk
    return body


_INFLATE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _inflate(chunks: Iterator[bytes], coding: str) -> Iterator[bytes]:
    """``chunks`` decoded as ``coding``, at most 64 KiB of output per step."""
    decoder = zlib.decompressobj(_INFLATE[coding])
    first = True
    try:
        for raw in chunks:
            if first and raw:
                first = False
                if coding == "deflate" and raw[0] & 0x0F != 8:
                    # a raw deflate stream, without the zlib header
                    decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            data = raw
            while data and not decoder.eof:
                out = decoder.decompress(data, _STEP)
                if out:
                    yield out
                data = decoder.unconsumed_tail
        while not decoder.eof:
            out = decoder.decompress(b"", _STEP)
            if not out:
                break
            yield out
        if not first and not decoder.eof:
            raise httpx2.DecodingError(f"the {coding} body ends before its end marker")
    except zlib.error as exc:
        raise httpx2.DecodingError(f"the {coding} body does not decode") from exc
