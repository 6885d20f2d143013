"""The ``xai`` command. Each command imports what it needs when it runs, so ``--help`` stays fast."""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

import click

from xaicore.commands.text import wrapped
from xaicore.errors import XaiError

if TYPE_CHECKING:
    from xaicore.plugins.loading import PluginSource


class XaiGroup(click.Group):
    """Adds the plugins' commands, and turns an ``XaiError`` into a one-line message, never a traceback."""

    _plugin_commands_added = False
    #: command name -> the plugin that added it
    command_owners: dict[str, PluginSource] = {}

    def _add_plugin_commands(self) -> None:
        """Call every plugin's ``register_commands(cli)`` once; a hook that raises fails its plugin."""
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        from xaicore.plugins import loading as plugins
        from xaicore.plugins.budget import timed_hook

        try:
            plugins.load_plugins()
            for impl in plugins.pm.hook.register_commands.get_hookimpls():
                before = dict(self.commands)
                source = plugins.source_of(impl.plugin_name)
                allowed = source.distribution in plugins.allowed_replacements()
                try:
                    try:
                        timed_hook(source.label, "register_commands", impl.function, cli=self)
                    finally:
                        taken = [] if allowed else self._keep_owned(before)
                    for name, command in self.commands.items():
                        if before.get(name) is not command:
                            self.command_owners[name] = source
                    for name in taken:
                        owner = (self.command_owners[name].label if name in self.command_owners
                                 else "xai itself")
                        plugins.record_failure(plugins.PluginFailure(
                            source.plugin, source.distribution, source.version,
                            f"register_commands: command {name!r} belongs to {owner}; it was "
                            f"not replaced"))
                except XaiError:
                    raise  # XAI_STRICT_PLUGINS=1: the refusal above is an error
                except Exception as exc:
                    source = plugins.source_of(impl.plugin_name)
                    plugins.record_failure(plugins.PluginFailure(
                        source.plugin, source.distribution, source.version,
                        f"register_commands raised {plugins.describe_exception(exc)}"))
        except XaiError as exc:
            raise click.ClickException(str(exc)) from None

    def _keep_owned(self, before: dict[str, click.Command]) -> list[str]:
        """Put back every command a plugin's hook replaced (a core or another plugin's) unless
        the user allows its distribution to replace names (``XAI_ALLOW_REPLACE``); the names it
        tried to take."""
        taken = [name for name, command in before.items()
                 if self.commands.get(name) is not command]
        for name in taken:
            self.commands[name] = before[name]
        return taken

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
        debug = ctx.params.get("debug") or os.environ.get("XAI_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except XaiError as exc:
            if debug:
                traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own ways out (--help, usage errors, Ctrl-C)
        except BrokenPipeError:  # the reader went away (xai list | head): nothing left to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None  # as the Python docs advise for SIGPIPE
        except OSError as exc:  # the disk, not the code: full, read-only, gone
            if debug:
                traceback.print_exception(exc, file=sys.stderr)
            raise click.ClickException(os_error_line(exc)) from None
        except Exception as exc:  # a plugin's command failed: one line, like any plugin code
            owner = self.command_owners.get(ctx.invoked_subcommand or "")
            if owner is None:
                raise
            if debug:
                traceback.print_exception(exc, file=sys.stderr)
            raise click.ClickException(f"{owner.label} failed in command {ctx.invoked_subcommand}: "
                                       f"{type(exc).__name__}: {exc}") from None


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error that reached the command: what, where, free space."""
    from pathlib import Path

    from xaicore.files import free_space, os_reason

    if exc.filename:
        return f"{exc.filename}: {os_reason(exc)}{free_space(Path(exc.filename))}"
    return f"{os_reason(exc)} (--debug shows where)"


@click.group(cls=XaiGroup)
@click.option("--debug", is_flag=True, help="Show the traceback of an error (also XAI_DEBUG=1).")
@click.version_option(package_name="xaicore", prog_name="xai")
def cli(debug: bool) -> None:
    """Explain PyTorch time-series classifiers: train, explain, evaluate, report."""


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--check", is_flag=True,
              help="Import every registered target (slow: loads torch) and fail if any cannot load.")
@click.option("--options", "options_of", metavar="[NAME]", is_flag=False, flag_value="",
              help="Print the options of every component, or of the one called NAME: type, "
                   "default, allowed values, help.")
def list_cmd(as_json: bool, check: bool, options_of: str | None) -> None:
    """List installed models, explainers, renderers, datasets, metrics and plugins."""
    from xaicore.plugins import registry

    if options_of is not None:
        _print_options(options_of, as_json)
        return

    broken = registry.check() if check else []
    data = registry.as_json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        _report_check(broken)
        return
    for kind in registry.KINDS:
        shown = _fold(data[kind], FOLD_AFTER if kind == "datasets" else None)
        rows = [[e["name"], e["distribution"] or e["plugin"], e["version"] or "-",
                 "ok" if e["status"] == "ok" else "FAILED, see below", e["description"][:60]]
                for e in shown]
        if len(shown) < len(data[kind]):
            rows.append([f"... {len(data[kind]) - len(shown)} more (xai list --json)", "", "", "",
                         ""])
        click.echo(f"\n{kind.upper()}")
        click.echo(_table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "DESCRIPTION"])
                   if rows else "  (none installed)")
        for e in shown:
            if e["status"] != "ok":
                click.echo(wrapped(f"FAILED {e['name']} ({e['distribution'] or e['plugin']}): "
                                    f"{e['error']}"))
    failed = [p for p in data["plugins"] if p["status"] == "failed"]
    if failed:
        click.echo("\nFAILED PLUGINS")
        for p in failed:
            click.echo(wrapped(f"{p['plugin']} ({p['distribution'] or 'no distribution'} "
                                f"{p['version'] or '-'}): {p['error']}"))
    _report_check(broken)


def _print_options(name: str, as_json: bool) -> None:
    """``xai list --options [NAME]``: each component's declared options (a model's with its
    training recipe), as text or JSON."""
    from xaicore.plugins import registry
    from xaicore.runs.training import recipe_options

    rows: list[dict[str, Any]]
    if name:
        rows = [{"kind": registry.SINGULAR[kind], "name": name, "options": spec, "error": None}
                for kind, spec in registry.options_of(name)]
    else:
        rows = registry.all_options()
    for row in rows:
        if row["kind"] == "model" and row["error"] is None:
            row["training_recipe"] = recipe_options(registry.get_model(row["name"]))
    if as_json:
        click.echo(json.dumps([{k: [o.as_dict() for o in v] if k in ("options", "training_recipe")
                                else v for k, v in row.items()} for row in rows], indent=2))
        return
    for row in rows:
        click.echo(f"{row['kind']} {row['name']}:")
        click.echo(f"  FAILED: {row['error']}" if row["error"] else
                   "\n".join(f"  {o.describe()}" for o in row["options"]) or "  (no options)")
        if "training_recipe" in row:
            click.echo(f"training recipe of {row['name']}:")
            click.echo("\n".join(f"  {o.describe()}" for o in row["training_recipe"]))


FOLD_AFTER = 12  # working datasets shown in the text of xai list; the rest are counted


def _fold(entries: list[dict], limit: int | None) -> list[dict]:
    """The entries shown: every failed one, and working ones up to ``limit``."""
    if limit is None:
        return entries
    ok = {id(e) for e in [e for e in entries if e["status"] == "ok"][:limit]}
    return [e for e in entries if e["status"] != "ok" or id(e) in ok]


def _report_check(broken: list) -> None:
    """After ``xai list --check``: one line per target that failed to import, then exit 1."""
    from xaicore.plugins import registry

    if not broken:
        return
    for e in broken:
        click.echo(f"check failed: {registry.SINGULAR[e.kind]} {e.name!r} "
                   f"({e.distribution or e.plugin}) target {e.target}: {e.error}", err=True)
    raise SystemExit(1)


for _name in ("training", "explaining", "plugins"):
    for _command in import_module(f"xaicore.commands.{_name}").COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="xai")


if __name__ == "__main__":
    main()
