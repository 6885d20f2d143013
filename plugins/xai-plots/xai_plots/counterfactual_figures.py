"""A counterfactual's figure: each feature's series and its counterfactual overlaid, the changed
cells shaded, the classes and probabilities of both in the title."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, figure_size

from .figures import label

MAX_PANELS = 8  # features drawn one below the other; more: the most changed ones


def is_counterfactual(explanation: Explanation) -> bool:
    return getattr(explanation, "kind", "attribution") == "counterfactual"


def changed_runs(changed: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each contiguous run of True in ``changed [time]``."""
    edges = np.diff(np.concatenate([[0], changed.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def counterfactual_title(e: Explanation, i: int) -> str:
    """``native-guide · sample 3: Gun (0.97) -> Point (0.81), valid``."""
    pred, cf_pred = int(e.predictions[i]), int(e.extras["counterfactual_prediction"][i])
    reached = "valid" if bool(e.extras["valid"][i]) else \
        f"target {label(e.class_names[int(e.targets[i])])} not reached"
    return (f"{label(e.method)} · sample {int(e.sample_ids[i])}: {label(e.class_names[pred])} "
            f"({e.probabilities[i, pred]:.2f}) -> {label(e.class_names[cf_pred])} "
            f"({float(e.extras['counterfactual_probability'][i]):.2f}), {reached}")


def counterfactual_figure(e: Explanation, i: int):
    """The series (grey) and its counterfactual (red) per feature, changed cells shaded."""
    series, counterfactual = e.inputs[i], np.asarray(e.extras["counterfactual"][i])
    changed = np.asarray(e.extras["changed"][i], bool)
    steps = int(e.lengths[i])
    features = np.argsort(-changed.sum(0), kind="stable")[:MAX_PANELS]
    features = np.sort(features) if len(features) == series.shape[1] else features
    fig, axes = plt.subplots(len(features), 1, sharex=True, squeeze=False,
                             figsize=figure_size(9, 1.8 * len(features) + 0.6))
    for ax, f in zip(axes[:, 0], features):
        for start, stop in changed_runs(changed[:steps, f]):
            ax.axvspan(start - 0.5, stop - 0.5, color="#f5b7b1", alpha=0.5, linewidth=0)
        ax.plot(series[:steps, f], color="#555555", linewidth=1.1, label="series")
        ax.plot(counterfactual[:steps, f], color="#c0392b", linewidth=1.1, label="counterfactual")
        ax.set_ylabel(label(e.feature_names[f]))
        ax.set_xlim(-0.5, steps - 0.5)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("time")
    shown = "" if len(features) == series.shape[1] else \
        f" ({len(features)} most changed of {series.shape[1]} features)"
    axes[0, 0].set_title(counterfactual_title(e, i) + shown, fontsize=10)
    fig.tight_layout()
    return fig
