"""Bad-input survey: one table of bad inputs (config, SQL arguments, API answers, callback
URLs), each with the error type it gets and words its message must contain.

Every case also checks that nothing secret reaches the error message or the output.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.config import load_config
from remotetables.demo.api.server import Fault, IncidentsAPI
from remotetables.errors import (
    CoercionError,
    ConfigError,
    ConsentFailed,
    Error,
    MissingParameterError,
    NoSessionUser,
    PaginationError,
    RemoteError,
    RemoteProtocolError,
    TransportError,
    UnknownTableError,
)
from tests.conftest import incidents_table

SECRET = "s3cr3t-VALUE-never-shown"
ENV = {"DEMO_SECRET": SECRET, "API_TOKEN": SECRET, "REMOTETABLES_NO_KEYRING": "1"}

PROVIDER = """
[providers.p]
issuer = "https://auth.example.com"
client_id = "c"
"""
TABLE = """
[tables.t]
url = "https://api.example.com/x"
[tables.t.columns]
a = "TEXT"
"""


@dataclass(frozen=True)
class Case:
    kind: str  # config | sql | api | callback
    input: Any
    error: type[Exception]
    words: str


CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- config
    "toml-syntax": Case("config", "[tables.t\nurl = 1", ConfigError, "TOML"),
    "unknown-top-key": Case("config", "colour = 1\n" + TABLE, ConfigError, "colour"),
    "inline-client-secret": Case(
        "config",
        PROVIDER + f'client_secret = "{SECRET}"\n' + TABLE,
        ConfigError,
        "environment variable",
    ),
    "inline-token": Case(
        "config", PROVIDER + f'token = "{SECRET}"\n' + TABLE, ConfigError, "token_env"
    ),
    "unknown-provider-key": Case(
        "config", PROVIDER + "colour = 1\n" + TABLE, ConfigError, "colour"
    ),
    "bad-auth": Case(
        "config", '[providers.p]\nauth = "magic"\n' + TABLE, ConfigError, "none, bearer, oauth"
    ),
    "bad-integration": Case(
        "config", PROVIDER + 'integration = "team"\n' + TABLE, ConfigError, "personal"
    ),
    "oauth-without-client-id": Case(
        "config",
        '[providers.p]\nissuer = "https://a.example.com"\n' + TABLE,
        ConfigError,
        "client_id",
    ),
    "http-issuer-not-loopback": Case(
        "config",
        '[providers.p]\nissuer = "http://auth.example.com"\nclient_id = "c"\n' + TABLE,
        ConfigError,
        "https",
    ),
    "client-credentials-personal": Case(
        "config", PROVIDER + 'grant = "client_credentials"\n' + TABLE, ConfigError, "system"
    ),
    "bad-auth-method": Case(
        "config",
        PROVIDER + 'token_endpoint_auth_method = "jwt"\n' + TABLE,
        ConfigError,
        "client_secret_basic",
    ),
    "authorization-header": Case(
        "config",
        PROVIDER + f'headers = {{ Authorization = "Bearer {SECRET}" }}\n' + TABLE,
        ConfigError,
        "Authorization",
    ),
    "credential-header": Case(
        "config",
        PROVIDER + f'headers = {{ "X-Custom-Auth" = "{SECRET}", Accept = "text/json" }}\n' + TABLE,
        ConfigError,
        "key 'providers.p.headers.X-Custom-Auth': looks like a credential",
    ),
    "subscription-key-header": Case(
        "config",
        PROVIDER + f'headers = {{ "Ocp-Apim-Subscription-Key" = "{SECRET}" }}\n' + TABLE,
        ConfigError,
        "looks like a credential",
    ),
    "secret-in-table-url": Case(
        "config",
        PROVIDER + TABLE.replace('/x"', f'/x?page=1&access_token={SECRET}"'),
        ConfigError,
        "key 'tables.t.url': the query parameter 'access_token' looks like a secret",
    ),
    "negative-timeout": Case(
        "config", PROVIDER + "read_timeout = -1\n" + TABLE, ConfigError, "> 0"
    ),
    "zero-request-timeout": Case(
        "config", PROVIDER + "request_timeout = 0\n" + TABLE, ConfigError, "request_timeout"
    ),
    "boolean-timeout": Case(
        "config", PROVIDER + "connect_timeout = true\n" + TABLE, ConfigError, "not a boolean"
    ),
    "too-many-retries": Case(
        "config", PROVIDER + "max_retries = 99\n" + TABLE, ConfigError, "between 0 and 10"
    ),
    "scopes-not-strings": Case(
        "config", PROVIDER + "scopes = [1, 2]\n" + TABLE, ConfigError, "list of strings"
    ),
    "table-http-not-loopback": Case(
        "config", TABLE.replace("https://api", "http://api"), ConfigError, "https"
    ),
    "table-without-url": Case(
        "config", "[tables.t]\n[tables.t.columns]\na = 'TEXT'\n", ConfigError, "url"
    ),
    "bad-column-type": Case("config", TABLE + 'b = "DATETIME"\n', ConfigError, "INTEGER"),
    "bad-pagination": Case(
        "config", TABLE + '[tables.t.pagination]\nstyle = "scroll"\n', ConfigError, "link"
    ),
    "bad-table-name": Case("config", TABLE.replace("tables.t", 'tables."a b"'), ConfigError, "a b"),
    "secret-static-param": Case(
        "config",
        TABLE.replace(
            'url = "https://api.example.com/x"',
            f'url = "https://api.example.com/x"\nparams = {{ api_key = "{SECRET}" }}',
        ),
        ConfigError,
        "api_key",
    ),
    "unknown-table-provider": Case(
        "config", TABLE.replace("[tables.t]", '[tables.t]\nprovider = "nope"'), ConfigError, "nope"
    ),
    "bad-consent-mode": Case(
        "config", '[settings]\nconsent = "telepathy"\n' + TABLE, ConfigError, "consent"
    ),
    # ---------------------------------------------------------------- SQL arguments
    "set-user-empty": Case("sql", ("SELECT set_user('  ')", ()), NoSessionUser, "non-empty"),
    "set-user-control-char": Case(
        "sql", ("SELECT set_user(?)", ("al\nice",)), NoSessionUser, "printable"
    ),
    "set-user-too-long": Case("sql", ("SELECT set_user(?)", ("x" * 300,)), NoSessionUser, "256"),
    "personal-without-user": Case("sql", ("SELECT * FROM personal", ()), NoSessionUser, "set_user"),
    "bearer-env-unset": Case(
        "sql",
        ("SELECT * FROM needs_env", ()),
        ConfigError,
        "bad.toml, key 'providers.envtok.token_env'",
    ),
    "required-text-param-in-list": Case(
        "sql",
        ("SELECT * FROM needs_state WHERE state IN ('open', 'new')", ()),
        MissingParameterError,
        'an IN list on it needs in = "comma" or "repeat"',
    ),
    "missing-required-param": Case(
        "sql", ("SELECT * FROM needs_state", ()), MissingParameterError, "state"
    ),
    "cache-clear-unknown-table": Case(
        "sql", ("SELECT remotetables_cache_clear('nope')", ()), UnknownTableError, "nope"
    ),
    "text-where-integer": Case(
        "sql", ("SELECT count(*) FROM inc WHERE priority = 'high'", ()), None, ""
    ),  # type: ignore[arg-type]
    # ---------------------------------------------------------------- API answers
    "api-invalid-json": Case(
        "api",
        Fault("invalid_json", path="/styles/", times=None),
        RemoteProtocolError,
        "not valid JSON",
    ),
    "api-html-error": Case(
        "api", Fault("html_error", path="/styles/", times=None), RemoteError, "HTML error page"
    ),
    "api-text-plain": Case(
        "api",
        Fault("wrong_content_type", path="/styles/", times=None),
        RemoteProtocolError,
        "not JSON",
    ),
    "api-truncated": Case(
        "api",
        Fault("truncated_body", path="/styles/", times=None),
        TransportError,
        "closed the connection",
    ),
    "api-reset": Case(
        "api", Fault("reset", path="/styles/", times=None), TransportError, "gave up"
    ),
    "api-404": Case(
        "api", Fault("status", path="/styles/", status=404, times=None), RemoteError, "HTTP 404"
    ),
    "api-400-message": Case(
        "api",
        Fault("status", path="/styles/", status=400, body='{"message": "bad filter"}', times=None),
        RemoteError,
        "bad filter",
    ),
    "api-500-secret-body": Case(
        "api",
        Fault(
            "status",
            path="/styles/",
            status=500,
            body='{"message": "token=' + SECRET[:3] + '"}',
            times=None,
        ),
        RemoteError,
        "gave up after",
    ),
    "api-next-loop": Case(
        "api", Fault("next_loop", path="/styles/", times=None), PaginationError, "loops"
    ),
    "api-next-foreign": Case(
        "api",
        Fault("next_foreign", path="/styles/", page=1, url="http://127.0.0.2:9"),
        PaginationError,
        "origins",
    ),
    "api-redirect-loop": Case("api", "redirect-loop", RemoteError, "TooManyRedirects"),
    "api-rows-not-list": Case("api", "rows-path", RemoteProtocolError, "expected a list of rows"),
    "api-text-in-integer": Case("api", "coercion", CoercionError, "priority"),
    "api-text-in-integer-2col": Case("api", "coercion2", CoercionError, "priority"),
    # ---------------------------------------------------------------- callback URLs
    "callback-garbage": Case("callback", "not a url at all", ConsentFailed, "not a redirect URL"),
    "callback-unknown-state": Case(
        "callback", "http://127.0.0.1:5/callback?code=abc&state=nope", ConsentFailed, "no pending"
    ),
    "callback-no-state": Case(
        "callback", "http://127.0.0.1:5/callback?code=abc", ConsentFailed, "no pending"
    ),
    "callback-error-no-state": Case(
        "callback", "http://127.0.0.1:5/callback?error=access_denied", ConsentFailed, "no pending"
    ),
    "callback-repeated-state": Case(
        "callback",
        "http://127.0.0.1:5/callback?code=a&state=x&state=y",
        ConsentFailed,
        "no pending",
    ),
}
# "text-where-integer" is not an error: SQLite semantics say no row matches (see the runner).


@pytest.fixture(scope="module")
def bad_api() -> Iterator[IncidentsAPI]:
    weird = [{"sys_id": "w1", "number": "INC1", "priority": "high", "state": "open"}]
    with IncidentsAPI(n_rows=30, seed=1, datasets={"weird": weird}) as server:
        yield server


def sql_config(tmp: Path, base: str) -> Path:
    text = textwrap.dedent(f"""
        [settings]
        token_store = "{tmp / "tokens.db"}"
        key_file = "{tmp / "token.key"}"
        consent = "raise"
        [providers.open]
        auth = "none"
        max_retries = 1
        [providers.p]
        issuer = "http://127.0.0.1:9"
        client_id = "c"
        client_secret_env = "DEMO_SECRET"
        [tables.personal]
        provider = "p"
        url = "{base}/styles/link/incidents"
        [tables.personal.columns]
        sys_id = "TEXT"
        [providers.envtok]
        auth = "bearer"
        token_env = "REMOTETABLES_TEST_UNSET_TOKEN"
        [tables.needs_env]
        provider = "envtok"
        url = "{base}/styles/link/incidents"
        [tables.needs_env.columns]
        sys_id = "TEXT"
        [tables.needs_state]
        provider = "open"
        url = "{base}/styles/link/incidents"
        [tables.needs_state.columns]
        state = {{ type = "TEXT", param = "state", required = true }}
        [tables.loopy]
        provider = "open"
        url = "{base}/styles/link/incidents"
        [tables.loopy.columns]
        sys_id = "TEXT"
        [tables.rowsy]
        provider = "open"
        url = "{base}/styles/link/incidents"
        rows = "data"
        [tables.rowsy.columns]
        sys_id = "TEXT"
        [tables.weird]
        provider = "open"
        url = "{base}/styles/link/weird"
        [tables.weird.columns]
        priority = "INTEGER"
        [tables.weird2]
        provider = "open"
        url = "{base}/styles/link/weird"
        [tables.weird2.columns]
        number = "TEXT"
        priority = "INTEGER"
        """)
    text += incidents_table(
        "inc", "link", base, max_page_size=10, extra='provider = "open"\ncache_ttl = 0\n'
    )
    path = tmp / "bad.toml"
    path.write_text(text)
    return path


def run_case(case: Case, tmp: Path, api: IncidentsAPI) -> None:
    if case.kind == "config":
        path = tmp / "c.toml"
        path.write_text(case.input)
        load_config(path, environ=ENV)
        return
    if case.kind == "callback":
        conn = remotetables.connect(":memory:", config=sql_config(tmp, api.base_url), environ=ENV)
        try:
            conn.runtime.oauth_service().complete(case.input)
        finally:
            conn.close()
        return
    conn = remotetables.connect(
        ":memory:", config=sql_config(tmp, api.base_url), environ=ENV, sleep=lambda s: None
    )
    try:
        if case.kind == "sql":
            sql, args = case.input
            rows = conn.execute(sql, args).fetchall()
            if case.error is None:
                assert rows == [(0,)]
            return
        table = {
            "redirect-loop": "inc",
            "rows-path": "rowsy",
            "coercion": "weird",
            "coercion2": "weird2",
        }.get(case.input, "inc")
        if case.input == "redirect-loop":
            api.faults.add(
                Fault(
                    "redirect",
                    path="/styles/",
                    url=f"{api.base_url}/styles/link/incidents",
                    times=None,
                )
            )
        elif isinstance(case.input, Fault):
            api.faults.add(case.input)
        try:
            conn.execute(f"SELECT * FROM {table}").fetchall()
        finally:
            api.faults.clear()
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(
    name: str, tmp_path: Path, bad_api: IncidentsAPI, capfd: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    if case.error is None:
        run_case(case, tmp_path, bad_api)
        return
    with pytest.raises(case.error) as info:
        run_case(case, tmp_path, bad_api)
    assert isinstance(info.value, Error)  # always one of ours, never a raw library error
    message = str(info.value)
    assert case.words.lower() in message.lower(), message
    out = capfd.readouterr()
    for text in (message, repr(info.value), out.out, out.err):
        assert SECRET not in text


def test_the_survey_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert {c.kind for c in CASES.values()} == {"config", "sql", "api", "callback"}
