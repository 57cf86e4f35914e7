"""Config validation: every error names the file and the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from remotetables.config import load_config
from remotetables.errors import ConfigError

GOOD = """
[providers.demo]
issuer = "https://auth.example.com"
client_id = "remotetables"
scopes = ["incidents.read"]

[tables.remote_incidents]
provider = "demo"
url = "https://api.example.com/api/now/table/incident"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 1000

[tables.remote_incidents.columns]
number = "TEXT"
priority = { type = "INTEGER", param = "priority", required = false }
caller = { type = "TEXT", path = "caller.name" }
tags = "JSON"
"""


def test_good_config_parses(write_config: Callable[..., Path]) -> None:
    cfg = load_config(write_config(GOOD))
    t = cfg.table("REMOTE_INCIDENTS")
    assert [c.name for c in t.columns] == ["number", "priority", "caller", "tags"]
    assert t.columns[2].path == ("caller", "name")
    assert t.columns[1].param == "priority"
    assert t.pagination.style == "link"
    assert cfg.providers["demo"].auth == "oauth"
    assert cfg.providers["demo"].integration == "personal"
    assert cfg.allowed_origins("demo") == frozenset({"https://api.example.com:443"})


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (
            ('rows = "result"', 'rowz = "result"'),
            "tables.remote_incidents.rowz",
            "did you mean 'rows'",
        ),
        (
            ('url = "https://api.example.com/api/now/table/incident"\n', ""),
            "tables.remote_incidents.url",
            "missing",
        ),
        (
            ('number = "TEXT"', 'number = "TXT"'),
            "tables.remote_incidents.columns.number.type",
            "unknown type",
        ),
        (
            ('tags = "JSON"', 'tags = "JSON"\nNUMBER = "TEXT"'),
            "tables.remote_incidents.columns.NUMBER",
            "duplicate column",
        ),
        (
            ('provider = "demo"', 'provider = "dmo"'),
            "tables.remote_incidents.provider",
            "unknown provider 'dmo'",
        ),
        (
            ('path = "caller.name"', 'path = "caller..name"'),
            "tables.remote_incidents.columns.caller.path",
            "bad JSON path",
        ),
        (
            ('client_id = "remotetables"', 'client_id = "remotetables"\nclient_secret = "s3cr3t"'),
            "providers.demo.client_secret",
            "environment variable",
        ),
        (
            ("https://api.example.com", "http://api.example.com"),
            "tables.remote_incidents.url",
            "plain http",
        ),
        (
            ('pagination = "link"', 'pagination = "links"'),
            "tables.remote_incidents.pagination.style",
            "unknown pagination style",
        ),
        (
            ("max_page_size = 1000", "max_page_size = 0"),
            "tables.remote_incidents.max_page_size",
            ">= 1",
        ),
        (
            ("max_page_size = 1000", 'max_page_size = "big"'),
            "tables.remote_incidents.max_page_size",
            "must be an integer",
        ),
        (
            ("required = false", 'required = true, exact = "yes"'),
            "tables.remote_incidents.columns.priority.exact",
            "true or false",
        ),
        (
            (
                'caller = { type = "TEXT", path = "caller.name" }',
                'caller = { type = "TEXT", required = true }',
            ),
            "tables.remote_incidents.columns.caller.required",
            "param",
        ),
        (
            ('scopes = ["incidents.read"]', 'scopes = ["incidents.read"]\nintegration = "shared"'),
            "providers.demo.integration",
            "personal",
        ),
        (
            ("[tables.remote_incidents]", '[tables."remote incidents"]'),
            "tables.remote incidents",
            "identifier",
        ),
    ],
)
def test_bad_config_names_file_and_key(
    write_config: Callable[..., Path], change: tuple[str, str], key: str, words: str
) -> None:
    old, new = change
    assert old in GOOD
    path = write_config(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    assert words in str(err)
    assert str(path) in str(err)
    assert "s3cr3t" not in str(err)


def test_missing_file_and_bad_toml(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(write_config("[tables\nx = 1"))
    assert info.value.file is not None


def test_secret_looking_static_param_refused(write_config: Callable[..., Path]) -> None:
    text = GOOD.replace(
        'page_size_param = "sysparm_limit"',
        'page_size_param = "sysparm_limit"\nparams = { api_key = "abc" }',
    )
    with pytest.raises(ConfigError, match="secret") as info:
        load_config(write_config(text))
    assert info.value.key == "tables.remote_incidents.params.api_key"
    assert "abc" not in str(info.value)


def test_bearer_provider_and_defaults(write_config: Callable[..., Path]) -> None:
    cfg = load_config(
        write_config(
            """
            [providers.gh]
            token_env = "GITHUB_TOKEN"
            integration = "system"
            [tables.issues]
            url = "https://api.github.com/repos/acme/widgets/issues"
            pagination = "link"
            [tables.issues.columns]
            id = "INTEGER"
            """
        )
    )
    assert cfg.providers["gh"].auth == "bearer"
    assert cfg.tables["issues"].provider == "gh"  # the only provider is the default
    assert cfg.tables["issues"].rows_path == ()
    assert cfg.tables["issues"].cache_ttl == 30.0


def test_every_config_key_is_in_the_readme() -> None:
    """The README's config reference names every key the parser accepts."""
    from remotetables.config import providers, tables
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    settings = {
        "token_store", "key_file", "cache_max_bytes", "consent", "consent_timeout",
        "writes_in_transaction",
    }  # fmt: skip
    pagination = {
        "style", "next_path", "cursor_path", "cursor_param", "offset_param", "page_param", "first_page",
        "total_path", "total_pages_path", "total_header", "next_header", "cursor_header", "has_more_path",
        "offset_by",
    }  # fmt: skip
    write = {"insert", "update", "delete", "body_path", "idempotency_header", "method", "url"}
    keys = (
        set(providers._PROVIDER_KEYS) | set(tables._TABLE_KEYS) | set(tables._COLUMN_KEYS)
        | settings | pagination | write
    )  # fmt: skip
    missing = sorted(k for k in keys if f"`{k}`" not in readme and f"{k} =" not in readme)
    assert not missing, f"config keys not documented in README.md: {missing}"


def test_token_header_is_for_bearer_providers_only(write_config: Callable[..., Path]) -> None:
    text = GOOD.replace(
        'client_id = "remotetables"', 'client_id = "remotetables"\ntoken_header = "X-API-Key"'
    )
    with pytest.raises(ConfigError, match="only a bearer provider") as info:
        load_config(write_config(text))
    assert info.value.key == "providers.demo.token_header"
    bearer = GOOD.replace(
        'issuer = "https://auth.example.com"\nclient_id = "remotetables"\nscopes = ["incidents.read"]',
        'token_env = "KEY"\ntoken_header = "X-API-Key"\nheaders = { "x-api-key" = "literal" }',
    )
    with pytest.raises(ConfigError, match="carries the token") as info:
        load_config(write_config(bearer))
    assert info.value.key == "providers.demo.headers.x-api-key"


def test_writes_in_transaction_is_a_boolean_setting(write_config: Callable[..., Path]) -> None:
    assert load_config(write_config(GOOD)).settings.writes_in_transaction is False
    on = load_config(write_config("[settings]\nwrites_in_transaction = true\n" + GOOD))
    assert on.settings.writes_in_transaction is True
    with pytest.raises(ConfigError, match="must be true or false") as info:
        load_config(write_config('[settings]\nwrites_in_transaction = "yes"\n' + GOOD))
    assert info.value.key == "settings.writes_in_transaction"


def test_refresh_lease_must_outlast_a_refresh(write_config: Callable[..., Path]) -> None:
    """Issue 16 #5: a refresh that can outlive its lease lets a second worker replay the same
    refresh token; the config says so when it loads."""
    cfg = load_config(write_config(GOOD))
    assert (cfg.settings.refresh_lease, cfg.settings.token_store_timeout) == (120.0, 10.0)
    slow = GOOD.replace(
        'client_id = "remotetables"',
        'client_id = "remotetables"\noauth_timeout = 60\nread_timeout = 60',
    )
    with pytest.raises(ConfigError) as info:
        load_config(write_config(slow))
    text = str(info.value)
    assert "settings.refresh_lease" in text and "provider demo" in text and "140 s" in text
    ok = "[settings]\nrefresh_lease = 140\n" + slow
    assert load_config(write_config(ok)).settings.refresh_lease == 140.0
    short = "[settings]\nrefresh_lease = 20\ntoken_store_timeout = 1\n" + GOOD.replace(
        'client_id = "remotetables"',
        'client_id = "remotetables"\noauth_timeout = 5',
    )
    assert load_config(write_config(short)).settings.refresh_lease == 20.0
    with pytest.raises(ConfigError, match="token_store_timeout"):
        load_config(write_config("[settings]\ntoken_store_timeout = 0\n" + GOOD))
