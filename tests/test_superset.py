"""The Superset engine spec (remotetables.bi.superset) and what it is built on (remotetables.bi)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from remotetables.bi import impersonated, oauth2_provider, refuse_attach
from remotetables.errors import ProgrammingError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUPERSET_PYTHON = "/opt/remotetables-superset/bin/python"  # scripts/install-superset.sh


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH 'x.db' AS x",
        "  attach database 'x' as y",
        "SELECT 1; DETACH x",
        "/* c */ ATTACH 'a' AS b",
    ],
)
def test_attach_is_refused(sql: str) -> None:
    with pytest.raises(ProgrammingError, match="ATTACH and DETACH are disabled"):
        refuse_attach(sql)


@pytest.mark.parametrize(
    "sql", ["SELECT 'ATTACH x'", "SELECT 1 -- ; ATTACH", 'SELECT "attach" FROM t', "SELECT 1"]
)
def test_other_statements_pass(sql: str) -> None:
    refuse_attach(sql)


def test_impersonation_makes_the_superset_user_the_url_user() -> None:
    url = sa.make_url("remotetables:////srv/work.db?config=/srv/rt.toml&consent=raise")
    new, kwargs = impersonated(url, "alice", {})
    assert kwargs == {"connect_args": {"lock_user": True}}  # SQL cannot switch to another user
    assert new.username == "alice" and new.query == url.query
    assert impersonated(url, None, {}) == (url, {})


def test_the_entry_point_names_the_spec() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"]["superset.db_engine_specs"]
    assert eps == {"remotetables": "remotetables.bi.superset:RemoteTablesEngineSpec"}


def _superset_python() -> str:
    """The Python of an environment with Apache Superset (scripts/install-superset.sh)."""
    path = os.environ.get("REMOTETABLES_SUPERSET_PYTHON") or DEFAULT_SUPERSET_PYTHON
    if not Path(path).exists():
        pytest.skip(
            "Apache Superset is not installed: it cannot share this environment (apache-superset "
            "6.1 pins sqlalchemy<2 and pandas<2.2; remotetables' dialect tests use SQLAlchemy 2 "
            "and pandas 3); run bash scripts/install-superset.sh (a venv of its own, about 850 MB) "
            "or set REMOTETABLES_SUPERSET_PYTHON"
        )
    return path


def test_superset_uses_the_spec_with_impersonation(tmp_path: Path) -> None:
    """In Superset's own app: the entry point gives our spec, a Database with impersonation
    queries as the Superset user, SQLite's day grain works, the remote table is listed in the
    temp schema, ATTACH is refused; Superset's own OAuth2 flow against the demo authorization
    server (prompt, consent, its callback route) gives a token that the next query uses."""
    python = _superset_python()
    # the entry points as pyproject.toml declares them, for a source tree that is not installed
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    dist = tmp_path / "ep" / "remotetables_source-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: remotetables-source\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
            for group, eps in meta.items()
            if group in ("superset.db_engine_specs", "sqlalchemy.dialects")
        )
    )
    config = tmp_path / "superset_config.py"
    config.write_text(
        f"SECRET_KEY = {secrets.token_hex(16)!r}\n"
        f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{tmp_path / 'superset.db'}'\n"
        "DATABASE_OAUTH2_REDIRECT_URI = 'http://127.0.0.1:8088/api/v1/database/oauth2/'\n"
        + "".join(
            f"{name} = {{'CACHE_TYPE': 'NullCache'}}\n"
            for name in (
                "CACHE_CONFIG",
                "DATA_CACHE_CONFIG",
                "FILTER_STATE_CACHE_CONFIG",
                "EXPLORE_FORM_DATA_CACHE_CONFIG",
            )
        )
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), str(tmp_path / "ep")]),
        "SUPERSET_CONFIG_PATH": str(config),
    }
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [python, str(ROOT / "tests" / "servers" / "superset_check.py"), str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result == {
        "spec": "remotetables.bi.superset.RemoteTablesEngineSpec",
        "db_engine_spec": "RemoteTablesEngineSpec",
        "current_user": "alice",
        "set_user": "NotAuthorized",  # the connection is locked to the Superset user
        "days": [1, 30],
        "tables": ["inc"],
        "attach": "ProgrammingError: ATTACH and DETACH are disabled for remotetables databases "
        "in this BI server",
        "oauth2": {
            "oauth2_enabled": True,
            "first": "prompt",  # alice has no token: Superset's authorize prompt
            "prompt_origin": True,  # ... at the authorization server
            "pkce": True,
            "callback_status": 200,  # Superset's callback route exchanged the code
            "rows": "a1,a2",  # the next query: alice's rows, with the token Superset handed in
            "api_users": ["alice"],
            "bob": "prompt",  # another user is asked, never given alice's token
        },
    }


def test_the_oauth2_provider_is_the_only_personal_one_or_named(
    write_config: Callable[..., Path],
) -> None:
    one = write_config(
        '[providers.sn]\nclient_id = "c"\nissuer = "https://auth.example.com"\n'
        '[providers.key]\nauth = "bearer"\ntoken_env = "K"\n'
    )
    url = sa.make_url(f"remotetables:////srv/w.db?config={one}")
    assert oauth2_provider(url, {}) == "sn"
    assert oauth2_provider(url, {"remotetables_provider": "other"}) == "other"
    two = write_config(
        '[providers.a]\nclient_id = "c"\nissuer = "https://a.example.com"\n'
        '[providers.b]\nclient_id = "c"\nissuer = "https://b.example.com"\n'
    )
    with pytest.raises(ProgrammingError, match=r"2 providers with personal OAuth tokens \(a, b\)"):
        oauth2_provider(sa.make_url(f"remotetables:////srv/w.db?config={two}"), {})
