"""SHAP bar, beeswarm and waterfall plots of ``[sample, time, feature]`` attributions.

shap's plots take ``[sample, feature]``; time is cut into segments and each (feature, segment)
becomes one SHAP feature holding the summed attribution, so additivity (base + sum = output) holds.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, XaiError

from .figures import text

MIN_BEESWARM_SAMPLES = 2


def is_shap(e: Explanation) -> bool:
    """SHAP explanations carry an expected value or are named for the method."""
    return "expected_value" in e.extras or "shap" in e.method.lower()


def segment_table(e: Explanation, segments: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(summed attributions, mean inputs, names), each with one column per (feature, segment)."""
    if segments < 1:
        raise XaiError(f"shap_segments must be at least 1, got {segments}")
    n, steps, n_features = e.attributions.shape
    bounds = np.array_split(np.arange(steps), min(segments, steps))
    values, data, names = [], [], []
    for f, feature in enumerate(e.feature_names):
        for idx in bounds:
            values.append(np.nansum(e.attributions[:, idx, f], axis=1))  # padding left out
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a segment all padding: NaN
                data.append(np.nanmean(e.inputs[:, idx, f], axis=1))
            span = f"t{idx[0]}-{idx[-1]}"
            names.append(text(span if n_features == 1 else f"{feature} {span}"))
    return np.column_stack(values), np.column_stack(data), names


def base_values(e: Explanation) -> np.ndarray | None:
    """The expected model output per sample for its explained class, or None when unknown.

    An array extra is per sample (``[n]`` or ``[n, class]``); a JSON value is global (one number
    or one per class).
    """
    if "expected_value" not in e.extras:
        return None
    own = e.extras.get("base_value")  # per sample (variable-length series: per length)
    if isinstance(own, np.ndarray) and own.shape == (e.n_samples,):
        return own.astype(np.float64)
    raw = e.extras["expected_value"]
    ev = np.asarray(raw, dtype=np.float64)
    n, n_classes = e.probabilities.shape
    if isinstance(raw, np.ndarray) and ev.shape == (n,):
        return ev
    if isinstance(raw, np.ndarray) and ev.shape == (n, n_classes):
        return ev[np.arange(n), e.targets]
    if ev.ndim == 0:
        return np.full(n, float(ev))
    if ev.shape == (n_classes,):
        return ev[e.targets]
    raise XaiError(f"{e.method}: expected_value has shape {ev.shape}; expected one number or one "
                   f"per class ({n_classes}), or an array with one per sample ({n})")


def shap_figures(e: Explanation, positions: list[int], segments: int,
                 top_k: int) -> Iterator[tuple[str, object, int | None, str]]:
    """(file stem, figure, sample id or None, caption) of each SHAP plot of ``e``."""
    if not is_shap(e):
        return
    try:
        import shap
    except ImportError:
        raise XaiError(f"{e.method}: SHAP figures need the shap package (pip install shap)") from None

    values, data, names = segment_table(e, segments)
    base = base_values(e)
    full = shap.Explanation(values, base_values=base, data=data, feature_names=names)
    plt.figure()
    shap.plots.bar(full, max_display=top_k, show=False)
    yield ("shap_bar", _titled(f"{e.method} · mean |SHAP| per feature and time segment"), None,
           "SHAP bar summary: mean |value| of each (feature, time segment)")
    for c in np.unique(e.targets):
        rows = np.flatnonzero(e.targets == c)
        if len(rows) < MIN_BEESWARM_SAMPLES:
            continue
        plt.figure()
        shap.plots.beeswarm(full[rows], max_display=top_k, show=False, plot_size=(8, 5))
        name = e.class_names[int(c)]
        yield (f"shap_beeswarm_class_{int(c)}", _titled(f"{e.method} · beeswarm, explaining {name}"),
               None, f"SHAP beeswarm of the samples explained for class {name}")
    if base is None:
        return
    for i in positions:
        sid = int(e.sample_ids[i])
        plt.figure()
        shap.plots.waterfall(full[i], max_display=top_k, show=False)
        yield (f"shap_waterfall_sample_{sid}",
               _titled(f"{e.method} · sample {sid}, explaining {e.class_names[int(e.targets[i])]}"),
               sid, f"SHAP waterfall of sample {sid}")


def _titled(title: str):
    fig = plt.gcf()
    fig.suptitle(text(title), fontsize=11)
    return fig
