"""What the CLI's commands share: config lookup, library errors as click errors, the runtime,
and the --config / --consent options."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import apsw
import click

from remotetables import errors
from remotetables.config import Config, load_config
from remotetables.session import Runtime

__all__ = ["CONSENT_MODES", "config_option", "consent_option", "lock_user_option", "user_option"]

CONSENT_MODES = ("browser", "prompt", "device", "auto")


# ---------------------------------------------------------------- shared plumbing


def _hint(exc: errors.Error) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, errors.NoSessionUser):
        text += "\nSay who you are with --user NAME."
    elif (
        isinstance(exc, errors.ConsentRequired)
        and getattr(exc, "provider", None)
        and "remotetables login" not in text
    ):
        user = f" --user {exc.user}" if exc.user else ""
        text += f"\nConnect first with: remotetables login {exc.provider}{user}"
    elif isinstance(exc, errors.ConsentFailed | errors.ConsentDenied):
        text += "\nNothing was stored; run the command again to retry."
    return text


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Library errors -> ClickException with the library's (secret-free) message."""
    try:
        yield
    except errors.Error as exc:
        raise click.ClickException(_hint(exc)) from None
    except apsw.Error as exc:
        raise click.ClickException(f"SQLite: {exc}") from None
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise click.ClickException(f"{exc.strerror or exc}{where}") from None


def _config(path: str | None) -> Config:
    if path is None:
        if Path("remotetables.toml").exists():
            path = "remotetables.toml"
        else:
            raise click.ClickException(
                "no configuration: pass --config FILE, set REMOTETABLES_CONFIG, or create "
                "./remotetables.toml (the README's Quick start shows one). To try the demo's "
                "servers, run `remotetables demo --serve` and pass the config it prints with -c"
            )
    with _errors():
        return load_config(path)


def _consent(mode: str | None, cfg: Config) -> str:
    """The CLI has a person in front of it: a web app's `raise` mode becomes `auto`."""
    chosen = mode or cfg.settings.consent
    return "auto" if chosen == "raise" else chosen


@contextlib.contextmanager
def _runtime(cfg: Config) -> Iterator[Runtime]:
    rt = Runtime(cfg, environ=dict(os.environ))
    try:
        yield rt
    finally:
        rt.close()


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="REMOTETABLES_CONFIG",
    help="TOML config [env REMOTETABLES_CONFIG; default ./remotetables.toml].",
)
consent_option = click.option(
    "--consent",
    type=click.Choice(CONSENT_MODES),
    help="How a user without a token consents [default: the config's, else auto].",
)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


user_option = click.option("--user", "-u", help="Query as this user (whose token and rows).")
lock_user_option = click.option(
    "--lock-user",
    is_flag=True,
    help="SQL may not change the user (set_user, .user) nor ATTACH files, load extensions or "
    "use file PRAGMAs; the shell then offers only dot-commands that reach no other file.",
)
