"""Two OAuth providers never share a token slot: such a config is refused when it is loaded.

The token store keys a grant by (issuer, client_id, subject); two providers that would map to
the same keys read and write each other's grants whatever their grant type or scopes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from remotetables.config import load_config
from remotetables.errors import ConfigError

ISSUER = "https://auth.example.com"

TABLE = """
[tables.t]
provider = "{first}"
url = "https://api.example.com/items"
rows = ""

[tables.t.columns]
id = "TEXT"
"""


def provider(name: str, body: str, *, issuer: str = ISSUER, client_id: str = "shared") -> str:
    return f'[providers.{name}]\nissuer = "{issuer}"\nclient_id = "{client_id}"\n{body}\n'


CC = 'integration = "system"\ngrant = "client_credentials"\nclient_secret_env = "SECRET"\n'


@pytest.mark.parametrize(
    ("first", "second", "integration"),
    [
        # an administrator's authorization-code login and a client-credentials grant
        (
            provider("shared", 'integration = "system"\nclient_secret_env = "SECRET"'),
            provider("cc", CC),
            "system",
        ),
        # read-only and read-write scopes of one client registration, per user
        (
            provider("ro", 'scopes = ["incidents.read"]'),
            provider("rw", 'scopes = ["incidents.read", "incidents.write"]'),
            "personal",
        ),
        # no issuer: the token endpoint names the server in the store
        (
            '[providers.a]\nclient_id = "shared"\ntoken_endpoint = "https://auth.example.com/token"\n'
            'authorization_endpoint = "https://auth.example.com/authorize"\n',
            '[providers.b]\nclient_id = "shared"\ntoken_endpoint = "https://auth.example.com/token"\n'
            'authorization_endpoint = "https://auth.example.com/authorize"\n'
            'scopes = ["other"]\n',
            "personal",
        ),
    ],
    ids=["system-code-and-client-credentials", "personal-scopes", "token-endpoint-only"],
)
def test_providers_sharing_a_token_slot_are_refused(
    write_config: Callable[..., Path], first: str, second: str, integration: str
) -> None:
    a = first.split("]")[0].removeprefix("[providers.")
    b = second.split("]")[0].removeprefix("[providers.")
    path = write_config(first + second + TABLE.replace("{first}", a))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    assert exc.file == str(path) and exc.key == f"providers.{b}"
    message = str(exc)
    assert f"providers.{a}" in message and f"providers.{b}" in message
    assert "client_id 'shared'" in message and f"{integration} integration" in message
    assert "would share" in message and "separate client" in message


@pytest.mark.parametrize(
    "second",
    [
        # personal and system keep apart: a user's grant and the shared one have other subjects
        provider("sys", CC),
        # another client registration on the same server
        provider("other", 'scopes = ["incidents.write"]', client_id="another"),
        # the same client id on another server
        provider("elsewhere", "", issuer="https://login.example.org"),
    ],
    ids=["personal-and-system", "another-client", "another-issuer"],
)
def test_providers_with_their_own_token_slots_are_accepted(
    write_config: Callable[..., Path], second: str
) -> None:
    first = provider("demo", 'scopes = ["incidents.read"]')
    cfg = load_config(write_config(first + second + TABLE.replace("{first}", "demo")))
    assert len(cfg.providers) == 2


def test_bearer_providers_have_no_token_slot(write_config: Callable[..., Path]) -> None:
    body = '[providers.{n}]\nauth = "bearer"\ntoken_env = "TOKEN"\n'
    text = body.replace("{n}", "a") + body.replace("{n}", "b") + TABLE.replace("{first}", "a")
    assert set(load_config(write_config(text)).providers) == {"a", "b"}
