"""SHAP bar, beeswarm and waterfall plots of ``[sample, time, feature]`` attributions.

shap's plots take ``[sample, feature]``: each *player* of the game that was solved (one time
segment of one feature, ``segment_bounds`` of the ``shap`` explainer) becomes one SHAP feature
holding the sum of its attributions, which is its Shapley value, so the bars, dots and waterfall
steps are the values computed and additivity (base + sum = output) holds. Labels carry the real
bounds (``acc_x t12–13``). Explanations without segments (DeepExplainer's per-step values, other
SHAP-like methods) are cut into ``shap_segments`` equal segments per feature instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, XaiError

from .figures import label, text, top_features

MIN_BEESWARM_SAMPLES = 2
MAX_PLAYERS = 200  # players (feature, segment) drawn one by one; the others are summed into one


def is_shap(e: Explanation) -> bool:
    """SHAP explanations carry an expected value or are named for the method."""
    return "expected_value" in e.extras or "shap" in e.method.lower()


def segment_bounds(e: Explanation, segments: int) -> list[int]:
    """Time bounds of the players: the explanation's own ``segment_bounds``, else ``segments``
    (nearly) equal segments."""
    steps = e.attributions.shape[1]
    bounds = e.extras.get("segment_bounds")
    if bounds is None or isinstance(bounds, dict):  # a dict: per series length, no common players
        if segments < 1:
            raise XaiError(f"shap_segments must be at least 1, got {segments}")
        parts = np.array_split(np.arange(steps), min(segments, steps))
        return [int(idx[0]) for idx in parts] + [steps]
    if not (isinstance(bounds, list) and len(bounds) >= 2
            and all(type(b) is int for b in bounds) and bounds[0] == 0 and bounds[-1] == steps
            and all(a < b for a, b in zip(bounds, bounds[1:]))):
        raise XaiError(f"{e.method}: segment_bounds {str(bounds)[:60]} are not increasing time "
                       f"bounds from 0 to the series length {steps}")
    return bounds


def segment_table(e: Explanation, segments: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(summed attributions, mean inputs, names), each with one column per player (feature,
    segment), players in the explainer's order: segment ``s`` of feature ``f`` at ``f * S + s``
    (padding left out: a segment all padding has value 0 and input NaN)."""
    bounds = segment_bounds(e, segments)
    starts = np.asarray(bounds[:-1])
    n, _, n_features = e.attributions.shape
    valid = ~np.isnan(e.inputs)
    values = np.add.reduceat(np.nan_to_num(e.attributions, nan=0.0, posinf=np.inf, neginf=-np.inf),
                             starts, axis=1)
    sums = np.add.reduceat(np.where(valid, e.inputs, 0.0), starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        data = sums / np.add.reduceat(valid, starts, axis=1)
    spans = [f"t{a}" if b - a == 1 else f"t{a}\u2013{b - 1}" for a, b in zip(bounds, bounds[1:])]
    names = [span if n_features == 1 else f"{label(feature)} {span}"
             for feature in e.feature_names for span in spans]

    def players(table: np.ndarray) -> np.ndarray:  # [n, segment, feature] -> [n, feature x segment]
        return table.transpose(0, 2, 1).reshape(n, -1)

    return players(values), players(data), names


def fold_players(values: np.ndarray, data: np.ndarray,
                 names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """At most ``MAX_PLAYERS`` columns of a ``segment_table``: the players of largest mean
    |value|, the others summed into one column named for how many it holds (so additivity
    holds; its input is their mean input, padding as 0)."""
    if values.shape[1] <= MAX_PLAYERS:
        return values, data, names
    top = top_features(np.nanmean(np.abs(values), axis=0), MAX_PLAYERS - 1)
    rest = np.ones(values.shape[1], dtype=bool)
    rest[top] = False
    return (np.column_stack([values[:, top], values[:, rest].sum(1)]),
            np.column_stack([data[:, top], np.nan_to_num(data[:, rest]).mean(1)]),
            [names[i] for i in top] + [f"{int(rest.sum()):,} other players, summed"])


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

    values, data, names = fold_players(*segment_table(e, segments))
    base = base_values(e)
    full = shap.Explanation(values, base_values=base, data=data, feature_names=names)
    plt.figure()
    shap.plots.bar(full, max_display=top_k, show=False)
    yield ("shap_bar", _titled(f"{e.method} · mean |SHAP| per feature and time segment"), None,
           "SHAP bar summary: mean |value| of each player (a time segment of a feature)")
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
