"""Axes-level drawing of one sample: attribution-coloured series, feature x time heatmaps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from .figures import label

LEGEND_MAX_FEATURES = 8


def colored_series(ax, series: np.ndarray, attribution: np.ndarray, cmap: str,
                   norm: Normalize, band_alpha: float = 0.55):
    """A univariate series drawn over a band coloured by its attribution (the CAM overlay view)."""
    low, high = float(np.min(series)), float(np.max(series))
    pad = 0.08 * (high - low or 1.0)
    ax.imshow(attribution[None, :], cmap=cmap, norm=norm, aspect="auto", alpha=band_alpha,
              extent=(-0.5, len(series) - 0.5, low - pad, high + pad), interpolation="nearest")
    ax.plot(np.arange(len(series)), series, color="black", linewidth=1.4)
    ax.set_xlim(-0.5, len(series) - 0.5)
    ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel("value")
    return ScalarMappable(norm=norm, cmap=cmap)


def feature_heatmap(ax, attribution: np.ndarray, feature_names: Sequence[str], cmap: str,
                    norm: Normalize):
    """Attribution ``[time, feature]`` as a feature (rows) x time (columns) heatmap."""
    image = ax.imshow(attribution.T, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(feature_names)))
    ax.set_yticklabels([label(f) for f in feature_names])
    ax.set_ylabel("feature")
    return image


def series_lines(ax, series: np.ndarray, feature_names: Sequence[str]) -> None:
    """Each feature of ``series [time, feature]`` as a line, with a legend when it stays readable."""
    for f, name in enumerate(feature_names):
        ax.plot(series[:, f], linewidth=1.1, label=label(name))
    ax.set_xlim(-0.5, series.shape[0] - 0.5)
    ax.set_ylabel("value")
    if len(feature_names) <= LEGEND_MAX_FEATURES:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def attribution_panel(ax, series: np.ndarray, attribution: np.ndarray,
                      feature_names: Sequence[str], cmap: str, norm: Normalize):
    """The natural single-axes view: coloured line for one feature, heatmap for several."""
    if series.shape[1] == 1:
        return colored_series(ax, series[:, 0], attribution[:, 0], cmap, norm)
    return feature_heatmap(ax, attribution, feature_names, cmap, norm)
