"""``[providers.X]`` -> :class:`ProviderConfig`: how a provider authenticates, and its HTTP limits.

Secrets are never inline: a provider names the environment variables that hold them
(``client_secret_env``, ``token_env``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from remotetables.config.parse import _Ctx, _get, _only, _str_map, _url
from remotetables.config.types import ProviderConfig
from remotetables.errors import register_secret_param

_PROVIDER_KEYS = {
    "auth", "integration", "token_env", "issuer", "client_id", "client_secret_env",
    "authorization_endpoint", "token_endpoint", "revocation_endpoint",
    "device_authorization_endpoint", "scopes", "extra_authorize_params", "extra_token_params",
    "token_endpoint_auth_method", "grant", "send_scope_on_refresh", "redirect_uri",
    "api_origins", "headers", "connect_timeout", "read_timeout", "max_retries", "max_retry_wait",
    "request_timeout", "token_header", "token_prefix", "token_param",
    "prompt", "login_hint", "account", "account_claim", "max_response_bytes", "oauth_timeout",
}  # fmt: skip
PROMPT_MODES = ("auto", "always", "never")
# Parameters the OAuth client sets itself; extra_authorize_params / extra_token_params may not
# set them (auth/discovery.py checks them again when a client is built).
RESERVED_AUTHORIZE_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
        "nonce",
    }
)
RESERVED_TOKEN_PARAMS = frozenset(
    {
        "grant_type",
        "code",
        "code_verifier",
        "refresh_token",
        "device_code",
        "redirect_uri",
        "client_id",
        "client_secret",
    }
)
_SECRET_KEYS = {"client_secret", "token", "access_token", "refresh_token", "password", "api_key"}

# header names that carry credentials: their values never sit in the config
_CREDENTIAL_HEADER = re.compile(
    r"(token|secret|password|api[_-]?key|apikey|auth|cookie|credential|session|signature"
    r"|key$|subscription)",
    re.IGNORECASE,
)


def _provider(ctx: _Ctx, name: str, raw: Mapping[str, Any]) -> ProviderConfig:
    p = f"providers.{name}"
    for k in raw:
        if k in _SECRET_KEYS:
            env_key = "client_secret_env" if k == "client_secret" else "token_env"
            raise ctx.err(
                f"{p}.{k}",
                f"secrets are never written in the config: put it in an environment variable and name that variable with {env_key}",
            )
    _only(ctx, p, raw, _PROVIDER_KEYS)
    oauth_keys = ("issuer", "client_id", "token_endpoint", "authorization_endpoint")
    default_auth = (
        "oauth" if any(k in raw for k in oauth_keys) else "bearer" if "token_env" in raw else "none"
    )
    auth = _get(ctx, raw, p, "auth", str, default_auth)
    if auth not in ("none", "bearer", "oauth"):
        raise ctx.err(f"{p}.auth", "must be one of none, bearer, oauth")
    integration = _get(ctx, raw, p, "integration", str, "personal")
    if integration not in ("personal", "system"):
        raise ctx.err(f"{p}.integration", "must be 'personal' or 'system'")
    token_env = _get(ctx, raw, p, "token_env", str)
    token_header = _get(ctx, raw, p, "token_header", str, "Authorization")
    token_prefix = _get(
        ctx,
        raw,
        p,
        "token_prefix",
        str,
        "Bearer " if token_header.lower() == "authorization" else "",
    )
    token_param = _get(ctx, raw, p, "token_param", str)
    if token_param is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+", token_param):
            raise ctx.err(f"{p}.token_param", "must be a query parameter name")
        for k in ("token_header", "token_prefix"):
            if k in raw:
                raise ctx.err(
                    f"{p}.{k}",
                    "the token goes in the query parameter token_param, not in a header: set one",
                )
        register_secret_param(token_param)  # its value is redacted wherever a URL is shown
    for k in ("token_header", "token_prefix", "token_param"):
        if k in raw and auth != "bearer":
            raise ctx.err(
                f"{p}.{k}",
                "only a bearer provider (token_env) sets how its token is sent; OAuth uses Authorization: Bearer",
            )
    if not re.fullmatch(r"[A-Za-z0-9-]+", token_header):
        raise ctx.err(f"{p}.token_header", "must be an HTTP header name")
    if auth == "bearer" and not token_env:
        raise ctx.err(
            f"{p}.token_env", "a bearer provider needs token_env (the variable holding the token)"
        )
    client_id = _get(ctx, raw, p, "client_id", str)
    issuer = _get(ctx, raw, p, "issuer", str)
    endpoints = {
        k: _url(ctx, f"{p}.{k}", _get(ctx, raw, p, k, str))
        for k in (
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "device_authorization_endpoint",
        )
    }
    grant = _get(ctx, raw, p, "grant", str, "authorization_code")
    if grant not in ("authorization_code", "client_credentials"):
        raise ctx.err(f"{p}.grant", "must be 'authorization_code' or 'client_credentials'")
    if grant == "client_credentials" and integration != "system":
        raise ctx.err(
            f"{p}.grant",
            'client_credentials gives one shared token: it needs integration = "system"',
        )
    if auth == "oauth":
        if not client_id:
            raise ctx.err(f"{p}.client_id", "an OAuth provider needs client_id")
        if not issuer and not endpoints["token_endpoint"]:
            raise ctx.err(
                f"{p}.issuer", "an OAuth provider needs issuer (for discovery) or token_endpoint"
            )
        if not issuer and grant == "authorization_code" and not endpoints["authorization_endpoint"]:
            raise ctx.err(
                f"{p}.authorization_endpoint", "needed when no issuer is given for discovery"
            )
    if issuer is not None:
        _url(ctx, f"{p}.issuer", issuer)
    method = _get(ctx, raw, p, "token_endpoint_auth_method", str)
    if method is not None and method not in ("none", "client_secret_basic", "client_secret_post"):
        raise ctx.err(
            f"{p}.token_endpoint_auth_method",
            "must be none, client_secret_basic or client_secret_post",
        )
    scopes = _get(ctx, raw, p, "scopes", (list, str), [])
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not all(isinstance(s, str) for s in scopes):
        raise ctx.err(f"{p}.scopes", "must be a list of strings")
    extra = _str_map(
        ctx, f"{p}.extra_authorize_params", _get(ctx, raw, p, "extra_authorize_params", dict, {})
    )
    extra_token = _str_map(
        ctx, f"{p}.extra_token_params", _get(ctx, raw, p, "extra_token_params", dict, {})
    )
    for what, given, reserved in (
        ("extra_authorize_params", extra, RESERVED_AUTHORIZE_PARAMS),
        ("extra_token_params", extra_token, RESERVED_TOKEN_PARAMS),
    ):
        for k in given:
            if k in reserved:
                raise ctx.err(
                    f"{p}.{what}.{k}",
                    f"{k} is set by remotetables itself (OAuth protocol field); it cannot be "
                    f"overridden (reserved here: {', '.join(sorted(reserved))})",
                )
    prompt = _get(ctx, raw, p, "prompt", str, "auto")
    if prompt not in PROMPT_MODES:
        raise ctx.err(
            f"{p}.prompt",
            "must be auto (ask to sign in when the consent is for another user than the last "
            "one), always or never",
        )
    templates = {
        k: _template(ctx, f"{p}.{k}", _get(ctx, raw, p, k, str)) for k in ("login_hint", "account")
    }
    if templates["login_hint"] is not None and "login_hint" in extra:
        raise ctx.err(
            f"{p}.extra_authorize_params.login_hint",
            f"login_hint is also set as providers.{name}.login_hint: keep one",
        )
    for k, template in templates.items():
        if template is not None and integration == "system" and "{user}" in template:
            raise ctx.err(
                f"{p}.{k}",
                "a system integration has no user: write the account itself "
                '(e.g. "reporting@example.com"), without {user}',
            )
    account_claim = _get(ctx, raw, p, "account_claim", str)
    if account_claim is not None and not re.fullmatch(r"[A-Za-z0-9_.:\-]+", account_claim):
        raise ctx.err(
            f"{p}.account_claim", "must be a claim name such as email or preferred_username"
        )
    for k in ("prompt", "login_hint", "account", "account_claim"):
        if k in raw and (auth != "oauth" or grant == "client_credentials"):
            raise ctx.err(
                f"{p}.{k}",
                "only an OAuth provider whose users sign in (authorization code) has accounts",
            )
    headers = _str_map(ctx, f"{p}.headers", _get(ctx, raw, p, "headers", dict, {}))
    for h in dict(headers):
        if h.lower() in ("authorization", token_header.lower()):
            raise ctx.err(
                f"{p}.headers.{h}",
                "this header carries the token and is set by remotetables; never put credentials in headers",
            )
        if _CREDENTIAL_HEADER.search(h):
            raise ctx.err(
                f"{p}.headers.{h}",
                "looks like a credential: secrets are never written in the config; for a key "
                f'sent in a header use auth = "bearer", token_env = "VARIABLE", token_header = '
                f'"{h}", token_prefix = ""',
            )
    origins = _get(ctx, raw, p, "api_origins", list, [])
    for i, o in enumerate(origins):
        if not isinstance(o, str):
            raise ctx.err(f"{p}.api_origins[{i}]", "must be a string URL")
        _url(ctx, f"{p}.api_origins[{i}]", o)
    max_retries = _get(ctx, raw, p, "max_retries", int, 3)
    if not 0 <= max_retries <= 10:
        raise ctx.err(f"{p}.max_retries", "must be between 0 and 10")
    for k in (
        "connect_timeout",
        "read_timeout",
        "request_timeout",
        "max_retry_wait",
        "oauth_timeout",
    ):
        v = _get(ctx, raw, p, k, float, 1.0)
        if v <= 0:
            raise ctx.err(f"{p}.{k}", "must be > 0")
    max_response_bytes = _get(ctx, raw, p, "max_response_bytes", int, 64 * 1024 * 1024)
    if max_response_bytes < 1024:
        raise ctx.err(f"{p}.max_response_bytes", "must be at least 1024 (bytes)")
    return ProviderConfig(
        name=name,
        auth=auth,
        integration=integration,
        token_env=token_env,
        token_header=token_header,
        token_prefix=token_prefix,
        token_param=token_param,
        issuer=issuer,
        client_id=client_id,
        client_secret_env=_get(ctx, raw, p, "client_secret_env", str),
        scopes=tuple(scopes),
        extra_authorize_params=tuple(extra.items()),
        extra_token_params=tuple(extra_token.items()),
        token_endpoint_auth_method=method,
        system_grant=grant,
        send_scope_on_refresh=_get(ctx, raw, p, "send_scope_on_refresh", bool, False),
        redirect_uri=_url(ctx, f"{p}.redirect_uri", _get(ctx, raw, p, "redirect_uri", str)),
        api_origins=tuple(origins),
        headers=tuple(headers.items()),
        connect_timeout=_get(ctx, raw, p, "connect_timeout", float, 10.0),
        read_timeout=_get(ctx, raw, p, "read_timeout", float, 30.0),
        request_timeout=_get(ctx, raw, p, "request_timeout", float, 120.0),
        max_retries=max_retries,
        max_retry_wait=_get(ctx, raw, p, "max_retry_wait", float, 60.0),
        prompt=prompt,
        login_hint=templates["login_hint"],
        account=templates["account"],
        account_claim=account_claim,
        max_response_bytes=max_response_bytes,
        oauth_timeout=_get(ctx, raw, p, "oauth_timeout", float, 20.0),
        **endpoints,
    )


def _template(ctx: _Ctx, key: str, value: str | None) -> str | None:
    """A per-user template such as ``"{user}@example.com"``: ``{user}`` is the only field."""
    if value is None:
        return None
    try:
        bad = any(
            f is not None and (f != "user" or spec or conv)
            for _, f, spec, conv in string.Formatter().parse(value)
        )
        value.format(user="x")
    except (ValueError, IndexError, KeyError):
        bad = True
    if bad or not value.strip():
        raise ctx.err(
            key,
            'must be a text where {user} stands for the local user name, e.g. "{user}@example.com" '
            "(write {{ and }} for literal braces)",
        )
    return value


def _check_token_slots(ctx: _Ctx, providers: Mapping[str, ProviderConfig]) -> None:
    """Refuse two OAuth providers that would share their tokens.

    The token store keys a grant by (issuer, client_id, subject): the subject is the user for
    personal integration, one shared subject for system integration. Two OAuth providers with
    the same issuer (as the store names it) and client_id and the same integration therefore
    read and write the same grants whatever their grant type or scopes: one's login, logout
    and scopes would silently act on the other. A personal and a system provider on one client
    registration keep apart (their subjects differ) and are accepted.
    """
    seen: dict[tuple[str, str, str], str] = {}
    for name, p in providers.items():
        if p.auth != "oauth" or p.client_id is None:
            continue
        slot = (p.token_key_issuer, p.client_id, p.integration)
        first = seen.setdefault(slot, name)
        if first == name:
            continue
        who = "each user's token" if p.integration == "personal" else "the shared system token"
        raise ctx.err(
            f"providers.{name}",
            f"providers.{first} and providers.{name} both use client_id {p.client_id!r} at "
            f"{p.token_key_issuer!r} with {p.integration} integration, so they would share "
            f"{who} (grants are stored by issuer, client_id and user, whatever the grant or "
            "scopes): a login, logout or refresh of one would act on the other. Register a "
            "separate client for each provider, or keep one provider",
        )
