"""The hostile behaviours, by name (:data:`CATALOG`)."""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING

from tests.servers.hostile.wire import (
    ISSUED_ACCESS,
    ISSUED_REFRESH,
    Behaviour,
    Request,
    _hold,
    _trickle,
    send,
    send_json,
)

if TYPE_CHECKING:
    from tests.servers.hostile.server import HostileServer

# ---------------------------------------------------------------- the catalog


def slow_headers(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    _trickle(server, conn, lambda n: f"X-Slow-{n}: {n}\r\n".encode(), 0.25)


def slowloris_body(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    )
    _trickle(server, conn, lambda n: b" ", 0.2)


def huge_content_length(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n"
    )
    _hold(server, conn)


def endless_body(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b'{"id": 1, "name": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},' * 1000
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    try:
        conn.sendall(b'6\r\n{"a":[\r\n')
        for _ in range(200_000):  # at most ~10 GB, far past any limit
            if server.stopping.is_set():
                return
            conn.sendall(framed)
    except OSError:
        return


_BOMB: list[bytes] = []
_BOMB_LOCK = threading.Lock()


def bomb() -> bytes:
    """About 260 KB of gzip that inflates to 256 MiB of zeros (made once)."""
    with _BOMB_LOCK:
        if not _BOMB:
            c = zlib.compressobj(9, zlib.DEFLATED, 31)
            zeros = b"\0" * (1 << 20)
            _BOMB.append(b"".join([*(c.compress(zeros) for _ in range(256)), c.flush()]))
        return _BOMB[0]


def gzip_bomb(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    body = bomb()
    send(conn, 200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], body)


def double_gzip_bomb(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """The gzip bomb gzipped again (``gzip, gzip``): a few KB that a decoder handling one layer
    at a time inflates to 256 MiB in one call."""
    body = gzip.compress(bomb(), 9)
    send(
        conn, 200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip, gzip")], body
    )


def unknown_encoding(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    send(
        conn,
        200,
        [("Content-Type", "application/json"), ("Content-Encoding", "br")],
        b"\x8b\x02\x80{}\x03",
    )


def deflate_bomb(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as some servers send it
    zeros = b"\0" * (1 << 20)
    body = b"".join([*(c.compress(zeros) for _ in range(64)), c.flush()])
    send(conn, 200, [("Content-Type", "application/json"), ("Content-Encoding", "deflate")], body)


def big_identity(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    """A 4 MiB answer with an honest Content-Length: over the suite's 1 MiB limit."""
    body = b'{"items": [' + b'{"id": 1, "name": "xxxxxxxxxxxxxxxxxxxxxxxx"},' * 100_000 + b"{}]}"
    send(conn, 200, [("Content-Type", "application/json")], body)


def huge_headers(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(
        b"X-Filler-%d: %s\r\n" % (i, b"y" * 8000) for i in range(2000)
    )
    try:
        conn.sendall(head + b"Content-Length: 2\r\n\r\n{}")
    except OSError:
        return


def endless_redirects(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    n = int(req.query.get("hop", "0")) + 1
    send(conn, 302, [("Location", f"{req.path}?hop={n}")], b"")


def bad_gzip(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    send(
        conn,
        200,
        [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        b'{"items": []}',
    )


def truncated_gzip(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    body = gzip.compress(b'{"items": [{"id": 1, "name": "one"}], "total_pages": 1}' * 10)
    send(
        conn,
        200,
        [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        body[: len(body) // 2],
    )


def not_utf8(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    doc = {"items": [{"id": 1, "name": "caf\u00e9"}], "access_token": "x", "error": "caf\u00e9"}
    body = json.dumps(doc, ensure_ascii=False).encode("utf-16")
    send(conn, 200, [("Content-Type", "application/json; charset=utf-8")], body)


def truncated_body(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        b'{"items": [{"id": 1, "name": "on'
    )
    conn.shutdown(socket.SHUT_WR)


def reset_mid_body(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        b'{"items": [{"id": 1, "name": "on'
    )
    time.sleep(0.05)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST


def close_at_once(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def garbage_status(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    conn.sendall(b"HTTP/1.1 two hundred OK\r\n\x00\x01\x02\r\n\r\n")


def deep_json(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    depth = 200_000
    send(conn, 200, [("Content-Type", "application/json")], b"[" * depth + b"]" * depth)


def deep_json_object(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """A JSON object whose one field nests 200 000 levels (json.loads: RecursionError)."""
    depth = 200_000
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    key = {"api": b"items", "token": b"access_token", "discovery": b"issuer"}.get(
        endpoint, b"error"
    )
    send(conn, 200, [("Content-Type", "application/json")], b'{"' + key + b'": ' + inner + b"}")


def deep_value(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    """A row whose field nests 1000 deep: within orjson's decoding limit (1024), past its
    encoding limit (254), which a TEXT or JSON column's value goes through."""
    depth = 1000
    body = b'{"items": [{"id": 1, "name": ' + b"[" * depth + b"]" * depth + b'}], "total_pages": 1}'
    send(conn, 200, [("Content-Type", "application/json")], body)


def retry_after_superscript(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    send_json(conn, 503, {"error": "temporarily_unavailable"}, [("Retry-After", "\u00b2")])


def expires_in_superscript(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    send_json(
        conn,
        200,
        {
            "access_token": ISSUED_ACCESS,
            "token_type": "Bearer",
            "expires_in": "\u00b2",
            "refresh_token": ISSUED_REFRESH,
            "refresh_expires_in": "9" * 5000,
        },
    )


def huge_numbers(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    """Numbers past int()'s 4300-digit limit and past a float, where counts are read."""
    big = "9" * 5000
    doc = {"items": [{"id": big, "name": big}], "total_pages": big, "total": big}
    send_json(conn, 200, doc, [("X-Total-Count", big), ("Retry-After", big)])


def page_total_huge(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """Item 1: a first page claiming 10**12 pages (max_pages is 100)."""
    items = [{"id": int(req.query.get("page", "1")), "name": "x"}]
    send_json(conn, 200, {"items": items, "total_pages": 10**12})


def echo_secret(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    """Item 6: every credential the client sent comes back in the error text."""
    said = " ".join(f"bad key {s}" for s in req.secrets()) or "no key"
    if endpoint == "api":
        send_json(conn, 403, {"message": said})
    elif endpoint == "discovery":
        send(conn, 500, [("Content-Type", "text/plain")], said.encode())
    else:  # RFC 6749 §5.2 error answer, its description echoing the request
        send_json(conn, 400, {"error": "invalid_grant", "error_description": said})


def echo_secret_plain(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """The same, as a text/plain 401 (quoted in errors as the API's own words)."""
    said = " ".join(f"bad key {s}" for s in req.secrets()) or "no key"
    send(
        conn,
        401,
        [("Content-Type", "text/plain"), ("WWW-Authenticate", f'Bearer error="{said}"')],
        said.encode(),
    )


def redirect_then_relative_next(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """Item 8: the first page redirects to another origin, which sends a relative next link.

    Resolved against the original URL, the link looks like a page of the table's own origin;
    it belongs to the other origin, which may not get the token."""
    other = server.other
    assert other is not None
    if "/elsewhere" not in req.path:
        send(
            conn,
            302,
            [("Location", f"{other.base_url}/m/redirect_then_relative_next/elsewhere")],
            b"",
        )
        return
    send_json(
        conn,
        200,
        {"items": [{"id": 1, "name": "one"}]},
        [("Link", '</m/redirect_then_relative_next/api?page=2>; rel="next"')],
    )


def huge_next_link(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    """An 80 KB next link, different on every page (the scan remembers the links it saw)."""
    n = int(req.query.get("page", "1"))
    link = f'</m/huge_next_link/api?page={n + 1}&pad={"x" * 80_000}>; rel="next"'
    send_json(conn, 200, {"items": [{"id": n, "name": "x"}]}, [("Link", link)])


def escape_sequences(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """Terminal escapes and bidi controls in the error text (it reaches a user's terminal)."""
    said = "denied \x1b]0;owned\x07\x1b[2J\x1b[31mred\u202eevil\x9b1m"
    if endpoint in ("api", "discovery"):
        send_json(conn, 403, {"message": said, "issuer": said})
    else:
        send_json(conn, 400, {"error": "invalid_grant\x1b[2J", "error_description": said})


def huge_token(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    token = "t" * 500_000
    send_json(conn, 200, {"access_token": token, "token_type": "Bearer", "refresh_token": token})


def token_with_newline(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """A token that would inject a header line (and that an HTTP library quotes in its error)."""
    token = ISSUED_ACCESS + "\r\nX-Injected: 1"
    send_json(conn, 200, {"access_token": token, "token_type": "Bearer", "expires_in": 60})


def html_page(server: HostileServer, conn: socket.socket, req: Request, endpoint: str) -> None:
    send(conn, 200, [("Content-Type", "text/html")], b"<html><body>login</body></html>" * 100)


def many_small_chunks(
    server: HostileServer, conn: socket.socket, req: Request, endpoint: str
) -> None:
    """Chunked transfer with 1-byte chunks of a body over the limit, as fast as possible."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    try:
        for _ in range(2_000_000):
            if server.stopping.is_set():
                return
            conn.sendall(b"1\r\n \r\n" * 512)
    except OSError:
        return


_API = frozenset({"api"})
_TOKEN = frozenset({"token"})

CATALOG: dict[str, Behaviour] = {
    "slow_headers": Behaviour(slow_headers, doc="one header line every 0.25 s, forever (item 3)"),
    "slowloris_body": Behaviour(slowloris_body, doc="one body byte every 0.2 s"),
    "huge_content_length": Behaviour(huge_content_length, doc="Content-Length: 2 GB, then nothing"),
    "endless_body": Behaviour(endless_body, doc="a chunked body that never ends, fast"),
    "gzip_bomb": Behaviour(gzip_bomb, doc="260 KB of gzip inflating to 256 MiB (item 2)"),
    "double_gzip_bomb": Behaviour(double_gzip_bomb, doc="the gzip bomb gzipped again (gzip, gzip)"),
    "unknown_encoding": Behaviour(unknown_encoding, doc="Content-Encoding: br, never asked for"),
    "deflate_bomb": Behaviour(deflate_bomb, doc="raw deflate inflating to 64 MiB"),
    "big_identity": Behaviour(big_identity, doc="4 MiB with an honest Content-Length"),
    "many_small_chunks": Behaviour(many_small_chunks, doc="1-byte chunks without end"),
    "huge_headers": Behaviour(huge_headers, doc="16 MB of header lines"),
    "endless_redirects": Behaviour(endless_redirects, doc="302 to itself, forever"),
    "bad_gzip": Behaviour(bad_gzip, doc="Content-Encoding: gzip over plain JSON"),
    "truncated_gzip": Behaviour(truncated_gzip, doc="half a gzip stream, honest length"),
    "not_utf8": Behaviour(not_utf8, doc="JSON in UTF-16 labelled utf-8"),
    "truncated_body": Behaviour(truncated_body, doc="Content-Length 5000, 33 bytes, close"),
    "reset_mid_body": Behaviour(reset_mid_body, doc="connection reset mid-page"),
    "close_at_once": Behaviour(close_at_once, doc="reset before any answer"),
    "garbage_status": Behaviour(garbage_status, doc="a status line that is not HTTP"),
    "html_page": Behaviour(html_page, doc="an HTML login page with 200"),
    "deep_json": Behaviour(deep_json, doc="an array nested 200 000 deep (items 2, 7)"),
    "deep_json_object": Behaviour(deep_json_object, doc="an object field nested 200 000 deep (item 7)"),
    "deep_value": Behaviour(deep_value, _API, doc="a row field nested 1000 deep"),
    "retry_after_superscript": Behaviour(retry_after_superscript, doc="503 with Retry-After: \u00b2 (item 7)"),
    "expires_in_superscript": Behaviour(
        expires_in_superscript, _TOKEN, doc='"expires_in": "\u00b2", refresh_expires_in of 5000 digits (item 7)'
    ),
    "huge_numbers": Behaviour(huge_numbers, doc="5000-digit counts, ids and Retry-After"),
    "page_total_huge": Behaviour(page_total_huge, _API, doc="total_pages = 10**12, max_pages 100 (item 1)"),
    "echo_secret": Behaviour(echo_secret, doc="the credentials sent, echoed in the error body (item 6)"),
    "echo_secret_plain": Behaviour(echo_secret_plain, doc="the same as text/plain 401 and in WWW-Authenticate"),
    "huge_next_link": Behaviour(
        huge_next_link, _API, table="t_link", doc="an 80 KB next link, new on every page"
    ),
    "escape_sequences": Behaviour(escape_sequences, doc="terminal escapes in the error text"),
    "token_with_newline": Behaviour(token_with_newline, _TOKEN, doc="a token with CR LF in it"),
    "huge_token": Behaviour(huge_token, _TOKEN, doc="a 500 000-character access token"),
    "redirect_then_relative_next": Behaviour(
        redirect_then_relative_next, _API, table="t_link",
        doc="302 to another origin whose Link: next is relative (item 8)",
    ),
}  # fmt: skip
