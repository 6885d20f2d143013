"""AUP and AUR against a ground-truth mask, as in Ismail et al. (NeurIPS 2020).

For every level q in 10%..90% the selected cells are the smallest top set (by |attribution|) holding
q of the sample's saliency mass. Saliency-weighted precision is the mass of selected cells inside
the mask over the mass selected; recall is that mass over the mask's whole mass. Samples without
saliency (or without mass in the mask, for recall) are left out of the mean, as in the paper's code.
The areas are trapezoids over the levels, divided by their span so that a perfect method scores 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from xaicore.plugin import BaseMetric, Explanation, LoadedModel, Option, XaiError

LEVELS = np.round(np.arange(0.1, 0.91, 0.1), 2)


def precision_recall(attributions: np.ndarray, mask: np.ndarray,
                     levels: np.ndarray = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Mean saliency-weighted precision and recall at each mass level."""
    n = attributions.shape[0]
    sal = np.abs(attributions.reshape(n, -1)).astype(np.float64)
    truth = mask.reshape(n, -1).astype(bool)
    order = np.argsort(-sal, axis=1, kind="stable")
    sorted_sal = np.take_along_axis(sal, order, axis=1)
    total = sorted_sal.sum(axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(sal.shape[1]), sal.shape), axis=1)
    cum = np.cumsum(sorted_sal, axis=1) / np.where(total > 0, total, 1)[:, None]
    precision, recall = [], []
    for q in levels:
        k = (cum < q - 1e-12).sum(axis=1) + 1  # smallest top set with at least q of the mass
        selected = rank < k[:, None]
        tp = (sal * (selected & truth)).sum(axis=1)
        fp = (sal * (selected & ~truth)).sum(axis=1)
        fn = (sal * (~selected & truth)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
            r = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        precision.append(np.nanmean(p) if np.isfinite(p).any() else 0.0)
        recall.append(np.nanmean(r) if np.isfinite(r).any() else 0.0)
    return np.asarray(precision), np.asarray(recall)


def area(values: np.ndarray, levels: np.ndarray = LEVELS) -> float:
    """Trapezoid area over the levels, divided by their span (1 for a curve at 1 everywhere)."""
    return float(np.trapezoid(values, levels) / (levels[-1] - levels[0]))


class LocalisationMetric(BaseMetric):
    """Shared AUP/AUR logic; ``mask`` (ground truth aligned with the explained samples) is required."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("mask",)
    capabilities: ClassVar[frozenset[str]] = frozenset({"curves"})
    options: ClassVar[tuple[Option, ...]] = (
        Option("mask", object, None, "boolean ground truth [sample, time, feature] of the explained "
               "samples"),)
    score: ClassVar[int] = 0  # 0 precision, 1 recall

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **opts: Any) -> tuple[dict[str, float], dict[str, Any]]:
        if opts["mask"] is None:
            raise XaiError(f"metric {self.name} needs the ground-truth mask of the explained "
                           f"samples (mask=, e.g. dataset.info['mask_test'] of a synthetic dataset)")
        mask = np.asarray(opts["mask"], dtype=bool)
        if mask.shape != explanation.attributions.shape:
            raise XaiError(f"metric {self.name}: mask has shape {mask.shape} but the explanation "
                           f"is {explanation.attributions.shape} [sample, time, feature]")
        curves = precision_recall(explanation.attributions, mask)
        return {self.name: area(curves[self.score])}, {"level": LEVELS, "curve": curves[self.score]}


class AUPMetric(LocalisationMetric):
    """Area under the saliency-weighted precision curve."""

    name = "aup"
    description = "Area under saliency-weighted precision against the ground-truth mask"
    score = 0


class AURMetric(LocalisationMetric):
    """Area under the saliency-weighted recall curve."""

    name = "aur"
    description = "Area under saliency-weighted recall against the ground-truth mask"
    score = 1
