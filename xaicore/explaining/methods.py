"""Which methods run on a model and with what: the check that each can explain it, the inputs
each declares it requires, and the file name of each result."""

from __future__ import annotations

from typing import Any

import click

from xaicore.errors import XaiError
from xaicore.explaining.api import get_explainer
from xaicore.files import safe_name
from xaicore.plugins import registry
from xaicore.plugins.boundary import call


def cannot_explain(name: str, model: Any) -> str | None:
    """Why the explainer ``name`` cannot explain ``model`` (its ``check``), or None."""
    explainer = get_explainer(name)
    owner = name.partition(":")[0]
    return call("explainers", owner, f"{owner}.check", explainer.check, model)


def check_methods(names: list[str], model: Any, where: str = "") -> None:
    """Refuse, before anything is computed, a method that cannot explain ``model``; ``where``
    says which model (`` of run RUN``)."""
    for name in names:
        reason = cannot_explain(name, model)
        if reason:
            raise XaiError(f"{name} cannot explain model {model.name!r}{where}: {reason}")


def method_names(requested: tuple[str, ...], model: Any) -> list[str]:
    """The requested methods, or with ``all`` every installed explainer that can explain ``model``.

    Wrappers (such as ``tsr``, used as ``tsr:saliency``) are not methods on their own, and
    counterfactual methods (declaring ``counterfactual``: native-guide, comte) are asked for by name.
    """
    if not requested or "all" in requested:
        names = []
        for name in registry.names("explainers"):
            try:
                explainer = get_explainer(name)
            except XaiError as exc:  # a broken plugin costs its own method, not the others
                click.echo(f"warning: skipping {name}: {exc}", err=True)
                continue
            if callable(getattr(explainer, "wrap", None)) or getattr(explainer, "counterfactual", False):
                continue  # a wrapper, or a counterfactual method (changes, not attributions)
            try:
                reason = cannot_explain(name, model)
            except XaiError as exc:  # a check that raises costs its own method too
                reason = str(exc)
            if reason:
                click.echo(f"skipping {name} (cannot explain model {model.name!r}): {reason}",
                           err=True)
            else:
                names.append(name)
        return names
    return list(dict.fromkeys(requested))


def with_requirements(component: Any, options: dict[str, Any],
                      available: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus each input ``component`` declares in ``requires`` (``background``: the
    train split's inputs) taken from ``available``, unless the options give it already."""
    filled = dict(options)
    for key in getattr(component, "requires", ()):
        if key in available:
            filled.setdefault(key, available[key])
    return filled


def result_name(method: str, target: Any) -> str:
    """File stem of a result: the method, plus the target unless it is the predicted class; both
    made safe, so any class name stays a plain file name inside the output folder."""
    stem = safe_name(method, "method")
    return stem if str(target) == "predicted" else f"{stem}@{safe_name(str(target), 'target')}"
