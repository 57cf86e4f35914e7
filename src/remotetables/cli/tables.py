"""``remotetables tables``: what the config defines, and what each column can push to the API."""

from __future__ import annotations

import click

from remotetables.cli.common import (
    _config,
    config_option,
)
from remotetables.config import TableSpec

__all__ = ["tables"]


def _describe(spec: TableSpec) -> list[tuple[str, str, str]]:
    from remotetables.pushdown import describe_columns

    pushed: dict[str, list[str]] = {}
    for _, name, _, op, param, _, _ in describe_columns(spec):
        if op is not None:
            pushed.setdefault(name, []).append(f"{op} -> {param}")
    out = []
    for col in spec.columns:
        notes = list(pushed.get(col.name, ()))
        if col.required:
            notes.append("required")
        if col.exact:
            notes.append("exact")
        path = ".".join(str(p) for p in col.path)
        if path and path != col.name and not col.path_param:
            notes.append(f"from {path}")
        out.append((col.name, col.type, "; ".join(notes)))
    return out


@click.command()
@config_option
def tables(config_path: str | None) -> None:
    """List the remote tables: columns, types and what is pushed down to the API."""
    from remotetables.errors import redact_url
    from remotetables.shell import format_table

    cfg = _config(config_path)
    if not cfg.tables:
        click.echo(f"no tables in {cfg.path}")
        return
    for i, spec in enumerate(cfg.tables.values()):
        provider = "none (public)" if spec.provider == "__none__" else spec.provider
        click.echo(("\n" if i else "") + f"{spec.name}  provider: {provider}")
        if spec.description:
            click.echo(f"  {spec.description}")
        click.echo(f"  GET {redact_url(spec.url)}  (pagination: {spec.pagination.style})")
        fixed = ", ".join(f"{k}={v}" for k, v in spec.params)
        if fixed:
            click.echo(f"  always sends: {fixed}")
        facts = []
        if spec.key:
            facts.append(f"key: {spec.key}")
        w = spec.write
        writes = [n for n, on in (("INSERT", w and w.insert), ("UPDATE", w and w.update),
                                  ("DELETE", w and w.delete)) if on]  # fmt: skip
        facts.append(f"writes: {', '.join(writes)}" if writes else "read-only")
        facts.append(f"rows cached {spec.cache_ttl:g} s" if spec.cache_ttl > 0 else "not cached")
        click.echo("  " + "; ".join(facts))
        table = format_table(["column", "type", "pushed down / source"], _describe(spec))
        click.echo("\n".join("  " + line for line in table.splitlines()))
