"""Config keys for which account signs in: prompt, login_hint, account, account_claim."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from remotetables.auth.account import must_sign_in
from remotetables.auth.store import MemoryTokenStore
from remotetables.config import load_config
from remotetables.errors import ConfigError

BASE = """
[providers.idp]
issuer = "https://idp.example.com"
client_id = "remotetables"
scopes = ["openid"]
{extra}
[tables.t]
provider = "idp"
url = "https://api.example.com/items"
rows = ""
pagination = "none"
[tables.t.columns]
id = "TEXT"
"""


def test_the_keys_parse(write_config: Callable[..., Path]) -> None:
    extra = (
        'prompt = "always"\nlogin_hint = "{user}@example.com"\n'
        'account = "{user}@Example.com"\naccount_claim = "email"\n'
    )
    p = load_config(write_config(BASE.format(extra=extra))).providers["idp"]
    assert (p.prompt, p.account_claim) == ("always", "email")
    assert p.login_hint is not None and p.expand(p.login_hint, "bob") == "bob@example.com"
    assert p.account is not None and p.expand(p.account, "bob") == "bob@Example.com"
    default = load_config(write_config(BASE.format(extra=""))).providers["idp"]
    assert (default.prompt, default.login_hint, default.account) == ("auto", None, None)


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('prompt = "login"', "providers.idp.prompt", "auto"),
        ('login_hint = "{username}@example.com"', "providers.idp.login_hint", "{user}"),
        ('account = "{user!r}"', "providers.idp.account", "{user}"),
        ('account = "{user:>9}"', "providers.idp.account", "{user}"),
        ('account = "{0}"', "providers.idp.account", "{user}"),
        ('account = "{user"', "providers.idp.account", "{user}"),
        ('account = "  "', "providers.idp.account", "{user}"),
        ('account_claim = "e mail"', "providers.idp.account_claim", "claim name"),
        (
            'login_hint = "{user}"\nextra_authorize_params = { login_hint = "x" }',
            "providers.idp.extra_authorize_params.login_hint",
            "keep one",
        ),
        (
            'extra_authorize_params = { nonce = "x" }',
            "providers.idp.extra_authorize_params.nonce",
            "set by remotetables",
        ),
        (
            'integration = "system"\naccount = "{user}@example.com"',
            "providers.idp.account",
            "no user",
        ),
    ],
)
def test_bad_values_name_the_key(
    write_config: Callable[..., Path], extra: str, key: str, words: str
) -> None:
    path = write_config(BASE.format(extra=extra))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and words in str(info.value)


def test_a_bearer_provider_has_no_accounts(write_config: Callable[..., Path]) -> None:
    cfg = BASE.replace(
        'issuer = "https://idp.example.com"\nclient_id = "remotetables"\nscopes = ["openid"]',
        'token_env = "API_TOKEN"',
    )
    with pytest.raises(ConfigError) as info:
        load_config(write_config(cfg.format(extra='account = "{user}"')))
    assert info.value.key == "providers.idp.account"


@pytest.mark.parametrize(
    ("prompt", "last", "user", "expected"),
    [
        ("auto", None, "alice", True),  # nobody known: the browser may hold anyone's session
        ("auto", "alice", "alice", False),
        ("auto", "alice", "bob", True),
        ("always", "alice", "alice", True),
        ("never", "alice", "bob", False),
    ],
)
def test_must_sign_in(
    write_config: Callable[..., Path], prompt: str, last: str | None, user: str, expected: bool
) -> None:
    p = load_config(write_config(BASE.format(extra=f'prompt = "{prompt}"'))).providers["idp"]
    store = MemoryTokenStore()
    assert p.client_id is not None
    store.set_last_signin(p.token_key_issuer, p.client_id, last)
    assert must_sign_in(store, p, user) is expected
