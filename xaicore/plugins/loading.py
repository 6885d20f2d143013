"""Loads the plugins of the ``xai`` entry-point group into one pluggy manager, each on its own.

A plugin that fails to import is recorded as failed with its error and the others still load.
``XAI_STRICT_PLUGINS=1`` turns such a failure into an error; ``XAI_DISABLE_PLUGINS`` (comma-separated
entry-point or distribution names) skips chosen plugins; ``XAI_ALLOW_REPLACE`` (comma-separated
distribution names) lets those distributions replace built-in names they register with
``replaces=True``. A plugin that implements a hook the core does not define (a misspelling such as
``register_explainer``) is unregistered and shown failed.
"""

from __future__ import annotations

import difflib
import os
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from xaicore.errors import PluginError
from xaicore.plugins import hookspecs

GROUP = "xai"

#: The distributions shipped from this repository's ``plugins/`` folder. They own their names
#: against any third-party plugin, whatever order the entry points load in.
BUILTIN_DISTRIBUTIONS = frozenset({
    "xaicore", "xai-ray", "xai-aeon", "xai-attention", "xai-captum", "xai-counterfactual", "xai-eval",
    "xai-gradcam", "xai-models", "xai-image", "xai-plots", "xai-report", "xai-series", "xai-shap", "xai-text",
})

pm = pluggy.PluginManager("xai")
pm.add_hookspecs(hookspecs)


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from: its entry point and the distribution that installed it."""

    plugin: str
    distribution: str | None
    version: str | None

    @property
    def builtin(self) -> bool:
        return self.distribution in BUILTIN_DISTRIBUTIONS

    @property
    def label(self) -> str:
        """``plugin X (distribution Y)``, as one-line messages name a plugin."""
        return f"plugin {self.plugin} (distribution {self.distribution or 'unknown'})"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose registration hook raised."""

    plugin: str
    distribution: str | None
    version: str | None
    error: str


sources: dict[str, PluginSource] = {}
failures: list[PluginFailure] = []
skipped: list[PluginSource] = []  # entry points XAI_DISABLE_PLUGINS switched off
_loaded = False


def strict() -> bool:
    return os.environ.get("XAI_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("XAI_DISABLE_PLUGINS", "").split(",") if n.strip()}


def allowed_replacements() -> set[str]:
    """Distributions the user lets replace built-in names (``XAI_ALLOW_REPLACE``)."""
    return {n.strip() for n in os.environ.get("XAI_ALLOW_REPLACE", "").split(",") if n.strip()}


def unknown_hooks(plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no hook the core defines, each with a hint."""
    known = {name for name in dir(hookspecs) if name.startswith("register_")}
    problems = []
    for attr in dir(plugin):
        if pm.parse_hookimpl_opts(plugin, attr) is None or attr in known:
            continue
        close = difflib.get_close_matches(attr, sorted(known), n=1)
        problems.append(f"unknown hook {attr!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return problems


def describe_exception(exc: BaseException) -> str:
    """One line naming the exception and where in the plugin it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def record_failure(failure: PluginFailure, into: list[PluginFailure] = failures) -> None:
    """Keep ``failure`` for ``xai list``, or raise it under XAI_STRICT_PLUGINS=1."""
    if strict():
        raise PluginError(
            f"plugin {failure.plugin!r} ({failure.distribution or 'no distribution'}) failed: "
            f"{failure.error}"
        )
    into.append(failure)


def load_plugins() -> None:
    """Import every enabled entry point of group ``xai`` once, each in its own try/except."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    skip = disabled()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if ep.name in skip or (dist and dist in skip):
            skipped.append(PluginSource(ep.name, dist, version))
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the others
            record_failure(PluginFailure(ep.name, dist, version, describe_exception(exc)))
            continue
        problems = unknown_hooks(module)
        if problems:
            record_failure(PluginFailure(ep.name, dist, version, "; ".join(problems)))
            continue
        pm.register(module, name=ep.name)
        sources[ep.name] = PluginSource(ep.name, dist, version)


def source_of(plugin_name: str) -> PluginSource:
    return sources.get(plugin_name, PluginSource(plugin_name, None, None))
