"""The registry of models, explainers, renderers, datasets and metrics, for the CLI and for embedding.

Entries are collected from the plugins' ``register_*`` hooks without importing their heavy modules;
an entry's object is imported the first time it is used.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from xaicore.errors import PluginCodeError, PluginError, UnknownNameError, XaiError
from xaicore.plugins import loading as plugins
from xaicore.plugins.budget import timed_hook
from xaicore.plugins.options import declared

KINDS = ("modalities", "models", "explainers", "renderers", "datasets", "metrics", "engines")
SINGULAR = {"modalities": "modality", "models": "model", "explainers": "explainer",
            "renderers": "renderer", "datasets": "dataset", "metrics": "metric", "engines": "engine"}


@dataclass
class Entry:
    """One registered name: where it comes from, whether it works, and how to load it."""

    kind: str
    name: str
    target: Any
    plugin: str
    distribution: str | None
    version: str | None
    info: dict = field(default_factory=dict)
    error: str | None = None
    _object: Any = None

    @property
    def status(self) -> str:
        return "failed" if self.error else "ok"

    @property
    def description(self) -> str:
        return str(self.info.get("description", ""))

    def load(self) -> Any:
        """Import (once) and return the registered object."""
        if self.error:
            raise PluginError(f"{SINGULAR[self.kind]} {self.name!r} from "
                              f"{self.distribution or self.plugin} is unavailable: {self.error}")
        if self._object is None:
            if isinstance(self.target, str):
                module_name, _, attr = self.target.partition(":")
                try:
                    obj = import_module(module_name)
                    for part in attr.split(".") if attr else []:
                        obj = getattr(obj, part)
                except Exception as exc:
                    self.error = plugins.describe_exception(exc)
                    raise PluginError(f"{SINGULAR[self.kind]} {self.name!r} from "
                                      f"{self.distribution or self.plugin} failed to import "
                                      f"{self.target}: {self.error}") from exc
                self._object = obj
            else:
                self._object = self.target
        return self._object

    def as_dict(self) -> dict:
        return {"kind": SINGULAR[self.kind], "name": self.name, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version,
                "status": self.status, "error": self.error, "description": self.description}


class Registry:
    """Every entry of every kind, collected from one plugin manager's hooks."""

    def __init__(self, pm) -> None:
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.rejected: list[Entry] = []
        self.failures: list[plugins.PluginFailure] = []
        for kind in KINDS:
            hook = getattr(pm.hook, f"register_{kind}")
            impls = hook.get_hookimpls()  # in registration order: first come, first served ...
            # ... except that built-ins come first, so they own their names against any third party
            impls.sort(key=lambda impl: not plugins.source_of(impl.plugin_name).builtin)
            for impl in impls:
                self._collect(kind, impl)

    def _collect(self, kind: str, impl) -> None:
        source = plugins.source_of(impl.plugin_name)

        def register(name: str, target: Any, replaces: bool = False, **info: Any) -> None:
            entry = Entry(kind, name, target, source.plugin, source.distribution, source.version, info)
            taken = self.entries[kind].get(name) or next(  # names are owned case-insensitively
                (e for key, e in self.entries[kind].items() if key.casefold() == name.casefold()),
                None)
            if taken is None:
                self.entries[kind][name] = entry
                return
            owner = taken.distribution or taken.plugin
            if replaces and self._may_replace(source, taken):
                taken.error = (f"replaced by {source.distribution} (replaces=True, allowed by "
                               f"XAI_ALLOW_REPLACE)")
                self.rejected.append(taken)
                del self.entries[kind][taken.name]
                self.entries[kind][name] = entry
                return
            entry.error = f"{SINGULAR[kind]} name {name!r} is already registered by {owner}"
            if taken.name != name:
                entry.error += f" as {taken.name!r} (names are owned whatever their case)"
            if replaces and taken.distribution in plugins.BUILTIN_DISTRIBUTIONS:
                entry.error += (f"; to let {source.distribution or source.plugin} replace it, set "
                                f"XAI_ALLOW_REPLACE={source.distribution or source.plugin}")
            if plugins.strict():
                raise PluginError(f"plugin {source.plugin!r} "
                                  f"({source.distribution or 'no distribution'}): {entry.error}")
            self.rejected.append(entry)

        try:
            timed_hook(source.label, f"register_{kind}", impl.function, register=register)
        except PluginError:
            raise
        except Exception as exc:
            failure = plugins.PluginFailure(source.plugin, source.distribution, source.version,
                                            f"register_{kind} raised {plugins.describe_exception(exc)}")
            plugins.record_failure(failure, into=self.failures)

    @staticmethod
    def _may_replace(source: plugins.PluginSource, taken: Entry) -> bool:
        """A plugin replaces a name only if it asked to and the user allowed its distribution."""
        allowed = plugins.allowed_replacements()
        return bool(source.distribution and source.distribution in allowed
                    or source.plugin in allowed) and taken.plugin != source.plugin

    def all_entries(self) -> list[Entry]:
        return [e for kind in KINDS for e in self.entries[kind].values()] + self.rejected


_cache: tuple[tuple, Registry] | None = None


def current() -> Registry:
    """The registry for the plugins registered right now (rebuilt when plugins change)."""
    global _cache
    plugins.load_plugins()
    key = tuple((name, id(plugin)) for name, plugin in plugins.pm.list_name_plugin())
    if _cache is None or _cache[0] != key:
        _cache = (key, Registry(plugins.pm))
    return _cache[1]


def entries(kind: str | None = None) -> list[Entry]:
    """Registered entries, of one kind or of all, including those that failed."""
    reg = current()
    if kind is None:
        return reg.all_entries()
    _check_kind(kind)
    return list(reg.entries[kind].values()) + [e for e in reg.rejected if e.kind == kind]


def failures() -> list[plugins.PluginFailure]:
    """Plugins that failed to import or whose registration hook raised."""
    return list(plugins.failures) + current().failures


def names(kind: str) -> list[str]:
    """Names of the working entries of one kind, sorted."""
    _check_kind(kind)
    return sorted(n for n, e in current().entries[kind].items() if not e.error)


def get_entry(kind: str, name: str) -> Entry:
    _check_kind(kind)
    entry = current().entries[kind].get(name)
    if entry is None:
        available = names(kind)
        close = difflib.get_close_matches(name, available, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown {SINGULAR[kind]} {name!r}.{hint} Installed: "
                               f"{', '.join(available) or 'none'}.")
    return entry


def owner(kind: str, name: str) -> str:
    """``plugin X (distribution Y)`` of a registered name, for one-line error messages."""
    entry = get_entry(kind, name)
    return f"plugin {entry.plugin} (distribution {entry.distribution or 'unknown'})"


def get(kind: str, name: str) -> Any:
    """The registered object; classes of explainers, renderers and metrics are instantiated."""
    obj = get_entry(kind, name).load()
    if kind in ("modalities", "explainers", "renderers", "metrics", "engines") and isinstance(obj, type):
        try:
            obj = obj()
        except XaiError:
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's constructor
            raise PluginCodeError.of(owner(kind, name), f"{name}.__init__", exc) from exc
        if getattr(obj, "name", None) in (None, ""):
            obj.name = name
    return obj


def get_model(name: str) -> Any:
    """The model architecture class registered under ``name``."""
    return get("models", name)


def get_explainer(name: str) -> Any:
    """The explainer ``name``; ``wrapper:inner`` (``tsr:saliency``) wraps another explainer,
    itself possibly wrapped (``time-forward:noise-tunnel:saliency``)."""
    wrapper, sep, inner = name.partition(":")
    explainer = get("explainers", wrapper)
    if sep:
        wrap = getattr(explainer, "wrap", None)
        if not callable(wrap):
            raise XaiError(f"{wrapper!r} does not wrap other explainers; use it alone")
        explainer = wrap(get_explainer(inner))
    return explainer


def get_modality(name: str | None = None) -> Any:
    """The input kind ``name``; None: the one registered with ``default=True`` (the kind of a
    network that names none)."""
    if name is None:
        defaults = [e.name for e in current().entries["modalities"].values()
                    if e.info.get("default") and not e.error]
        if not defaults:
            raise XaiError("no input kind is registered as the default (register_modalities with "
                           "default=True); is the series plugin installed?")
        name = defaults[0]
    return get("modalities", name)


def get_renderer(name: str) -> Any:
    return get("renderers", name)


def get_dataset(name: str) -> Any:
    """The dataset loader registered under ``name``."""
    return get("datasets", name)


def get_metric(name: str) -> Any:
    return get("metrics", name)


def options_of(name: str) -> list[tuple[str, list]]:
    """``(kind, options)`` of every working component called ``name`` (declared or inferred); a
    wrapped explainer ``wrapper:inner`` declares the wrapper's options and the inner method's."""
    if ":" in name and name.partition(":")[0] in names("explainers"):
        return [("explainers", declared(get_explainer(name)))]
    found = [(kind, declared(get(kind, name))) for kind in KINDS if name in names(kind)]
    if not found:
        every = sorted({n for kind in KINDS for n in names(kind)})
        close = difflib.get_close_matches(name, every, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"no installed component is called {name!r}.{hint}")
    return found


def all_options() -> list[dict]:
    """Every working component of every kind with its options (``Option``s), for ``xai list
    --options``; one that cannot load is listed with its error instead."""
    from xaicore.plugins.options import declared

    out = []
    for kind in KINDS:
        for name in names(kind):
            row: dict[str, Any] = {"kind": SINGULAR[kind], "name": name, "options": [],
                                   "error": None}
            try:
                row["options"] = declared(get(kind, name))
            except Exception as exc:  # noqa: BLE001 - a broken plugin never breaks xai list
                row["error"] = plugins.describe_exception(exc)
            out.append(row)
    return out


def resolve_options(kind: str, name: str, component: Any, values: dict) -> dict:
    """``options.resolve`` for component ``name``; an option it does not declare also names the
    components of its kind that do."""
    from xaicore.plugins.options import declared, resolve

    unknown = sorted(set(values) - {option.name for option in declared(component)})
    if unknown:
        having = []
        for other in names(kind):
            try:
                if other != name and unknown[0] in {o.name for o in declared(get(kind, other))}:
                    having.append(other)
            except Exception:  # noqa: BLE001 - one that cannot load declares nothing here
                continue
        if having:
            raise XaiError(f"{SINGULAR[kind]} {name} has no option {unknown[0]!r}; the {kind} "
                           f"that have it: {', '.join(having)}")
    return resolve(f"{SINGULAR[kind]} {name}", component, values)


def check() -> list[Entry]:
    """Import every lazy ``"module:attr"`` target; the entries that fail (each then shows failed)."""
    failed = []
    for entry in entries():
        if entry.error is None and isinstance(entry.target, str):
            try:
                entry.load()
            except PluginError:
                failed.append(entry)
    return failed


def as_json() -> dict:
    """Everything ``xai list --json`` prints."""
    out: dict[str, Any] = {kind: [e.as_dict() for e in entries(kind)] for kind in KINDS}
    out["plugins"] = [{"plugin": s.plugin, "distribution": s.distribution, "version": s.version,
                       "status": "ok", "error": None} for s in plugins.sources.values()]
    out["plugins"] += [{"plugin": f.plugin, "distribution": f.distribution, "version": f.version,
                        "status": "failed", "error": f.error} for f in failures()]
    return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
