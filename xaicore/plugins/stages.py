"""Renderers run by stage: each declares ``stage`` ("run" after training, "explanations" after
explaining, or None when it only runs on demand, like the html report), and the core runs every
installed renderer of a stage. A renderer that cannot load or fails is a warning naming it and its
distribution, never fatal. A renderer that sets ``report = True`` has the PNG and SVG files it
returns listed, with its name and description, in ``figures.json`` of the folder it wrote to
(``FIGURES``): the html report shows a section for each renderer listed there. Light: no torch,
numpy or pandas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xaicore.errors import XaiError
from xaicore.files import write_text
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.plugins.options import resolve

STAGES = ("run", "explanations")
MAX_FIGURE_INCHES = (16.0, 12.0)  # the largest figure a built-in renderer draws (width, height)
FIGURES = "figures.json"
REPORT_SUFFIXES = (".png", ".svg")


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
    listed: dict[str, dict[str, Any]] = {}
    for name in renderers_for(stage):
        try:
            renderer = registry.get_renderer(name)
            given = resolve(f"renderer {name}", renderer, options, given_only=True)
            written[name] = list(renderer.render(explanations, out_dir, **given))
        except Exception as exc:  # noqa: BLE001 - a figure must not cost the result it shows
            warnings.append(f"renderer {name}: {registry.owner('renderers', name)} failed in "
                            f"render: {type(exc).__name__}: {exc}")
            continue
        if getattr(renderer, "report", False) is True:
            listed[name] = {"caption": str(getattr(renderer, "description", "")),
                            "files": [Path(p) for p in written[name]
                                      if Path(p).suffix.lower() in REPORT_SUFFIXES]}
    if listed:
        list_figures(Path(out_dir), listed)
    return written, warnings


def list_figures(out_dir: Path, listed: dict[str, dict[str, Any]]) -> None:
    """Record ``listed`` in ``out_dir/figures.json``, each renderer's entry replacing its earlier
    one; the files are kept relative to ``out_dir`` when they lie inside it."""
    manifest = read_figures(out_dir)
    for name, entry in listed.items():
        manifest[name] = {"caption": entry["caption"],
                          "files": [relative(path, out_dir) for path in entry["files"]]}
    write_text(out_dir / FIGURES, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_figures(folder: Path) -> dict[str, dict[str, Any]]:
    """The renderers listed in ``folder/figures.json`` (empty when there is none); an XaiError
    when the file is not a manifest."""
    path = Path(folder) / FIGURES
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise XaiError(f"{path} could not be read: {exc}") from None
    if not isinstance(manifest, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("files"), list) for e in manifest.values()):
        raise XaiError(f"{path} is not a figures manifest (renderer name: caption and files)")
    return manifest


def relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


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


def figure_size(width: float, height: float) -> tuple[float, float]:
    """A figure size (inches) within ``MAX_FIGURE_INCHES``, so that no input draws a figure too
    large to render."""
    return min(width, MAX_FIGURE_INCHES[0]), min(height, MAX_FIGURE_INCHES[1])
