"""Fault scenarios F8-F11 (resource server side), timeouts and interrupts, through SQL."""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from remotetables.auth.flow import BearerAuth
from remotetables.demo.api.server import Fault, IncidentsAPI
from remotetables.errors import (
    PaginationError,
    RemoteError,
    RemoteProtocolError,
    TransportError,
)
from remotetables.http.client import HttpClient, RequestContext, RetryPolicy, check_url_allowed
from tests.conftest import incidents_table
from tests.faults.env import Clock, DemoEnv, SleepLog, rows_of


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnv]:
    e = DemoEnv(tmp_path)
    yield e
    e.close()


def setup(env: DemoEnv, provider_extra: str = "", **kw: object) -> tuple[object, list, SleepLog]:
    """A consented connection for alice, the expected rows, and its sleep log."""
    log = SleepLog(marker=lambda: len(env.api.requests))
    conn = env.connect("alice", config=env.config(provider_extra=provider_extra), sleep=log, **kw)
    expected = rows_of(conn)
    log.waits.clear()
    env.api.clear_requests()
    return conn, expected, log


# ----------------------------------------------------------------------------- F8


def test_f08_retry_after_seconds(env: DemoEnv) -> None:
    conn, expected, log = setup(env)
    env.api.faults.add(
        Fault("status", path="/styles/", page=2, status=429, headers={"Retry-After": "1"})
    )
    assert rows_of(conn) == expected
    assert log.waits == [1.0]
    assert len(env.api.requests) == len(expected) // 10 + 2  # the 429'd page once more
    assert conn.last_stats["retries"] == 1


def test_f08_retry_after_http_date(env: DemoEnv) -> None:
    clock = Clock()
    clock.offset = round(clock()) - clock()  # whole seconds, like the header
    conn, expected, log = setup(env, clock=clock)
    when = email.utils.formatdate(clock() + 30, usegmt=True)
    env.api.faults.add(
        Fault("status", path="/styles/", page=1, status=429, headers={"Retry-After": when})
    )
    assert rows_of(conn) == expected
    assert len(log.waits) == 1 and 29.0 <= log.waits[0] <= 30.0


@pytest.mark.parametrize("value", ["86400", "Wed, 21 Oct 2065 07:28:00 GMT"])
def test_f08_absurd_retry_after_is_capped(env: DemoEnv, value: str) -> None:
    conn, expected, log = setup(env, "max_retry_wait = 5")
    env.api.faults.add(
        Fault("status", path="/styles/", page=1, status=503, headers={"Retry-After": value})
    )
    assert rows_of(conn) == expected
    assert log.waits == [5.0]


def test_f08_long_retry_wait_can_be_interrupted(env: DemoEnv) -> None:
    box: dict[str, object] = {}
    log = SleepLog(hook=lambda: box["conn"].session.interrupt() if log.calls >= 3 else None)  # type: ignore[attr-defined]
    conn = env.connect("alice", config=env.config(), sleep=log)
    box["conn"] = conn
    env.api.faults.add(
        Fault("status", path="/styles/", page=1, status=429, headers={"Retry-After": "60"})
    )
    with pytest.raises(RemoteError, match="interrupted") as info:
        rows_of(conn)
    assert info.value.status_code == 429
    assert log.total < 1.0  # three 0.25 s slices of the 60 s wait, then stop
    conn.session.new_statement()
    assert rows_of(conn)  # the next statement runs normally


def test_f08_rate_limit_for_good_gives_up_with_a_clear_error(env: DemoEnv) -> None:
    conn, _, log = setup(env, "max_retries = 2")
    env.api.faults.add(
        Fault("status", path="/styles/", status=429, times=None, headers={"Retry-After": "2"})
    )
    with pytest.raises(RemoteError, match=r"rate limited.*gave up after 3 attempts"):
        rows_of(conn)
    assert log.waits == [2.0, 2.0] and len(env.api.requests) == 3


# ----------------------------------------------------------------------------- F9


def test_f09_5xx_retried_with_growing_jittered_backoff(env: DemoEnv) -> None:
    conn, expected, log = setup(env)
    env.api.faults.add(Fault("status", path="/styles/", page=1, status=503, times=2))
    assert rows_of(conn) == expected
    d1, d2 = log.waits
    assert 0.25 <= d1 <= 0.5 and 0.5 <= d2 <= 1.0 and d1 < d2  # base 0.5 s, equal jitter
    assert [r.status for r in env.api.requests[:3]] == [503, 503, 200]


@pytest.mark.parametrize("kind", ["reset", "close_connection"])
def test_f09_connection_reset_retried(env: DemoEnv, kind: str) -> None:
    conn, expected, log = setup(env)
    env.api.faults.add(Fault(kind, path="/styles/", page=2, times=2))
    assert rows_of(conn) == expected
    assert len(log.waits) == 2 and conn.last_stats["retries"] == 2


def test_f09_persistent_5xx_bounded_then_clear_error(env: DemoEnv) -> None:
    conn, _, log = setup(env, "max_retries = 3")
    env.api.faults.add(Fault("status", path="/styles/", status=502, times=None))
    with pytest.raises(RemoteError, match=r"HTTP 502.*gave up after 4 attempts") as info:
        rows_of(conn)
    assert info.value.retryable and len(env.api.requests) == 4 and len(log.waits) == 3
    caps = [0.5, 1.0, 2.0]
    assert all(c / 2 <= w <= c for w, c in zip(log.waits, caps, strict=True))


def test_f09_post_is_not_retried(fresh_api: IncidentsAPI) -> None:
    log = SleepLog()
    http = HttpClient(sleep=log)
    fresh_api.faults.add(Fault("status", path="/styles/link/", method="POST", status=503))
    with pytest.raises(RemoteError, match="503"):
        http.request_json(
            "POST",
            f"{fresh_api.base_url}/styles/link/incidents",
            ctx=RequestContext(table="t"),
            policy=RetryPolicy(),
            json_body={"short_description": "x"},
            idempotent=False,
        )
    assert len(fresh_api.requests) == 1 and log.waits == []
    http.close()


def test_f09_connection_refused_is_a_transport_error(env: DemoEnv) -> None:
    conn, _, _ = setup(env, "max_retries = 1")
    env.api.stop()
    with pytest.raises(TransportError, match=r"connection failed.*gave up after 2 attempts"):
        rows_of(conn)


# ----------------------------------------------------------------------------- F10


@pytest.fixture
def other() -> Iterator[IncidentsAPI]:
    """Another origin: same host, another port."""
    with IncidentsAPI(n_rows=5) as server:
        yield server


def test_f10_cross_origin_redirect_drops_the_token(env: DemoEnv, other: IncidentsAPI) -> None:
    conn, _, _ = setup(env)
    env.api.faults.add(Fault("redirect", path="/styles/", page=1, url=f"{other.base_url}/echo"))
    rows = conn.execute("SELECT * FROM inc").fetchall()
    (hop,) = other.requests
    assert hop.path == "/echo" and hop.token_fp is None  # /echo saw no Authorization
    assert "Bearer" not in repr(rows)


def test_f10_same_origin_redirect_keeps_the_token(env: DemoEnv) -> None:
    conn, _, _ = setup(env)
    env.api.faults.add(Fault("redirect", path="/styles/", page=1, url=f"{env.api.base_url}/echo"))
    conn.execute("SELECT * FROM inc").fetchall()
    echo = [r for r in env.api.requests if r.path == "/echo"]
    assert len(echo) == 1 and echo[0].token_fp is not None


TENANT = 'headers = { "X-Tenant-Id" = "tenant-id-never-elsewhere" }'


def test_f10_cross_origin_redirect_drops_the_configured_headers(
    env: DemoEnv, other: IncidentsAPI
) -> None:
    """The provider's `headers` may carry credentials too: they go where its token goes."""
    conn, _, _ = setup(env, TENANT)
    env.api.faults.add(Fault("redirect", path="/styles/", page=1, url=f"{other.base_url}/echo"))
    conn.execute("SELECT * FROM inc").fetchall()
    (first,) = env.api.requests
    assert "x-tenant-id" in first.header_names and first.token_fp is not None
    (hop,) = other.requests
    assert hop.path == "/echo" and hop.token_fp is None
    assert "x-tenant-id" not in hop.header_names
    # a same-origin hop keeps them
    env.api.clear_requests()
    env.api.faults.add(Fault("redirect", path="/styles/", page=1, url=f"{env.api.base_url}/echo"))
    conn.execute("SELECT * FROM inc").fetchall()
    assert [r.path for r in env.api.requests] == ["/styles/link/incidents", "/echo"]
    assert all("x-tenant-id" in r.header_names for r in env.api.requests)


def test_f10_configured_headers_follow_a_redirect_to_the_api_origins(
    env: DemoEnv, other: IncidentsAPI
) -> None:
    """An origin listed in api_origins may receive the token, so the headers too."""
    conn, _, _ = setup(env, f'{TENANT}\napi_origins = ["{other.base_url}"]')
    env.api.faults.add(Fault("redirect", path="/styles/", page=1, url=f"{other.base_url}/echo"))
    conn.execute("SELECT * FROM inc").fetchall()
    (hop,) = other.requests
    assert "x-tenant-id" in hop.header_names


def test_f10_headers_of_a_provider_without_token_stay_on_the_first_origin(
    fresh_api: IncidentsAPI,
    other: IncidentsAPI,
    open_conn: Callable[..., Any],
) -> None:
    conn = open_conn(
        f'[providers.open]\nauth = "none"\n{TENANT}\n'
        + incidents_table("inc", "link", fresh_api.base_url, extra="cache_ttl = 0\n")
    )
    fresh_api.faults.add(Fault("redirect", path="/styles/", url=f"{other.base_url}/echo"))
    conn.execute("SELECT * FROM inc").fetchall()
    assert "x-tenant-id" in fresh_api.requests[0].header_names
    (hop,) = other.requests
    assert hop.path == "/echo" and "x-tenant-id" not in hop.header_names


def test_f10_next_link_to_another_origin_is_not_followed(env: DemoEnv, other: IncidentsAPI) -> None:
    conn, _, _ = setup(env)
    env.api.faults.add(Fault("next_foreign", path="/styles/", page=1, url=other.base_url))
    with pytest.raises(PaginationError, match="not one of provider demo's API origins"):
        rows_of(conn)
    assert other.requests == []


def test_f10_token_never_put_on_a_foreign_absolute_url(other: IncidentsAPI) -> None:
    http = HttpClient()
    auth = BearerAuth(lambda: "secret-token-123", None, frozenset({"http://127.0.0.1:1"}), "demo")
    with pytest.raises(RemoteError, match="refusing to send its token") as info:
        http.request_json(
            "GET", f"{other.base_url}/echo", ctx=RequestContext(), policy=RetryPolicy(), auth=auth
        )
    assert "secret-token-123" not in str(info.value)
    assert other.requests == []
    http.close()


@pytest.mark.parametrize(
    "url", ["http://example.com/x", "http://10.0.0.1/x", "ftp://127.0.0.1/x", "/relative"]
)
def test_f10_plain_http_only_on_loopback(url: str) -> None:
    with pytest.raises(RemoteError, match="only https"):
        check_url_allowed(url, RequestContext(table="t"))
    check_url_allowed("http://127.0.0.1:9/x", RequestContext())
    check_url_allowed("http://[::1]:9/x", RequestContext())
    check_url_allowed("https://example.com/x", RequestContext())


# ----------------------------------------------------------------------------- F11
# Token-response side: tests/auth/test_oauth.py::test_truncated_body_on_a_real_socket and
# tests/faults/test_tokens.py::test_f07_token_endpoint_outage_keeps_tokens[not_json].


@pytest.mark.parametrize(
    "kind", ["invalid_json", "wrong_content_type", "truncated_body", "html_error"]
)
def test_f11_garbled_page_retried_once(env: DemoEnv, kind: str) -> None:
    conn, expected, log = setup(env)
    env.api.faults.add(Fault(kind, path="/styles/", page=2))
    assert rows_of(conn) == expected
    assert len(log.waits) == 1


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("invalid_json", RemoteProtocolError, "not valid JSON"),
        ("wrong_content_type", RemoteProtocolError, "text/plain, not JSON"),
        ("truncated_body", TransportError, "closed the connection"),
        ("html_error", RemoteError, "HTML error page"),
    ],
)
def test_f11_garbled_page_for_good_is_a_typed_error(
    env: DemoEnv, kind: str, error: type[Exception], words: str
) -> None:
    conn, _, _ = setup(env, "max_retries = 2")
    env.api.faults.add(Fault(kind, path="/styles/", page=2, times=None))
    cur = conn.execute("SELECT sys_id FROM inc")
    got = []
    with pytest.raises(error, match=words):
        for row in cur:
            got.append(row)
    assert len(got) == 10  # page 1 only; nothing of the bad page


# ----------------------------------------------------------------------------- timeouts


def test_read_timeout_is_per_provider(env: DemoEnv) -> None:
    conn, _, _ = setup(env, "read_timeout = 0.2\nmax_retries = 0")
    assert conn.runtime.retry_policy("demo").read_timeout == 0.2
    env.api.faults.add(Fault("delay", path="/styles/", page=1, seconds=3))
    with pytest.raises(TransportError, match="timed out"):
        rows_of(conn)


def test_trickling_body_ends_in_request_timeout(env: DemoEnv) -> None:
    conn, _, _ = setup(env, "read_timeout = 2\nrequest_timeout = 0.5\nmax_retries = 0")
    policy = conn.runtime.retry_policy("demo")
    assert (policy.read_timeout, policy.request_timeout) == (2.0, 0.5)
    env.api.faults.add(Fault("trickle", path="/styles/", page=1, chunk=16, seconds=0.05))
    with pytest.raises(TransportError, match="request_timeout"):
        rows_of(conn)


def test_connect_timeout_is_configurable(env: DemoEnv) -> None:
    conn, _, _ = setup(env, "connect_timeout = 0.5")
    assert conn.runtime.retry_policy("demo").connect_timeout == 0.5


def test_retry_wait_does_not_depend_on_the_clock_moving() -> None:
    """An injected sleep that does not move an injected clock still ends."""
    http = HttpClient(sleep=lambda s: None, clock=lambda: 1000.0)
    failure = RemoteError("x", status_code=503)
    http._wait(5.0, lambda: False, failure)  # returns: bounded by slices slept, not the clock
    calls: list[float] = []
    http2 = HttpClient(sleep=calls.append, rng=lambda: 1.0)
    policy = RetryPolicy(base_delay=1.0, max_delay=3.0)
    assert [http2.retry_delay(policy, a, None) for a in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]
    assert HttpClient(rng=lambda: 0.0).retry_delay(policy, 2, None) == 1.0


def test_one_client_keeps_no_cookies_between_users() -> None:
    """A session cookie set for one user must not ride along with another user's request."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie"))
            body = b"[]"
            self.send_response(200)
            self.send_header("Set-Cookie", "JSESSIONID=alice-session; Path=/")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    http = HttpClient()
    url = f"http://127.0.0.1:{srv.server_address[1]}/x"
    for _ in range(2):
        http.request_json("GET", url, ctx=RequestContext(), policy=RetryPolicy())
    assert seen == [None, None]
    http.close()
    srv.shutdown()
    srv.server_close()


def test_httpx_transport_errors_name_no_token(env: DemoEnv) -> None:
    conn, _, _ = setup(env, "max_retries = 0")
    rec = env.record(conn, "alice")
    assert rec is not None and rec.tokens is not None
    env.api.faults.add(Fault("reset", path="/styles/", page=1))
    with pytest.raises(TransportError) as info:
        rows_of(conn)
    text = repr(info.value) + str(info.value) + repr(info.value.__cause__)
    assert rec.tokens.access_token not in text
    assert isinstance(info.value.__cause__, (httpx2.HTTPError, TransportError))
