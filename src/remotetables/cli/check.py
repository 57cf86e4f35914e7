"""``remotetables check``: the config, each provider's authorization server, each table's API
and the token store, one line each, ``ok`` or ``PROBLEM`` with the reason in plain words.

A table's API gets one cheap request: a GET of its URL with its fixed parameters and a page
size of 1, sent once (no retries). It carries a token only where the config gives one without
asking anybody (a ``bearer`` provider's environment variable); an OAuth table is asked without
a token, and any HTTP answer (401 as well) shows that its API is up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import click
import httpx2

from remotetables import errors
from remotetables.cli.common import _config, _plural, _runtime, config_option
from remotetables.config import ProviderConfig, TableSpec
from remotetables.errors import redact_url
from remotetables.http import RequestContext
from remotetables.pagination import build_url, fill_body
from remotetables.session import Runtime, StaticBearer

__all__ = ["check", "check_provider", "check_table"]


@click.command()
@config_option
def check(config_path: str | None) -> None:
    """Validate the config; reach every provider's discovery document and every table's API;
    open the token store."""
    from remotetables.cli.tokens import check_token_store

    cfg = _config(config_path)
    click.echo(
        f"config {cfg.path}: valid ({_plural(len(cfg.providers), 'provider')}, "
        f"{_plural(len(cfg.tables), 'table')})"
    )
    bad: dict[str, int] = {"provider": 0, "table": 0}
    with _runtime(cfg) as rt:
        for p in cfg.providers.values():
            ok, text = check_provider(rt, p)
            bad["provider"] += not ok
            click.echo(f"provider {p.name}: {'ok' if ok else 'PROBLEM'}: {text}")
        for spec in cfg.tables.values():
            ok, text = check_table(rt, spec)
            bad["table"] += not ok
            click.echo(f"table {spec.name}: {'ok' if ok else 'PROBLEM'}: {text}")
        store = check_token_store(rt)
    parts = [_plural(n, kind) for kind, n in bad.items() if n]
    if store is not None:
        name, ok, text = store
        click.echo(f"token store {name}: {'ok' if ok else 'PROBLEM'}: {text}")
        if not ok:
            parts.append("the token store")
    if parts:
        raise click.ClickException(f"{' and '.join(parts)} with a problem (see above)")
    click.echo("all good")


def check_provider(rt: Runtime, p: ProviderConfig) -> tuple[bool, str]:
    if p.auth == "none":
        return True, "no authentication"
    if p.auth == "bearer":
        if rt.environ.get(p.token_env or ""):
            return True, f"static token from ${p.token_env} (set)"
        return False, f"environment variable {p.token_env} is not set (it holds the API token)"
    try:
        meta = rt.oauth_service().client(p).metadata()
    except errors.ProviderUnavailable as exc:
        where = f" at {p.issuer}" if p.issuer else ""
        return False, f"cannot reach the authorization server{where}: {exc}"
    except errors.Error as exc:
        return False, str(exc)
    source = (
        f"discovery at {p.issuer}" if p.issuer and not p.token_endpoint else "configured endpoints"
    )
    return True, f"{source}; token endpoint {meta.token_endpoint}"


def _probe_url(spec: TableSpec) -> str:
    """The table's URL, its fixed parameters, and a page of one row where it has a page size."""
    params: list[tuple[str, str]] = list(spec.params)
    if spec.page_size_param:
        params.append((spec.page_size_param, "1"))
    return build_url(spec.url, params)


def check_table(rt: Runtime, spec: TableSpec) -> tuple[bool, str]:
    """One GET of the table's first row (a POST listing: its body with a page of one row):
    whether its API answers, and how."""
    path_values = [c.name for c in spec.columns if c.path_param]
    if path_values:  # a URL with {placeholders} names no resource until a query fills them
        return True, (
            f"not probed: its URL needs {', '.join(path_values)} (queries must give WHERE "
            + " AND ".join(f"{n} = ..." for n in path_values)
            + ")"
        )
    provider = None if spec.provider == "__none__" else rt.provider(spec.provider)
    kind = "none" if provider is None else provider.auth
    body = None
    if spec.body is not None:
        sized = [*spec.params, *([(spec.page_size_param, "1")] if spec.page_size_param else [])]
        body = fill_body(spec.body, sized, {spec.page_size_param or "": "int"})
    url = _probe_url(spec) if body is None else spec.url
    where = redact_url(url)
    policy = dataclasses.replace(rt.retry_policy(spec.provider), max_retries=0)
    policy = dataclasses.replace(
        policy,
        connect_timeout=min(policy.connect_timeout, 10.0),
        read_timeout=min(policy.read_timeout, 20.0),
        request_timeout=min(policy.request_timeout, 30.0),
    )
    ctx = RequestContext()  # the line names the table already
    auth: httpx2.Auth | None = None
    token = ""
    if provider is not None and kind == "bearer" and rt.environ.get(provider.token_env or ""):
        creds = rt.credentials(spec.provider)
        assert isinstance(creds, StaticBearer)
        auth = creds.static_auth()
        token = f" with the token from ${provider.token_env}"
    headers = rt.extra_headers(spec.provider)
    try:
        answer = rt.http.request_json(
            spec.method, url, ctx=ctx, policy=policy, auth=auth, headers=headers, json_body=body
        )
    except errors.TransportError as exc:
        return False, f"cannot reach the API: {exc}"
    except errors.RemoteError as exc:
        return _judge(exc.status_code, str(exc), kind, token, spec)
    except errors.Error as exc:  # refused before sending (a URL the token may not go to ...)
        return False, str(exc)
    return True, f"{spec.method} {where}{token} answered {answer.status}"


def _judge(
    status: int | None, text: str, kind: str, token: str, spec: TableSpec
) -> tuple[bool, str]:
    if status is None:  # an answer that is not JSON, too many redirects ...
        return False, text  # the error says what the answer was (a refused static token too)
    if kind == "oauth" and status in (401, 403):
        return True, (
            f"the API answers ({status} without a token, as expected: queries send each "
            "user's token)"
        )
    required: Sequence[str] = [c.name for c in spec.columns if c.required]
    if status in (400, 422) and required:
        return True, (
            f"the API answers ({status} without the required "
            f"{', '.join(required)}: queries must give WHERE {required[0]} = ...)"
        )
    if status in (401, 403) and not token:
        return False, f"the API wants credentials and the config gives none: {text}"
    return False, text  # the error says what the answer was (a refused static token too)
