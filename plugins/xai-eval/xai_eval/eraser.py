"""Comprehensiveness and sufficiency (ERASER, DeYoung et al. 2020), in ferret's AOPC form.

For each bin b (percent of a sample's removable cells: texts' real tokens but the special ones,
every valid cell of a series) the top k = max(1, floor(b% of them)) cells by attribution make the
rationale. Comprehensiveness is the mean over the bins of p(target | x) - p(target | x without the
rationale), sufficiency the mean of p(target | x) - p(target | the rationale alone, the other
removable cells removed); removed cells become the kind's substrate. As ferret does, a bin whose
rationale equals the previous bin's (short texts) is counted once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from xaicore.plugin import BaseMetric, Explanation, LoadedModel, Option, pass_rows

from .perturbation import (
    PerturbationMetric,
    order_ranks,
    probability_curves,
    removable_cells,
    same_inputs,
    substrate_of,
)
from .randomisation import row_mean

SHARED = ("substrate", "background", "sigma", "order", "seed", "batch_size", "random_baseline")


def rationale_sizes(removable: np.ndarray, bins: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cells in each sample's rationale per bin ``[sample, bin]`` (at least one, at most the
    removable ones) and whether the bin counts (a size the previous bin had counts once)."""
    cells = removable.reshape(len(removable), -1).sum(1)[:, None]
    percent = np.unique(np.asarray(bins, np.int64))[None, :]
    sizes = np.minimum(np.maximum(1, cells * percent // 100), cells)
    counted = np.concatenate([sizes[:, :1] > 0, sizes[:, 1:] > sizes[:, :-1]], axis=1)
    return sizes, counted


class RationaleMetric(BaseMetric):
    """Shared comprehensiveness/sufficiency logic; subclasses fix the curve's ``mode``: deletion
    removes the rationale, insertion keeps only it."""

    mode: ClassVar[str] = ""
    versus_random: ClassVar[bool] = True
    default_kinds: ClassVar[tuple[str, ...]] = ("tokens",)  # on series: when asked
    capabilities: ClassVar[frozenset[str]] = frozenset({"curves", "many"})
    options: ClassVar[tuple[Option, ...]] = (
        Option("bins", list, [1, 5, 10, 20, 50], "rationale sizes, in percent of each sample's "
               "removable cells (ERASER's)", min=1, max=100),
        *(o for o in PerturbationMetric.options if o.name in SHARED),
    )

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """The score, the mean probability drop per bin (``percent``, ``curve``, ``random_curve``)
        and the per-sample scores (``per_sample``)."""
        return self.evaluate_many(model, [explanation], **options)[0]

    def evaluate_many(self, model: LoadedModel, explanations: list[Explanation],
                      **opts: Any) -> list[tuple[dict[str, float], dict[str, Any]]]:
        """Several explanations of the same inputs and targets, their perturbed copies sent through
        the model together in batches of ``batch_size``."""
        X = same_inputs(explanations)
        removable = removable_cells(model, X)
        substrate = np.where(removable, substrate_of(model, X, opts), X)  # nothing else changes
        ranks = order_ranks(explanations, removable, opts)
        n, targets = len(X), explanations[0].targets
        m = len(ranks) // n
        sizes, counted = rationale_sizes(removable, opts["bins"])
        rows = opts["batch_size"] or pass_rows(model.device, X[0].size)
        full = probability_curves(model, X, substrate, ranks[:n], targets,
                                  np.zeros((n, 1), np.int64), "deletion", rows)[:, 0]
        changed = probability_curves(model, np.tile(X, (m, 1, 1)), np.tile(substrate, (m, 1, 1)),
                                     ranks, np.tile(targets, m), np.tile(sizes, (m, 1)), self.mode,
                                     rows).reshape(m, n, -1)
        drops = full[None, :, None] - changed
        used = counted.sum(1)
        scores = np.where(used > 0, (drops * counted).sum(2) / np.maximum(used, 1), np.nan)
        percent = np.unique(np.asarray(opts["bins"], np.int64))
        results = []
        for i in range(len(explanations)):
            result = {self.name: row_mean(scores[i])}
            curve: dict[str, Any] = {"percent": percent, "curve": drops[i].mean(0),
                                     "per_sample": {self.name: scores[i]}}
            if opts["random_baseline"]:
                result[f"{self.name}_random"] = row_mean(scores[-1])
                curve["random_curve"] = drops[-1].mean(0)
            results.append((result, curve))
        return results


class ComprehensivenessMetric(RationaleMetric):
    """Comprehensiveness: the probability should fall when the rationale is removed."""

    mode = "deletion"
    name = "comprehensiveness"
    description = ("Comprehensiveness (ERASER, AOPC): probability drop without the top cells; "
                   "higher is better")
    higher_is_better = True


class SufficiencyMetric(RationaleMetric):
    """Sufficiency: the rationale alone should keep the probability."""

    mode = "insertion"
    name = "sufficiency"
    description = ("Sufficiency (ERASER, AOPC): probability drop with only the top cells; lower is "
                   "better")
    higher_is_better = False
