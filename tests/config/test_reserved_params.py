"""extra_authorize_params / extra_token_params may not set what the OAuth protocol owns: the
config is refused when it is loaded (naming the file and the key), not at the first request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from remotetables.auth.oauth import OAuthClient
from remotetables.cli import main
from remotetables.config import load_config
from remotetables.demo.authserver.server import DemoAuthServer
from remotetables.errors import ConfigError
from tests.auth.test_oauth import settings

AUTHORIZE = [
    "state",
    "redirect_uri",
    "scope",
    "client_id",
    "response_type",
    "code_challenge",
    "code_challenge_method",
]
TOKEN = [
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "redirect_uri",
    "client_id",
    "client_secret",
]
PROVIDER = """
[providers.demo]
issuer = "{issuer}"
client_id = "remotetables-demo"
{what} = { {param} = "x" }
"""


@pytest.mark.parametrize(
    ("what", "param"),
    [("extra_authorize_params", p) for p in AUTHORIZE] + [("extra_token_params", p) for p in TOKEN],
)
def test_reserved_param_is_refused_at_load(
    write_config: Callable[..., Path], what: str, param: str
) -> None:
    path = write_config(PROVIDER, issuer="http://127.0.0.1:9", what=what, param=param)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key == f"providers.demo.{what}.{param}"
    assert str(path) in str(info.value) and f"providers.demo.{what}.{param}" in str(info.value)


def test_other_extra_params_load(write_config: Callable[..., Path]) -> None:
    path = write_config(
        """
        [providers.demo]
        issuer = "http://127.0.0.1:9"
        client_id = "remotetables-demo"
        extra_authorize_params = { prompt = "consent", audience = "api" }
        extra_token_params = { audience = "api", resource = "https://api.example.test/" }
        """
    )
    p = load_config(path).providers["demo"]
    assert dict(p.extra_authorize_params) == {"prompt": "consent", "audience": "api"}
    assert dict(p.extra_token_params)["resource"] == "https://api.example.test/"


def test_check_refuses_the_config_not_the_provider(write_config: Callable[..., Path]) -> None:
    with DemoAuthServer() as srv:
        path = write_config(
            PROVIDER, issuer=srv.issuer, what="extra_authorize_params", param="state"
        )
        env = {"REMOTETABLES_NO_KEYRING": "1", "REMOTETABLES_CONFIG": ""}
        result = CliRunner().invoke(main, ["check", "-c", str(path)], env=env)
    assert result.exit_code == 1
    assert "valid" not in result.output and "provider demo" not in result.output
    assert f"{path}, key 'providers.demo.extra_authorize_params.state'" in result.output


@pytest.mark.parametrize("param", TOKEN)
def test_settings_built_in_code_are_still_checked(param: str) -> None:
    """Settings that skip config loading meet the same rule when the client is built."""
    with pytest.raises(ConfigError, match="extra token parameters may not set"):
        OAuthClient(settings(extra_token_params={param: "x"}), httpx2.Client())
