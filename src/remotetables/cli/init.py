"""``remotetables init SERVICE``: write a ready-made config for a service people use.

The presets are TOML files in ``cli/presets/``: tables, pagination, pushdown, the provider with
the service's OAuth endpoints and scopes, placeholders (``YOUR_...``) for the instance and the
client id, and comments that say where to register the OAuth app. No secret is ever in them:
client secrets and API keys are read from environment variables.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

__all__ = ["PRESETS", "init", "preset_text"]

# name -> what it covers (the order `init --list` shows)
PRESETS = {
    "servicenow": "ServiceNow Table API: incident, problem, change_request, sys_user, task",
    "github": "GitHub REST API: repos, issues, pulls, commits",
    "jira": "Jira Cloud: issues by JQL (POST search), projects",
    "msgraph": "Microsoft Graph: users, groups, messages, events",
    "google_calendar": "Google Calendar: events of the primary calendar",
    "slack": "Slack Web API: conversations, users",
    "stripe": "Stripe: customers, charges (API key)",
}
ALIASES = {"jira_cloud": "jira", "graph": "msgraph", "microsoft_graph": "msgraph",
           "gcal": "google_calendar", "calendar": "google_calendar"}  # fmt: skip


def preset_text(name: str) -> str:
    """The TOML text of preset ``name`` (aliases accepted); KeyError if there is none."""
    key = ALIASES.get(name.lower().replace("-", "_"), name.lower().replace("-", "_"))
    if key not in PRESETS:
        raise KeyError(name)
    return (resources.files("remotetables.cli") / "presets" / f"{key}.toml").read_text("utf-8")


@click.command()
@click.argument("service", required=False)
@click.option("--list", "list_", is_flag=True, help="List the services there are presets for.")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default="remotetables.toml",
    show_default=True,
    help="File to write ('-': standard output).",
)
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def init(service: str | None, list_: bool, out: str, force: bool) -> None:
    """Write a ready-made config for SERVICE (see --list): tables, paging, filters and the
    provider's OAuth endpoints and scopes, with placeholders to fill in."""
    if list_ or service is None:
        if service is None and not list_:
            raise click.UsageError("name a SERVICE, or --list to see them")
        width = max(map(len, PRESETS))
        for name, what in PRESETS.items():
            click.echo(f"{name:<{width}}  {what}")
        return
    try:
        text = preset_text(service)
    except KeyError:
        raise click.BadParameter(
            f"no preset for {service!r}; there are: {', '.join(PRESETS)}", param_hint="SERVICE"
        ) from None
    if out == "-":
        click.echo(text, nl=False)
        return
    path = Path(out)
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite it, or --out FILE")
    path.write_text(text, encoding="utf-8")
    placeholders = sorted({w for w in text.split('"') if "YOUR_" in w and " " not in w})
    click.echo(f"wrote {path}: the {service} preset ({PRESETS.get(service, service)})")
    if placeholders:
        click.echo("fill in: " + ", ".join(placeholders) + " (see the comments at its top)")
    click.echo(f"then: remotetables check -c {path}")
