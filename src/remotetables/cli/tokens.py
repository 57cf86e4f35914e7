"""The token commands of the CLI: login, logout, tokens and tokens migrate.

:mod:`remotetables.cli` adds them to the ``remotetables`` group.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from remotetables import errors
from remotetables.auth.store import TokenStore
from remotetables.auth.store.migrate import MigrationResult, migrate_tokens
from remotetables.cli.common import (
    _config,
    _consent,
    _errors,
    _runtime,
    config_option,
    consent_option,
)
from remotetables.config import Config, ProviderConfig
from remotetables.session import Runtime

__all__ = ["check_token_store", "login", "logout", "migrate_to_url", "tokens"]

# `tokens migrate -c FILE` as well as `tokens -c FILE migrate`; no envvar here, so that
# REMOTETABLES_CONFIG (read by the group) never overrides a -c given before the subcommand
_sub_config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML config [env REMOTETABLES_CONFIG; default ./remotetables.toml].",
)

owner_option = click.option("--user", "-u", help="Whose token (a user name of your choosing).")


def _provider(cfg: Config, name: str) -> ProviderConfig:
    p = cfg.providers.get(name)
    if p is None:
        known = ", ".join(sorted(cfg.providers)) or "none"
        raise click.ClickException(f"unknown provider {name!r} (configured: {known})")
    if p.auth != "oauth":
        raise click.ClickException(
            f"provider {name} uses auth = {p.auth!r}, not OAuth: there is nothing to log in to"
        )
    return p


def _subject(p: ProviderConfig, user: str | None, system: bool) -> str:
    from remotetables.auth.service import SYSTEM_SUBJECT

    if system:
        if p.integration != "system":
            raise click.ClickException(
                f"provider {p.name} uses personal integration (each user has a token): "
                "use --user NAME instead of --system"
            )
        return SYSTEM_SUBJECT
    if p.integration == "system":
        raise click.ClickException(
            f"provider {p.name} uses system integration (one shared token): use --system"
        )
    if not user:
        raise click.ClickException("say whose token this is with --user NAME")
    return user


def _when(ts: float | None) -> str:
    if ts is None:
        return "unknown"
    from remotetables.shell import local_time

    return local_time(ts, seconds=True)


def check_token_store(rt: Runtime) -> tuple[str, bool, str] | None:
    """For ``remotetables check``: open the configured token store and list its grants (reads
    only; no token is decrypted). Returns ``(store, ok, text)`` with the store named without
    a password, or None when no provider uses OAuth and no store is configured."""
    from remotetables.auth.store.factory import default_paths

    configured = rt.config.settings.token_store
    if not configured and not any(p.auth == "oauth" for p in rt.config.providers.values()):
        return None
    if configured and configured.startswith(("postgresql://", "postgres://")):
        try:
            from remotetables.auth.store.postgres import redact_url
        except ImportError:  # pragma: no cover - without the extra: no user name shown
            redact_url = errors.redact_url
        name = redact_url(configured)
    else:
        path = Path(os.path.expanduser(configured)) if configured else default_paths(rt.environ)[0]
        name = str(path)
        if not path.exists():  # opening it would create it (and maybe a key): not in a check
            return name, True, "not created yet (the first login creates it)"
    try:
        store = rt.oauth_service().store
        grants = store.list()
        check_key = getattr(store, "check_key", None)
        problem = check_key() if check_key is not None else None
    except (errors.Error, OSError) as exc:
        text = str(exc) or type(exc).__name__
        return name, False, text.removeprefix(f"token store {name}: ")
    if problem is not None:
        return name, False, problem
    if any(g.status == "active" for g in grants):
        return name, True, f"readable, {len(grants)} grant(s); the key decrypts them"
    return name, True, f"readable, {len(grants)} grant(s)"


@click.command()
@click.argument("provider")
@config_option
@owner_option
@click.option("--system", is_flag=True, help="The shared token of a system-integration provider.")
@consent_option
def login(
    provider: str, config_path: str | None, user: str | None, system: bool, consent: str | None
) -> None:
    """Connect a user (or the system) to a provider: consent now, token stored encrypted."""
    cfg = _config(config_path)
    p = _provider(cfg, provider)
    subject = _subject(p, user, system)
    who = "the system" if system else subject
    with _errors(), _runtime(cfg) as rt:
        tokens = rt.oauth_service().login(p, subject, _consent(consent, cfg))
    click.echo(
        f"Connected {who} to {provider}"
        + (f" as {tokens.account.name}" if tokens.account else "")
        + f". Access token expires {_when(tokens.expires_at)}; "
        f"scopes: {tokens.scope or 'as granted'}; "
        f"refresh token: {'yes' if tokens.refresh_token else 'no'}."
    )


@click.command()
@click.argument("provider")
@config_option
@owner_option
@click.option("--system", is_flag=True, help="The shared token of a system-integration provider.")
def logout(provider: str, config_path: str | None, user: str | None, system: bool) -> None:
    """Revoke a user's (or the system's) token at the provider, then delete it here."""
    cfg = _config(config_path)
    p = _provider(cfg, provider)
    subject = _subject(p, user, system)
    who = "the system" if system else subject
    with _errors(), _runtime(cfg) as rt:
        svc = rt.oauth_service()
        if svc.store.get(svc.key(p, subject)) is None:
            click.echo(f"{who} has no token for {provider}: nothing to do.")
            return
        revoked = svc.logout(p, subject)
        left = svc.store.get(svc.key(p, subject))
    if revoked:
        click.echo(f"Revoked {who}'s token at {provider} and deleted it here.")
    elif left is not None:
        click.echo(
            f"{provider} could not confirm the revocation right now. {who}'s token can no longer be "
            "used here; it is kept (encrypted) only to retry the revocation, which the next "
            "`remotetables login`, `logout` or `tokens` does."
        )
    else:
        click.echo(
            f"Deleted {who}'s token here. {provider} has no revocation endpoint (RFC 7009): revoke "
            "the app in your account there to be sure."
        )


@click.group(invoke_without_command=True)
@config_option
@click.pass_context
def tokens(ctx: click.Context, config_path: str | None) -> None:
    """Who has a token for which provider: account, expiry, scopes (never the tokens)."""
    from remotetables.shell import format_table, token_rows

    ctx.obj = config_path
    if ctx.invoked_subcommand is not None:
        return
    cfg = _config(config_path)
    with _errors(), _runtime(cfg) as rt:
        rt.oauth_service().retry_revocations()  # revocations a provider could not confirm earlier
        headers, rows = token_rows(rt)
    if not rows:
        click.echo("no tokens stored: run a query or `remotetables login PROVIDER --user NAME`")
        return
    click.echo(format_table(headers, rows))


@tokens.command("migrate")
@click.option(
    "--to",
    "url",
    required=True,
    envvar="REMOTETABLES_MIGRATE_TO",
    metavar="postgresql://USER@HOST/DB|FILE",
    help="Destination store: a PostgreSQL URL (keep the password in PGPASSWORD or ~/.pgpass, "
    "not on the command line) or a SQLite token store file, created if missing "
    "[env REMOTETABLES_MIGRATE_TO].",
)
@click.option(
    "--from",
    "source",
    metavar="FILE|postgresql://...",
    help="Store to read: a SQLite file or a PostgreSQL URL [default: the config's token_store].",
)
@click.option("--overwrite", is_flag=True, help="Replace grants the destination already has.")
@_sub_config_option
@click.pass_context
def tokens_migrate(
    ctx: click.Context, url: str, source: str | None, overwrite: bool, config_path: str | None
) -> None:
    """Copy the stored grants into another token store: PostgreSQL, or back to a SQLite file
    (re-encrypted; never clear text)."""
    from remotetables.auth.store.factory import is_postgres_url

    if not url.strip():
        raise click.UsageError("--to must be a postgresql:// URL or a token store file")
    cfg = _config(config_path or ctx.obj)
    with _errors(), _runtime(cfg) as rt:
        n, result = migrate_to_url(rt, url, source=source, overwrite=overwrite)
    if is_postgres_url(url):
        from remotetables.auth.store.postgres import redact_url

        shown = redact_url(url)
    else:
        shown = str(Path(os.path.expanduser(url)))
    click.echo(f"moved {n} grant(s) to {shown}")
    if result.kept_newer:
        names = ", ".join(f"{k.subject}@{k.provider}" for k in result.kept_newer)
        click.echo(
            f"kept {len(result.kept_newer)} because the copy there is newer (updated since; "
            f"never replaced, even with --overwrite): {names}"
        )
    if result.skipped_existing:
        names = ", ".join(f"{k.subject}@{k.provider}" for k in result.skipped_existing)
        click.echo(f"kept {len(result.skipped_existing)} already there (use --overwrite): {names}")
    if result.skipped_inactive:
        click.echo(f"skipped {len(result.skipped_inactive)} needing consent again")
    click.echo(
        f"now set settings.token_store to {'that URL' if is_postgres_url(url) else 'that file'} "
        "on every host (same key file)"
    )


def migrate_to_url(
    runtime: Runtime, url: str, *, source: Path | str | None = None, overwrite: bool = False
) -> tuple[int, MigrationResult]:
    """``remotetables tokens migrate --to WHERE [--from WHERE]``: from ``source`` (a SQLite
    file or a PostgreSQL URL; default: the runtime's configured store) to the store at ``url``:
    a PostgreSQL URL, or a SQLite file (created if missing), so grants can also go back from
    PostgreSQL to a file. Both are keyed from the runtime's key sources."""
    from remotetables.auth.store.factory import is_postgres_url, load_cipher, open_token_store

    settings = runtime.config.settings
    cipher = load_cipher(runtime.environ, settings.key_file)

    def open_at(where: str) -> TokenStore:
        return open_token_store(
            where,
            environ=runtime.environ,
            clock=runtime.clock,
            cipher=cipher,
            config_path=runtime.config.path,
            timeout=settings.token_store_timeout,
        )

    if source is not None:
        where = str(source)
        if not is_postgres_url(where) and not Path(os.path.expanduser(where)).exists():
            raise errors.TokenStoreError(f"token store {where} does not exist")
        src: TokenStore = open_at(where)
    else:
        src = runtime.oauth_service().store
    try:
        dst = open_at(url)
    except BaseException:
        if source is not None:
            src.close()
        raise
    result = MigrationResult()
    try:
        n = migrate_tokens(src, dst, overwrite=overwrite, result=result)
    finally:
        dst.close()
        if source is not None:
            src.close()
    return n, result
