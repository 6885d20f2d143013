"""Axes-level drawing of one sample: attribution-coloured series, feature x time heatmaps, in the
colours of ``colours.py``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable

from .colours import Scale, colours
from .figures import label

LEGEND_MAX_FEATURES = 8


def mappable(scale: Scale) -> ScalarMappable:
    """What a colour bar of ``scale`` draws."""
    return ScalarMappable(norm=scale.norm(), cmap=scale.colormap())


def colored_series(ax, series: np.ndarray, attribution: np.ndarray, scale: Scale):
    """A univariate series drawn over a band coloured by its attribution (the CAM overlay view)."""
    low, high = float(np.min(series)), float(np.max(series))
    pad = 0.08 * (high - low or 1.0)
    ax.imshow(colours(attribution[None, :], scale), aspect="auto",
              extent=(-0.5, len(series) - 0.5, low - pad, high + pad), interpolation="nearest")
    ax.plot(np.arange(len(series)), series, color="white", linewidth=2.8)
    ax.plot(np.arange(len(series)), series, color="black", linewidth=1.4)
    ax.set_xlim(-0.5, len(series) - 0.5)
    ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel("value")
    return mappable(scale)


def feature_heatmap(ax, attribution: np.ndarray, feature_names: Sequence[str], scale: Scale):
    """Attribution ``[time, feature]`` as a feature (rows) x time (columns) heatmap."""
    ax.imshow(colours(attribution.T, scale), aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(feature_names)))
    ax.set_yticklabels([label(f) for f in feature_names])
    ax.set_ylabel("feature")
    return mappable(scale)


def series_lines(ax, series: np.ndarray, feature_names: Sequence[str]) -> None:
    """Each feature of ``series [time, feature]`` as a line, with a legend when it stays readable."""
    for f, name in enumerate(feature_names):
        ax.plot(series[:, f], linewidth=1.1, label=label(name))
    ax.set_xlim(-0.5, series.shape[0] - 0.5)
    ax.set_ylabel("value")
    if len(feature_names) <= LEGEND_MAX_FEATURES:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def attribution_panel(ax, series: np.ndarray, attribution: np.ndarray,
                      feature_names: Sequence[str], scale: Scale):
    """The natural single-axes view: coloured line for one feature, heatmap for several."""
    if series.shape[1] == 1:
        return colored_series(ax, series[:, 0], attribution[:, 0], scale)
    return feature_heatmap(ax, attribution, feature_names, scale)
