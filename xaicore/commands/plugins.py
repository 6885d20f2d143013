"""``xai plugins``: every installed distribution of the ``xai`` entry-point group."""

from __future__ import annotations

import json
from typing import Any

import click

from xaicore.commands.text import wrapped

COMMANDS: list = []


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """List installed plugin distributions: version, status, hooks, what each registered."""
    from xaicore.plugins.inventory import distributions

    root: Any = ctx.find_root().command  # the XaiGroup, which records who owns each command
    found = distributions(dict(root.command_owners))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for dist in found:
        status = "ok" if dist["status"] == "ok" else dist["status"].upper()
        click.echo(f"{dist['distribution']} {dist['version'] or '-'}  {status}")
        lines = [("entry points", dist["entry_points"]), ("disabled", dist["disabled"]),
                 ("hooks", dist["hooks"]),
                 *dist["registered"].items(), ("commands", dist["commands"])]
        for label, names in lines:
            if names:
                click.echo(wrapped(f"{label}: {', '.join(names)}"))
        for error in dist["errors"]:
            click.echo(wrapped(f"failed: {error}"))


COMMANDS.append(plugins_cmd)
