"""``SamplePlots``: each sample with its attribution, method comparisons and misclassification views."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, XaiError, figure_size, write_text

from .colours import is_signed, scale_for
from .compare_labels import comparison_title, panel_labels
from .counterfactual_figures import counterfactual_figure, is_counterfactual
from .drawing import attribution_panel, colored_series, feature_heatmap, series_lines
from .figures import (
    DEFAULT_MAX_SAMPLES,
    FIGURE_OPTIONS,
    Manifest,
    check_explanations,
    check_formats,
    convention,
    explained,
    figure_key,
    folded,
    label,
    pick_samples,
    sample_title,
    save,
    target_kind,
    top_features,
)
from .image_figures import IMAGE_KINDS, image_figure, methods_figure, misclassified_figure
from .image_units import is_image
from .text_html import text_figure, texts_page
from .text_units import is_text

TOP_CLASSES = 5


class SamplePlots:
    """Per-sample figures under ``out_dir/<method>/``, plus ``compare/`` and misclassification views;
    for texts, ``out_dir/<method>/tokens.html`` (every drawn text coloured by token and by word);
    for images, the image, its map and their overlay, and in ``compare/`` every method's overlay
    side by side (``image_figures.py``).

    Options: ``samples`` (positions: ints, a slice or "a:b"; default the first 16), ``formats``
    (default png and svg; eps and pdf also work).
    """

    name = "sample-plots"
    stage = "explanations"
    options = FIGURE_OPTIONS
    description = ("Each sample with its attribution (series band or feature x time heatmap; "
                   "image, map and overlay)")
    kinds = ("auto", "overlay", "heatmap", "compare", "tokens", "words")  # for Explanation.plot

    def figure(self, explanations: Sequence[Explanation], sample: int, kind: str):
        """One figure in memory of sample position ``sample`` (``Explanation.plot``); for a text,
        an object Jupyter shows as the coloured text."""
        items = check_explanations(explanations)
        if is_text(items[0]):
            return text_figure(items, sample, kind)
        if kind == "compare":
            first = items[0]
            sid = int(first.sample_ids[sample])
            rows = [(first, sample)]
            for e in items[1:]:
                if not (e.sample_ids == sid).any():
                    raise XaiError(f"{e.method} did not explain sample {sid}")
                rows.append((e, _position(e, sid)))
            return methods_figure(rows) if is_image(first) else comparison_figure(rows)
        e = items[0]
        if is_counterfactual(e):
            return counterfactual_figure(e, sample)
        if is_image(e):
            if kind not in ("auto", *IMAGE_KINDS):
                raise XaiError(f"an image explanation is drawn as kind overlay, heatmap or "
                               f"compare, not {kind!r}")
            return image_figure(e, sample, "heatmap" if kind == "heatmap" else "overlay")
        if kind == "heatmap":
            return heatmap_figure(e, sample)
        if kind == "overlay" and e.inputs.shape[2] > 1:
            return overlay_figure(e, sample)
        return sample_figure(e, sample)

    def render(self, explanations: Sequence[Explanation], out_dir: Path, *, samples: Any = None,
               formats: Any = None, max_samples: int = DEFAULT_MAX_SAMPLES,
               **options: Any) -> list[Path]:
        items = check_explanations(explanations)
        formats = check_formats(formats)
        out_dir = Path(out_dir)
        manifest = Manifest(out_dir)
        written: list[Path] = []
        for e in (e for e in items if is_text(e)):
            key = figure_key(e)
            path = out_dir / key / "tokens.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, texts_page(e, pick_samples(e, samples, max_samples)))
            written += manifest.add([path], kind="tokens", key=key, method=e.method,
                                    caption=f"{e.method}: attribution of each token and word")
        items = [e for e in items if not is_text(e)]
        chosen: dict[int, list[int]] = {}
        for e in items:
            positions = pick_samples(e, samples, max_samples)
            chosen[id(e)] = positions
            key = figure_key(e)
            for i in positions:
                sid = int(e.sample_ids[i])
                drawn = (counterfactual_figure if is_counterfactual(e) else
                         image_figure if is_image(e) else sample_figure)(e, i)
                what = "counterfactual" if is_counterfactual(e) else "attribution"
                written += manifest.add(save(drawn, out_dir / key / f"sample_{sid}", formats),
                                        kind="sample", key=key, method=e.method, sample_id=sid,
                                        caption=f"{e.method}: {what} of sample {sid}")
        by_kind = defaultdict(list)
        for e in (e for e in items if not is_counterfactual(e)):  # attribution maps compared
            by_kind[target_kind(e)].append(e)
        for kind, group in by_kind.items():
            if len(group) < 2:
                continue
            key = "compare" if kind == "predicted" else f"compare-{kind}"
            for sid in _shared_ids(group, chosen):
                rows = [(e, _position(e, sid)) for e in group]
                drawn = methods_figure(rows) if is_image(group[0]) else comparison_figure(rows)
                written += manifest.add(save(drawn, out_dir / key / f"sample_{sid}", formats),
                                        kind="compare", key=key, method="all", sample_id=sid,
                                        caption=f"every method for sample {sid}")
        for pred_e, true_e in _target_pairs(items):
            key = figure_key(pred_e)
            for sid in _shared_ids([pred_e, true_e], chosen):
                i, j = _position(pred_e, sid), _position(true_e, sid)
                if pred_e.labels[i] < 0 or pred_e.labels[i] == pred_e.predictions[i]:
                    continue
                drawn = (misclassified_figure if is_image(pred_e) else misclassification_figure)(
                    pred_e, i, true_e, j)
                written += manifest.add(
                    save(drawn, out_dir / key / f"misclassified_sample_{sid}", formats),
                    kind="misclassified", key=key, method=pred_e.method, sample_id=sid,
                    caption=f"{pred_e.method}: predicted-class vs true-class explanation "
                            f"of misclassified sample {sid}")
        manifest.write()
        return written


def own_length(e: Explanation, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and attributions of sample ``i`` cut to its own length (no padding drawn)."""
    length = int(e.lengths[i])
    return e.inputs[i, :length], e.attributions[i, :length]


def shown_features(maps: list[np.ndarray]) -> np.ndarray:
    """The features the figure of attribution ``maps`` (``[time, feature]`` each) draws: those
    with the largest |attribution| over time, each map scaled by its own largest value."""
    score = np.zeros(maps[0].shape[1])
    for values in maps:
        magnitude = np.nan_to_num(np.abs(values))
        score += magnitude.sum(0) / max(float(magnitude.max(initial=0.0)), 1e-12)
    return top_features(score)


def names_of(e: Explanation, features: np.ndarray) -> list[str]:
    return [e.feature_names[f] for f in features]


#: The row label of a map the explainer declared shared by every feature (``time_only``).
SHARED_ROW = "every feature (one map)"


def map_rows(e: Explanation, attribution: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The heatmap rows of ``attribution [time, feature]``: one per feature, or the one row of a
    map copied to every feature (Grad-CAM, attention: ``e.time_only``), which has no split."""
    if e.time_only and attribution.shape[1] > 1:
        return attribution[:, :1], [SHARED_ROW]
    return attribution, names


def titled(fig, title: str, total: int, shown: int) -> None:
    """The figure's title, with what was folded on a second line."""
    note = folded(shown, total)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=11)


def sample_figure(e: Explanation, i: int):
    """One sample: coloured series (one feature) or series above a feature x time heatmap."""
    series, attribution = own_length(e, i)
    if series.shape[1] > 1:
        return heatmap_figure(e, i)
    scale = scale_for(attribution, is_signed(e))
    fig, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
    mappable = attribution_panel(ax, series, attribution, e.feature_names, scale)
    ax.set_xlabel("time step")
    fig.colorbar(mappable, ax=ax, label="attribution", pad=0.015)
    fig.suptitle(sample_title(e, i), fontsize=11)
    convention(fig, [scale.signed], explained(e, i))
    return fig


def heatmap_figure(e: Explanation, i: int):
    """The series above its attribution as a feature x time heatmap (any number of features)."""
    series, attribution = own_length(e, i)
    keep = shown_features([attribution])
    series, attribution, names = series[:, keep], attribution[:, keep], names_of(e, keep)
    scale = scale_for(attribution, is_signed(e))
    n_features, rows = len(keep), 1 if e.time_only else len(keep)
    fig, (top, ax) = plt.subplots(2, 1, sharex=True, figsize=figure_size(10, 3.2 + 0.3 * rows),
                                  height_ratios=[1.0, max(1.0, 0.25 * rows)],
                                  layout="constrained")
    series_lines(top, series, names)
    mappable = feature_heatmap(ax, *map_rows(e, attribution, names), scale)
    ax.set_xlabel("time step")
    fig.colorbar(mappable, ax=[top, ax], label="attribution", fraction=0.04)
    titled(fig, sample_title(e, i), e.inputs.shape[2], n_features)
    convention(fig, [scale.signed], explained(e, i))
    return fig


def overlay_figure(e: Explanation, i: int):
    """Each feature's series over a band coloured by its own attribution, one row per feature."""
    series, attribution = own_length(e, i)
    keep = shown_features([attribution])
    series, attribution = series[:, keep], attribution[:, keep]
    scale = scale_for(attribution, is_signed(e))
    fig, axes = plt.subplots(len(keep), 1, sharex=True, squeeze=False,
                             figsize=figure_size(9, 0.6 + 1.6 * len(keep)), layout="constrained")
    for k, (f, ax) in enumerate(zip(keep, axes[:, 0])):
        mappable = colored_series(ax, series[:, k], attribution[:, k], scale)
        ax.set_ylabel(label(e.feature_names[f]), fontsize=9)
    axes[-1, 0].set_xlabel("time step")
    fig.colorbar(mappable, ax=axes[:, 0].tolist(), label="attribution", fraction=0.04)
    titled(fig, sample_title(e, i), e.inputs.shape[2], len(keep))
    convention(fig, [scale.signed], explained(e, i))
    return fig


def comparison_figure(rows: list[tuple[Explanation, int]]):
    """Every method's attribution of one sample, one row each, on a shared time axis, each row
    labelled with its model and method.

    Several features: the series comes first, then one feature x time heatmap per method.
    """
    first, i = rows[0]
    keep = shown_features([own_length(e, j)[1] for e, j in rows])
    n_features = len(keep)
    height = 1.9 if n_features == 1 else 0.9 + 0.22 * n_features
    extra = 0 if n_features == 1 else 1
    fig, axes = plt.subplots(len(rows) + extra, 1, sharex=True, squeeze=False,
                             figsize=figure_size(10, 0.9 + height * (len(rows) + extra)),
                             layout="constrained")
    names = names_of(first, keep)
    if extra:
        series_lines(axes[0, 0], own_length(first, i)[0][:, keep], names)
        axes[0, 0].set_title("input series", fontsize=10, loc="left")
    kinds = []
    for ax, (e, j), title in zip(axes[extra:, 0], rows, panel_labels(rows)):
        series, attribution = (values[:, keep] for values in own_length(e, j))
        scale = scale_for(attribution, is_signed(e))
        mappable = attribution_panel(ax, series, *map_rows(e, attribution, names), scale)
        ax.set_title(title + ("" if scale.signed else " (unsigned)"), fontsize=10, loc="left")
        fig.colorbar(mappable, ax=ax, pad=0.015, fraction=0.03)
        kinds.append(scale.signed)
    axes[-1, 0].set_xlabel("time step")
    titled(fig, comparison_title(rows), first.inputs.shape[2], n_features)
    convention(fig, kinds, explained(first, i))
    return fig


def misclassification_figure(pred_e: Explanation, i: int, true_e: Explanation, j: int):
    """Predicted-class and true-class explanations side by side, with the top class probabilities."""
    keep = shown_features([own_length(pred_e, i)[1], own_length(true_e, j)[1]])
    both = np.concatenate([pred_e.attributions[i][:, keep].ravel(),
                           true_e.attributions[j][:, keep].ravel()])
    scale = scale_for(both, is_signed(pred_e) or is_signed(true_e))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6),
                             width_ratios=[1.0, 1.0, 0.45], layout="constrained")
    names = names_of(pred_e, keep)
    for ax, e, k, role in ((axes[0], pred_e, i, "predicted"), (axes[1], true_e, j, "true")):
        series, attribution = (values[:, keep] for values in own_length(e, k))
        mappable = attribution_panel(ax, series, *map_rows(e, attribution, names), scale)
        ax.set_title(f"why {label(e.class_names[int(e.targets[k])])} ({role} class)", fontsize=10)
        ax.set_xlabel("time step")
    fig.colorbar(mappable, ax=axes[:2].tolist(), label="attribution", fraction=0.03)
    probs = pred_e.probabilities[i]
    top = np.argsort(probs)[::-1][:TOP_CLASSES]
    colors = ["tab:red" if c == pred_e.predictions[i] else
              "tab:green" if c == pred_e.labels[i] else "0.6" for c in top]
    axes[2].barh(range(len(top)), probs[top], color=colors)
    axes[2].set_yticks(range(len(top)))
    axes[2].set_yticklabels([label(pred_e.class_names[c]) for c in top])
    axes[2].invert_yaxis()
    axes[2].set_xlim(0, 1)
    axes[2].set_xlabel("probability")
    axes[2].set_title("top classes (red: predicted, green: true)", fontsize=9)
    titled(fig, sample_title(pred_e, i), pred_e.inputs.shape[2], len(keep))
    convention(fig, [scale.signed], "the class each panel explains")
    return fig


def _position(e: Explanation, sample_id: int) -> int:
    return int(np.flatnonzero(e.sample_ids == sample_id)[0])


def _shared_ids(group: list[Explanation], chosen: dict[int, list[int]]) -> list[int]:
    """Sample ids drawn for the first explanation that every explanation of the group holds."""
    first = group[0]
    ids = [int(first.sample_ids[p]) for p in chosen[id(first)]]
    return [s for s in ids if all((e.sample_ids == s).any() for e in group[1:])]


def _target_pairs(items: list[Explanation]) -> list[tuple[Explanation, Explanation]]:
    """(predicted-class, true-class) explanations of the same method."""
    items = [e for e in items if not is_counterfactual(e)]
    predicted = {e.method: e for e in items if target_kind(e) == "predicted"}
    return [(predicted[e.method], e) for e in items
            if target_kind(e) == "true" and e.method in predicted]
