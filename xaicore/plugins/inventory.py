"""What every installed distribution of the ``xai`` entry-point group brings: ``xai plugins``."""

from __future__ import annotations

from typing import Any

from xaicore.plugins import loading as plugins
from xaicore.plugins import registry


def distributions(command_owners: dict[str, plugins.PluginSource]) -> list[dict[str, Any]]:
    """One record per distribution, sorted by name: its version, status (``ok``, ``failed`` with
    the reasons, ``disabled``), entry points (and those XAI_DISABLE_PLUGINS switched off), the
    hooks they implement, the names each kind got and the commands added (``command_owners``:
    command name -> the plugin that added it)."""
    found: dict[str, dict[str, Any]] = {}

    def record(source: Any) -> dict[str, Any]:
        name = source.distribution or f"(entry point {source.plugin})"
        out = found.setdefault(name, {"distribution": name, "version": source.version,
                                      "status": "ok", "errors": [], "entry_points": [], "disabled": [],
                                      "hooks": [], "registered": {}, "commands": []})
        if source.plugin not in out["entry_points"]:
            out["entry_points"].append(source.plugin)
        return out

    failures = registry.failures()
    entries = registry.entries()
    for source in plugins.sources.values():
        out = record(source)
        module = plugins.pm.get_plugin(source.plugin)
        hooks = [caller.name for caller in plugins.pm.get_hookcallers(module) or []]
        out["hooks"] = sorted(set(out["hooks"]) | set(hooks))
    for failure in failures:
        record(failure)["errors"].append(f"{failure.plugin}: {failure.error}")
    for entry in entries:
        out = record(plugins.source_of(entry.plugin))
        if entry.error:
            out["errors"].append(f"{registry.SINGULAR[entry.kind]} {entry.name!r}: {entry.error}")
        else:
            out["registered"].setdefault(entry.kind, []).append(entry.name)
    for command, source in sorted(command_owners.items()):
        record(source)["commands"].append(command)
    for source in plugins.skipped:
        out = record(source)
        out["disabled"].append(source.plugin)
        if set(out["entry_points"]) <= set(out["disabled"]):
            out["status"] = "disabled"
    for out in found.values():
        out["entry_points"].sort()
        if out["errors"]:
            out["status"] = "failed"
        out["registered"] = {kind: sorted(out["registered"][kind])
                             for kind in registry.KINDS if kind in out["registered"]}
    return [found[name] for name in sorted(found, key=str.casefold)]
