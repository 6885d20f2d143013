"""Calls from the evaluation into explainers and metrics, through the plugin boundary: a failure
is one line naming the plugin and distribution of the component that failed."""

from __future__ import annotations

from typing import Any

from xaicore.application import plugin_call

RANDOM = "random"  # the baseline is xai-eval's own: called directly


def explainer_call(name: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` of method ``name``'s explainer (``tsr:X`` is tsr's)."""
    if name == RANDOM:
        return function(*args, **kwargs)
    base = name.partition(":")[0]
    return plugin_call("explainers", base, f"{base}.{what}", function, *args, **kwargs)


def explain_again(explainer: Any, *args: Any, **kwargs: Any) -> Any:
    """``explainer.explain(*args, **kwargs)``, as a metric re-running a method calls it."""
    return explainer_call(str(getattr(explainer, "name", "")), "explain", explainer.explain,
                          *args, **kwargs)


def metric_call(name: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` of metric ``name``."""
    return plugin_call("metrics", name, f"{name}.{what}", function, *args, **kwargs)
