"""Shared pieces of the explanation renderers: options, file names, colour legends, saving, manifest."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # files only; in Jupyter the inline backend shows the figures
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xaicore.plugin import (  # noqa: E402
    MAX_FIGURE_INCHES,
    Explanation,
    Option,
    XaiError,
    atomic_path,
    safe_name,
    write_text,
)

from .colours import legend  # noqa: E402

FORMATS = ("png", "svg", "eps", "pdf")
DEFAULT_FORMATS = ("png", "svg")
DEFAULT_MAX_SAMPLES = 16
#: The options of the explanation figures (the renderers' ``options``).
FIGURE_OPTIONS: tuple[Option, ...] = (
    Option("samples", object, None, "sample positions to draw (default: the first max_samples)"),
    Option("formats", object, None, "file formats, e.g. png, svg (default: png)"),
    Option("max_samples", int, DEFAULT_MAX_SAMPLES, "most samples drawn", min=1, max=1_000_000),
)
MANIFEST = "manifest.json"
PNG_DPI = 110
MAX_PIXELS = (int(MAX_FIGURE_INCHES[0] * PNG_DPI), int(MAX_FIGURE_INCHES[1] * PNG_DPI))  # the largest PNG
MAX_FEATURES = 20  # features drawn one by one; the others are folded, and the title says so
MAX_LABEL = 40  # characters of a name on an axis or in a legend


def check_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """The requested figure formats, lower-case, or an XaiError naming the unknown ones."""
    if formats is None:
        return DEFAULT_FORMATS
    if isinstance(formats, str):
        formats = [f for f in re.split(r"[,\s]+", formats) if f]
    chosen = tuple(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise XaiError(f"unknown figure format(s) {', '.join(unknown) or '(none given)'}; "
                       f"choose among {', '.join(FORMATS)}")
    return chosen


def check_explanations(explanations: Sequence[Explanation]) -> list[Explanation]:
    items = list(explanations)
    bad = [type(e).__name__ for e in items if not isinstance(e, Explanation)]
    if bad:
        raise XaiError(f"renderers take xaicore Explanation objects, got {', '.join(bad)}")
    return items


def pick_samples(explanation: Explanation, samples: Any = None,
                 limit: int = DEFAULT_MAX_SAMPLES) -> list[int]:
    """Sample positions to draw: ``samples`` (ints, a slice or "a:b"), else the first ``limit``."""
    n = explanation.n_samples
    if samples is None:
        return list(range(min(n, limit)))
    if isinstance(samples, str):
        match = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", samples)
        if match:
            samples = slice(int(match[1]) if match[1] else None, int(match[2]) if match[2] else None)
        else:
            try:
                samples = [int(s) for s in samples.split(",")]
            except ValueError:
                raise XaiError(f"samples must be positions like 0,3,5 or a range like 0:8, "
                               f"got {samples!r}") from None
    if isinstance(samples, slice):
        return list(range(n))[samples]
    if isinstance(samples, (int, np.integer)):
        samples = [samples]
    positions = [int(s) for s in samples]
    out = [p for p in positions if not -n <= p < n]
    if out:
        raise XaiError(f"sample position {out[0]} is out of range: the explanation of "
                       f"{explanation.method!r} holds {n} samples")
    return [p % n for p in positions]


def text(value: Any) -> str:
    """User text for a matplotlib label: ``$`` would start mathtext, so it is escaped."""
    return str(value).replace("$", r"\$")


def cut(value: Any) -> str:
    """A name cut to ``MAX_LABEL`` characters (long names would widen the figure)."""
    name = str(value)
    return name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 1] + "\u2026"


def label(value: Any) -> str:
    """``text`` of a name, cut to ``MAX_LABEL`` characters."""
    return text(cut(value))


def top_features(scores: np.ndarray, k: int = MAX_FEATURES) -> np.ndarray:
    """Indices of the ``k`` largest ``scores`` (one per feature; NaN counts as 0), in feature
    order: all of them when there are at most ``k``."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    if len(scores) <= k:
        return np.arange(len(scores))
    return np.sort(np.argpartition(-scores, k - 1)[:k])


def folded(shown: int, total: int) -> str:
    """What a figure of ``shown`` of ``total`` features left out ("" when nothing)."""
    if shown == total:
        return ""
    return (f"top {shown} of {total:,} features by |attribution| shown, {total - shown:,} "
            f"folded")


def target_kind(explanation: Explanation) -> str:
    """Which class each sample was explained for: "predicted", "true" or "chosen"."""
    if np.array_equal(explanation.targets, explanation.predictions):
        return "predicted"
    if (explanation.labels >= 0).all() and np.array_equal(explanation.targets, explanation.labels):
        return "true"
    return "chosen"


def figure_key(explanation: Explanation) -> str:
    """The figure folder of an explanation: its method, plus the target kind unless "predicted"."""
    kind = target_kind(explanation)
    return safe_name(explanation.method if kind == "predicted" else f"{explanation.method}-{kind}",
                     fallback="method")


def sample_title(explanation: Explanation, i: int, with_method: bool = True) -> str:
    """"method · sample 3: predicted Gun (0.97), true Point" with class names."""
    e = explanation
    pred = int(e.predictions[i])
    parts = [f"sample {int(e.sample_ids[i])}: predicted {label(e.class_names[pred])} "
             f"({e.probabilities[i, pred]:.2f})"]
    true = int(e.labels[i])
    if true >= 0:
        parts.append(f"true {label(e.class_names[true])}"
                     + ("" if true == pred else "  [misclassified]"))
    if int(e.targets[i]) != pred:
        parts.append(f"explaining {label(e.class_names[int(e.targets[i])])}")
    head = f"{label(e.method)} · " if with_method else ""
    return head + ", ".join(parts)


def explained(explanation: Explanation, i: int) -> str:
    """"class Gun": the class sample position ``i`` was explained for, as a legend names it."""
    return f"class {cut(explanation.class_names[int(explanation.targets[i])])}"


def convention(fig, signed: Iterable[bool], target: str) -> None:
    """What the colours mean for ``target`` (e.g. ``explained``), for each kind of scale drawn,
    on a line below the figure."""
    kinds = sorted({bool(s) for s in signed}, reverse=True)
    fig.supxlabel(text("colours: " + "; ".join(legend(s, target) for s in kinds)), fontsize=8,
                  color="0.25")


def save(fig, base: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``base.<format>`` for each format and close it; a PNG larger than
    ``MAX_PIXELS`` (the tight box can exceed the figure by its padding) is written again at a
    lower resolution."""
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for fmt in formats:
            path = base.with_name(f"{base.name}.{fmt}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=PNG_DPI, bbox_inches="tight")
                if fmt == "png":
                    scale = min(1.0, *(cap / size for cap, size in zip(MAX_PIXELS, png_size(tmp))))
                    if scale < 1:
                        fig.savefig(tmp, format=fmt, dpi=0.99 * PNG_DPI * scale,
                                    bbox_inches="tight")
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def png_size(path: Path) -> tuple[int, int]:
    """Width and height in pixels of a PNG file (its header)."""
    with open(path, "rb") as fh:
        header = fh.read(24)
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


class Manifest:
    """``out_dir/manifest.json``: what each figure shows, so the report can place it."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / MANIFEST
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text()).get("figures", {})
            except (json.JSONDecodeError, AttributeError):
                self.entries = {}

    def add(self, paths: list[Path], *, kind: str, key: str, method: str,
            sample_id: int | None = None, caption: str = "") -> list[Path]:
        """Record the figure written as ``paths`` (one per format) and return the paths."""
        stem = paths[0].with_suffix("").relative_to(self.path.parent).as_posix()
        self.entries[stem] = {"kind": kind, "key": key, "method": method, "sample_id": sample_id,
                              "caption": caption,
                              "formats": [p.suffix.lstrip(".") for p in paths]}
        return paths

    def write(self) -> None:
        write_text(self.path, json.dumps({"figures": self.entries}, indent=1, sort_keys=True))
