"""Attention heatmaps (query x key), averaged and per head, from an explanation's extras."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, XaiError, figure_size

from .colours import colours, scale_for
from .drawing import mappable
from .figures import sample_title

LAYER_KEY = re.compile(r"attention(?:_mean)?_layer(\d+)")
MAX_COLUMNS = 3
MAX_HEADS = 8  # heads drawn one by one; the title says how many more there are
MAX_SIDE = 512  # query and key steps drawn; longer maps are averaged over blocks of steps


def attention_maps(e: Explanation) -> list[tuple[str, str, np.ndarray, np.ndarray | None]]:
    """(file tag, title, averaged ``[n, Tq, Tk]``, per head ``[n, heads, Tq, Tk]`` or None).

    Reads ``attention_mean`` / ``attention_heads`` and the attention explainer's per-layer
    ``attention_mean_layer<i>`` / ``attention_layer<i>``, plus ``rollout`` when present.
    """
    groups = [("attention", "attention", "attention_mean", "attention_heads")]
    layers = sorted({int(m[1]) for k in e.extras if (m := LAYER_KEY.fullmatch(k))})
    groups += [(f"attention_layer{i}", f"attention layer {i}", f"attention_mean_layer{i}",
                f"attention_layer{i}") for i in layers]
    groups.append(("attention_rollout", "attention rollout over layers", "rollout", None))
    out = []
    for tag, title, mean_key, heads_key in groups:
        mean = _checked(e, mean_key, 3, "[sample, query, key]")
        heads = _checked(e, heads_key, 4, "[sample, head, query, key]") if heads_key else None
        if mean is None and heads is not None:
            mean = heads.mean(axis=1)
        if mean is not None:
            out.append((tag, title, mean, heads))
    return out


def _checked(e: Explanation, key: str, ndim: int, layout: str) -> np.ndarray | None:
    value = e.extras.get(key)
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float32)
    if value.ndim != ndim or value.shape[0] != e.n_samples:
        raise XaiError(f"{e.method}: {key} must be {layout} with {e.n_samples} samples, got shape "
                       f"{value.shape}")
    return value


def attention_figures(e: Explanation, positions: list[int]
                      ) -> Iterator[tuple[str, object, int, str]]:
    """(file stem, figure, sample id, caption) of each attention map of each chosen sample."""
    for tag, title, mean, heads in attention_maps(e):
        for i in positions:
            sid = int(e.sample_ids[i])
            yield (f"{tag}_sample_{sid}",
                   attention_figure(e, i, mean[i], None if heads is None else heads[i], title),
                   sid, f"{title} (query x key) of sample {sid}"
                        + (", averaged and per head" if heads is not None else ""))


def attention_figure(e: Explanation, i: int, mean: np.ndarray, heads: np.ndarray | None,
                     title: str = "attention"):
    """Query x key heatmaps: the head average first, then each head, each with its colour bar."""
    # a variable-length series: its map is NaN past its own tokens (padding), cut off here
    queries, keys = (int((~np.isnan(mean).all(axis=a)).sum()) for a in (1, 0))
    mean, heads = mean[:queries, :keys], None if heads is None else heads[:, :queries, :keys]
    maps = [("mean over heads" if heads is not None else "weights", mean)]
    if heads is not None and heads.shape[0] > 1:
        maps += [(f"head {h}", heads[h]) for h in range(min(heads.shape[0], MAX_HEADS))]
        if heads.shape[0] > MAX_HEADS:
            title += f" ({MAX_HEADS} of {heads.shape[0]} heads drawn)"
    columns = min(len(maps), MAX_COLUMNS)
    rows = math.ceil(len(maps) / columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=figure_size(3.6 * columns, 3.2 * rows + 0.5), layout="constrained")
    extent = (-0.5, keys - 0.5, queries - 0.5, -0.5)
    for ax, (panel, matrix) in zip(axes.ravel(), maps):
        shown = block_mean(matrix)
        scale = scale_for(shown, False)
        ax.imshow(colours(shown, scale), interpolation="nearest", extent=extent)
        fig.colorbar(mappable(scale), ax=ax, shrink=0.8)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("key time step")
        ax.set_ylabel("query time step")
    for ax in axes.ravel()[len(maps):]:
        ax.set_visible(False)
    fig.suptitle(f"{title} · {sample_title(e, i, with_method=False)}", fontsize=11)
    fig.supxlabel("colours: each map's weights, white at 0 to red at its largest", fontsize=8,
                  color="0.25")
    return fig


def block_mean(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` averaged over blocks of steps to at most ``MAX_SIDE`` rows and columns."""
    steps = [math.ceil(size / MAX_SIDE) for size in matrix.shape]
    if steps == [1, 1]:
        return matrix
    padded = np.full([math.ceil(size / step) * step for size, step in zip(matrix.shape, steps)],
                     np.nan, dtype=np.float32)
    padded[:matrix.shape[0], :matrix.shape[1]] = matrix
    blocks = padded.reshape(padded.shape[0] // steps[0], steps[0], padded.shape[1] // steps[1],
                            steps[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a block of padding only: NaN
        return np.nanmean(blocks, axis=(1, 3))
