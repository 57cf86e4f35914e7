"""What the HTTP layer says, with no secret in it: the redacting filter on httpx2's and
httpcore2's loggers (applied on import), and the API's own message in an error body."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from remotetables.errors import redact_secrets, redact_text

__all__ = [
    "LIBRARY_LOGGERS",
    "RedactingFilter",
    "body_message",
    "describe_transport",
    "error_reason",
    "redact_library_logs",
    "shorten",
]

# httpx2 logs each request's URL at INFO; httpcore2 logs each response's headers at DEBUG
# (Location, Link: URLs again; Set-Cookie). Their loggers (records are filtered where they are
# logged, not where they propagate to, hence every child logger by name):
LIBRARY_LOGGERS = (
    "httpx2",
    "httpcore2.connection",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
)
_SET_COOKIE = re.compile(r"""(?P<head>b?['"]set-cookie['"],\s*b?['"])[^'"]*""", re.IGNORECASE)


class RedactingFilter(logging.Filter):
    """Rewrites a library's log record whose text reveals a secret: secret-looking query values
    and registered secret values become ``***``, user info in URLs and ``Set-Cookie`` values go. Other records are untouched
    (same message template and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: the handler reports it as usual
            return True
        redacted = _SET_COOKIE.sub(r"\g<head>***", redact_secrets(redact_text(message)))
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACTING_FILTER = RedactingFilter()


def redact_library_logs() -> None:
    """Put the redacting filter on httpx2's and httpcore2's loggers (idempotent; done on import)."""
    names = set(LIBRARY_LOGGERS) | {"remotetables.http", "remotetables.auth"}
    names.update(
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name.partition(".")[0] in ("httpx2", "httpcore2")
    )
    for name in names:
        logging.getLogger(name).addFilter(_REDACTING_FILTER)


redact_library_logs()


def body_message(body: Any, limit: int = 200) -> tuple[str, str] | None:
    """The API's own message in a JSON body and the field it came from, or ``None``.

    The common shapes, first found wins: OAuth's ``error_description``, ``message``, ``error``
    (a string, or an object with a message), JSON:API's and GraphQL's ``errors[0]`` (title and
    detail, or message), Jira's ``errorMessages[0]`` (or the first of its ``errors`` object),
    RFC 9457's ``title`` and ``detail``. Whitespace is collapsed, URLs
    redacted, and the text cut at ``limit`` characters.

    >>> body_message({"errors": [{"title": "Forbidden", "detail": "not yours"}]})
    ('errors[0]', 'Forbidden: not yours')
    >>> body_message({"ok": False, "error": "invalid_auth"})
    ('error', 'invalid_auth')
    """
    if not isinstance(body, Mapping):
        return None
    for key in (
        "error_description", "message", "error", "errors", "errorMessages", "detail", "title"
    ):  # fmt: skip
        value = body.get(key)
        if key == "errors" and isinstance(value, Mapping) and value:  # Jira: {"field": "msg"}
            field, said = next(iter(value.items()))
            key, value = f"errors.{field}", f"{field}: {said}" if isinstance(said, str) else ""
        elif key in ("errors", "errorMessages"):
            if not (isinstance(value, list) and value):
                continue
            key, value = f"{key}[0]", value[0]
        elif key in ("detail", "title"):  # RFC 9457 problem details: "title: detail"
            value = {"title": body.get("title"), "detail": body.get("detail")}
            if not _message_of(body.get("detail")):
                key = "title"
        text = _message_of(value)
        if text:
            return key, shorten(redact_text(" ".join(text.split())), limit)
    return None


def _message_of(value: Any) -> str:
    """A string itself; an object's title (or message) and detail, as ``title: detail``."""
    if isinstance(value, str):
        return value.strip()
    if not isinstance(value, Mapping):
        return ""
    texts = [
        v.strip()
        for v in (value.get(k) for k in ("title", "message", "error_description", "description"))
        if isinstance(v, str) and v.strip()
    ][:1]
    detail = value.get("detail")
    if isinstance(detail, str) and detail.strip() and detail.strip() not in texts:
        texts.append(detail.strip())
    return ": ".join(texts)


def shorten(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters, every non-printable character (terminal escapes,
    bidi controls: a server's words end up on a user's terminal) replaced by ``?``."""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def error_reason(content: bytes | bytearray, headers: httpx2.Headers) -> str:
    """A short reason from an error body: the API's own message when it is JSON."""
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    said = body_message(body)
    if said is not None:
        return f": {said[1]}"
    ctype = headers.get("content-type", "").lower()
    if "html" in ctype:
        return ": an HTML error page"
    if ctype.startswith("text/plain") and content:
        text = " ".join(content[:4096].decode("utf-8", "replace").split())
        if text:
            return f": {shorten(redact_text(text), 200)}"
    return ""


def describe_transport(exc: httpx2.TransportError) -> str:
    if isinstance(exc, httpx2.ConnectError):
        return "connection failed (is the server running and the URL right?)"
    if isinstance(exc, httpx2.RemoteProtocolError):
        return "the server closed the connection mid-answer (truncated or malformed response)"
    if isinstance(exc, httpx2.ReadError):
        return "the connection was reset while reading"
    return type(exc).__name__
