"""Attention heatmaps (query x key), averaged and per head, from an explanation's extras."""

from __future__ import annotations

import math
from typing import Iterator

import matplotlib.pyplot as plt
import numpy as np

from xaicore.errors import XaiError
from xaicore.explanation import Explanation

from .figures import sample_title

MEAN_KEY = "attention_mean"
HEADS_KEY = "attention_heads"
MAX_COLUMNS = 5


def attention_maps(e: Explanation) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(averaged ``[n, Tq, Tk]``, per head ``[n, heads, Tq, Tk]``) from the extras, each or None."""
    mean = e.extras.get(MEAN_KEY)
    heads = e.extras.get(HEADS_KEY)
    n = e.n_samples
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32)
        if mean.ndim != 3 or mean.shape[0] != n:
            raise XaiError(f"{e.method}: {MEAN_KEY} must be [sample, query, key] with {n} samples, "
                           f"got shape {mean.shape}")
    if heads is not None:
        heads = np.asarray(heads, dtype=np.float32)
        if heads.ndim != 4 or heads.shape[0] != n:
            raise XaiError(f"{e.method}: {HEADS_KEY} must be [sample, head, query, key] with {n} "
                           f"samples, got shape {heads.shape}")
        if mean is None:
            mean = heads.mean(axis=1)
    return mean, heads


def attention_figures(e: Explanation, positions: list[int]
                      ) -> Iterator[tuple[str, object, int, str]]:
    """(file stem, figure, sample id, caption) of the attention map of each chosen sample."""
    mean, heads = attention_maps(e)
    if mean is None:
        return
    for i in positions:
        sid = int(e.sample_ids[i])
        yield (f"attention_sample_{sid}", attention_figure(e, i, mean[i],
                                                           None if heads is None else heads[i]),
               sid, f"attention weights (query x key) of sample {sid}, averaged and per head")


def attention_figure(e: Explanation, i: int, mean: np.ndarray, heads: np.ndarray | None):
    """Seaborn heatmaps: the head average first, then each head, each with its own colour bar."""
    import seaborn as sns

    maps = [("mean over heads", mean)]
    if heads is not None and heads.shape[0] > 1:
        maps += [(f"head {h}", heads[h]) for h in range(heads.shape[0])]
    columns = min(len(maps), MAX_COLUMNS)
    rows = math.ceil(len(maps) / columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=(3.7 * columns, 3.3 * rows + 0.4),
                             layout="constrained")
    ticks = max(1, mean.shape[0] // 6)
    for ax, (title, matrix) in zip(axes.ravel(), maps):
        sns.heatmap(matrix, ax=ax, cmap="viridis", vmin=0.0, square=True, xticklabels=ticks,
                    yticklabels=ticks, rasterized=True, cbar_kws={"shrink": 0.8})
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key time step")
        ax.set_ylabel("query time step")
    for ax in axes.ravel()[len(maps):]:
        ax.set_visible(False)
    fig.suptitle(sample_title(e, i), fontsize=11)
    return fig
