"""Renderers run by stage: each declares ``stage`` ("run" after training, "explanations" after
explaining, or None when it only runs on demand, like the html report), and the core runs every
installed renderer of a stage. A renderer that cannot load or fails is a warning naming it and its
distribution, never fatal. Light: no torch, numpy or pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xaicore.errors import XaiError
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.plugins.options import resolve

STAGES = ("run", "explanations")


def renderers_for(stage: str) -> list[str]:
    """Names of the working renderers that declare ``stage``, sorted."""
    found = []
    for name in registry.names("renderers"):
        try:
            renderer = registry.get_renderer(name)
        except Exception:  # noqa: BLE001 - a renderer that cannot load is shown failed by xai list
            continue
        if getattr(renderer, "stage", None) == stage:
            found.append(name)
    return found


def render_stage(stage: str, explanations: Sequence[Any], out_dir: Path,
                 **options: Any) -> tuple[dict[str, list[Path]], list[str]]:
    """Run every renderer of ``stage``: the files each wrote, and one warning line per failure."""
    written: dict[str, list[Path]] = {}
    warnings: list[str] = []
    for name in renderers_for(stage):
        try:
            renderer = registry.get_renderer(name)
            given = resolve(f"renderer {name}", renderer, options, given_only=True)
            written[name] = list(renderer.render(explanations, out_dir, **given))
        except Exception as exc:  # noqa: BLE001 - a figure must not cost the result it shows
            warnings.append(f"renderer {name}: {registry.owner('renderers', name)} failed in "
                            f"render: {type(exc).__name__}: {exc}")
    return written, warnings


def figure(explanations: Sequence[Any], sample: int, kind: str) -> Any:
    """A matplotlib figure of ``kind`` from the first installed renderer that draws it."""
    offered: list[str] = []
    for name in registry.names("renderers"):
        try:
            renderer = registry.get_renderer(name)
        except Exception:  # noqa: BLE001 - shown failed by xai list
            continue
        kinds = tuple(getattr(renderer, "kinds", ()))
        if kind in kinds and callable(getattr(renderer, "figure", None)):
            return call("renderers", name, f"{name}.figure", renderer.figure,
                        list(explanations), sample, kind)
        offered += kinds
    raise XaiError(f"no installed renderer draws {kind!r} figures" + (
        f"; kinds available: {', '.join(sorted(set(offered)))}" if offered
        else " (install xai-plots: pip install -e plugins/xai-plots)"))
