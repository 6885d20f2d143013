"""``GlobalPlots``: feature and time-step importance, SHAP summaries and attention maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, Option, figure_size

from .attention import attention_figures
from .counterfactual_figures import is_counterfactual
from .figures import (
    DEFAULT_MAX_SAMPLES,
    FIGURE_OPTIONS,
    Manifest,
    check_explanations,
    check_formats,
    figure_key,
    folded,
    label,
    pick_samples,
    save,
    text,
    top_features,
)
from .image_figures import class_means_figure
from .image_units import is_image
from .shap_plots import shap_figures
from .text_units import is_text

MAX_CLASSES = 8  # classes drawn one by one in the importance figures (the most explained)


class GlobalPlots:
    """Figures over all samples of each explanation, under ``out_dir/<method>/``.

    Writes per-feature importance (several features, and a map of each: not for one the explainer
    copies to every feature, ``time_only``), per-time-step importance, SHAP bar,
    beeswarm-per-class and waterfall-per-sample plots for SHAP explanations, and attention maps
    (per head and averaged) when the explanation holds ``attention_mean`` / ``attention_heads``.
    Texts are left out (sample-plots draws them, the html report has their dataset view); images
    get the mean image and mean |attribution| of each explained class.
    Options: ``samples``, ``formats`` as for sample-plots; ``shap_segments`` (time segments per
    feature for SHAP values without their own ``segment_bounds``, default 10; the ``shap``
    explainer's players are always drawn as solved) and ``top_k`` (players shown, default 12).
    """

    name = "global-plots"
    stage = "explanations"
    options = (*FIGURE_OPTIONS,
               Option("shap_segments", int, 10, "time segments of the SHAP figures", min=1,
                      max=100_000),
               Option("top_k", int, 12, "most features shown in a ranking", min=1, max=100_000))
    description = "Feature and time-step importance, SHAP summaries, attention maps"

    def render(self, explanations: Sequence[Explanation], out_dir: Path, *, samples: Any = None,
               formats: Any = None, max_samples: int = DEFAULT_MAX_SAMPLES,
               shap_segments: int = 10, top_k: int = 12, **options: Any) -> list[Path]:
        items = check_explanations(explanations)
        formats = check_formats(formats)
        out_dir = Path(out_dir)
        manifest = Manifest(out_dir)
        written: list[Path] = []
        for e in (e for e in items if is_image(e)):
            key = figure_key(e)
            written += manifest.add(save(class_means_figure(e, MAX_CLASSES), out_dir / key /
                                         "class_means", formats),
                                    kind="global", key=key, method=e.method,
                                    caption="mean image and mean |attribution| per explained class")
        # a counterfactual's change is no importance to summarise over samples
        for e in (e for e in items if not is_text(e) and not is_image(e) and not is_counterfactual(e)):
            key = figure_key(e)
            folder = out_dir / key
            if e.attributions.shape[2] > 1 and not e.time_only:  # a shared map has no split
                written += manifest.add(save(feature_importance_figure(e), folder /
                                             "feature_importance", formats),
                                        kind="global", key=key, method=e.method,
                                        caption="mean |attribution| per feature, by explained class")
            written += manifest.add(save(time_importance_figure(e), folder / "time_importance",
                                         formats),
                                    kind="global", key=key, method=e.method,
                                    caption="share of |attribution| per time step, by explained class, "
                                            "against an even spread")
            positions = pick_samples(e, samples, max_samples)
            for name, fig, sample_id, caption in shap_figures(e, positions, shap_segments, top_k):
                written += manifest.add(save(fig, folder / name, formats),
                                        kind="global" if sample_id is None else "sample-extra",
                                        key=key, method=e.method, sample_id=sample_id,
                                        caption=caption)
            for name, fig, sample_id, caption in attention_figures(e, positions):
                written += manifest.add(save(fig, folder / name, formats), kind="sample-extra",
                                        key=key, method=e.method, sample_id=sample_id,
                                        caption=caption)
        manifest.write()
        return written


def _by_class(e: Explanation, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``values`` (first axis = sample) averaged over the samples explained for each class (NaN,
    the padding of shorter series, left out), for the ``MAX_CLASSES`` most explained classes."""
    classes, counts = np.unique(e.targets, return_counts=True)
    kept = np.sort(classes[np.argsort(-counts, kind="stable")[:MAX_CLASSES]])
    return [(e.class_names[c], _nanmean(values[e.targets == c])) for c in kept]


def _class_legend(e: Explanation) -> str:
    """The title of the legend of ``_by_class`` groups."""
    n = len(np.unique(e.targets))
    return "explained class" + (f" ({MAX_CLASSES} most explained of {n})" if n > MAX_CLASSES
                                else "")


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the first axis of the values that are not NaN (NaN where there are none)."""
    count = (~np.isnan(values)).sum(axis=0)
    return np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), np.nan)


def feature_importance_figure(e: Explanation):
    """Grouped bars: mean |attribution| per feature (over time and samples), one bar per class;
    the ``MAX_FEATURES`` most important features when there are more (the title says so)."""
    per_sample = e.aggregate(over="time", how="abs_mean")  # [sample, feature]
    overall = _nanmean(per_sample)
    shown = top_features(overall)
    order = shown[np.argsort(np.nan_to_num(overall[shown], nan=-np.inf))[::-1]]
    groups = _by_class(e, per_sample)
    n_features = len(order)
    fig, ax = plt.subplots(figsize=figure_size(max(6.0, 0.55 * n_features * max(1, len(groups)) ** 0.5
                                              + 3), 4))
    width = 0.8 / len(groups)
    for g, (name, values) in enumerate(groups):
        ax.bar(np.arange(n_features) + (g - (len(groups) - 1) / 2) * width, values[order],
               width=width, label=label(name))
    ax.set_xticks(range(n_features))
    ax.set_xticklabels([label(e.feature_names[f]) for f in order], rotation=30, ha="right")
    ax.set_ylabel("mean |attribution|")
    note = folded(n_features, len(overall))
    ax.set_title(text(f"{e.method} · feature importance") + (f"\n{note}" if note else ""),
                 fontsize=11)
    ax.legend(title=_class_legend(e), fontsize=8, frameon=False)
    return fig


def time_shares(e: Explanation) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's share of its |attribution| at each time step (over features; NaN past its own
    length, and for a sample of no attribution at all) ``[sample, time]``, and the share a map
    spread evenly over the time steps would give, averaged over the samples as the shares are
    ``[time]`` (1/T for series of one length T)."""
    per_step = e.aggregate(over="feature", how="abs_sum")  # [sample, time]
    steps = np.arange(per_step.shape[1])
    inside = steps[None, :] < np.asarray(e.lengths)[:, None]
    per_step = np.where(inside, per_step, np.nan)
    total = np.nansum(per_step, axis=1, keepdims=True)
    shares = np.where(total > 0, per_step / np.where(total > 0, total, 1.0), np.nan)
    even = np.where(inside, 1.0 / np.maximum(np.asarray(e.lengths), 1)[:, None], np.nan)
    return shares, _nanmean(even)


def time_importance_figure(e: Explanation):
    """Each time step's share of the samples' |attribution| (over features), one line per class,
    on an axis from 0 with the share of an even spread over time drawn and labelled, so that a
    near-uniform map reads as one."""
    shares, even = time_shares(e)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    groups = _by_class(e, shares)
    for name, values in groups:
        ax.plot(values, linewidth=1.5, label=label(name))
    overall = _nanmean(shares)
    ax.plot(overall, color="black", linewidth=1.0, linestyle="--", label="all")
    ax.plot(even, color="0.45", linewidth=1.0, linestyle=":")
    lengths = np.unique(e.lengths)
    last = int(np.flatnonzero(np.isfinite(even))[-1]) if np.isfinite(even).any() else 0
    ax.text(last, even[last], f"uniform 1/{int(lengths[0])}" if len(lengths) == 1
            else "uniform (1/length of each series)", ha="right", va="bottom", fontsize=8,
            color="0.3")
    drawn = np.concatenate([overall, even, *(values for _, values in groups)])
    top = float(drawn[np.isfinite(drawn)].max(initial=0.0))
    ax.set_ylim(0, 1.1 * top if top > 0 else 1.0)
    ax.set_xlim(0, shares.shape[1] - 1)
    ax.set_xlabel("time step")
    ax.set_ylabel("share of |attribution|")
    ax.set_title(text(f"{e.method} · time-step importance"), fontsize=11)
    ax.legend(title=_class_legend(e), fontsize=8, frameon=False, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    return fig
