"""Deletion and insertion curves after RISE (Petsiuk et al. 2018), adapted to time series.

Cells ``(time, feature)`` are removed (replaced by a substrate) or inserted (restored from the
input, starting from the substrate) in order of attribution, about ``step_fraction`` of the cells per
step. The curve is the probability of the explained class; its area (trapezoid over the fraction of
cells changed, 0..1) is the score. The same curve for a seeded random order is reported beside it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from xaicore.plugin import Explanation, LoadedModel, Option, XaiError, defaults_of, validate

from .options import background_array

SUBSTRATES = ("mean", "smooth")
ORDERS = ("signed", "abs")


def substrate_for(model: LoadedModel, inputs: np.ndarray, kind: str, background: Any = None,
                  sigma: float | None = None) -> np.ndarray:
    """What removed cells become: the per-feature train mean, or the input smoothed along time."""
    if kind == "mean":
        if background is not None:
            mean = background_array(background, inputs.shape[2], "substrate 'mean'").mean(axis=(0, 1))
        elif model.normalisation is not None:
            mean = model.normalisation.mean.detach().cpu().numpy().reshape(-1)
        else:
            raise XaiError("substrate 'mean' needs background= (the train inputs) for a model "
                           "without stored train normalisation; or use substrate='smooth'")
        return np.broadcast_to(mean.astype(np.float32), inputs.shape).copy()
    if kind == "smooth":
        from scipy.ndimage import gaussian_filter1d

        sigma = float(sigma) if sigma is not None else max(1.0, inputs.shape[1] / 20)
        if sigma <= 0:
            raise XaiError(f"sigma must be positive, got {sigma}")
        return gaussian_filter1d(inputs, sigma, axis=1, mode="nearest").astype(np.float32)
    raise XaiError(f"substrate must be one of {', '.join(SUBSTRATES)}, not {kind!r}")


def cell_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every cell of every sample, 0 for the highest score (ties in index order)."""
    n = scores.shape[0]
    flat = scores.reshape(n, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(flat.shape[1]), flat.shape), axis=1)
    return ranks.reshape(scores.shape)


def step_counts(n_cells: int, step_fraction: float) -> np.ndarray:
    """How many cells are changed at each point of the curve: 0, k, 2k, ..., n_cells."""
    if not 0 < step_fraction <= 1:
        raise XaiError(f"step_fraction must be in (0, 1], got {step_fraction}")
    per_step = max(1, round(step_fraction * n_cells))
    n_steps = math.ceil(n_cells / per_step)
    return np.minimum(np.arange(n_steps + 1) * per_step, n_cells)


@torch.no_grad()
def probability_curves(model: LoadedModel, inputs: np.ndarray, substrate: np.ndarray,
                       ranks: np.ndarray, targets: np.ndarray, counts: np.ndarray, mode: str,
                       batch_size: int = 512) -> np.ndarray:
    """Target-class probability ``[sample, point]`` as cells are deleted or inserted by rank.

    All points of several samples go through the model in one forward pass of about
    ``batch_size`` series.
    """
    n, T, F = inputs.shape
    device = model.device
    points = len(counts)
    limits = torch.as_tensor(counts, device=device).view(1, points, 1, 1)
    per_batch = max(1, batch_size // points)
    out = np.empty((n, points), dtype=np.float64)
    model.module.eval()
    for start in range(0, n, per_batch):
        sl = slice(start, start + per_batch)
        x = torch.as_tensor(inputs[sl], device=device)[:, None]
        s = torch.as_tensor(substrate[sl], device=device)[:, None]
        changed = torch.as_tensor(ranks[sl], device=device)[:, None] < limits
        batch = torch.where(changed, s, x) if mode == "deletion" else torch.where(changed, x, s)
        b = batch.shape[0]
        probs = torch.softmax(model.module(batch.reshape(b * points, T, F)).float(), dim=1)
        target = torch.as_tensor(targets[sl], device=device).repeat_interleave(points)
        out[sl] = probs.gather(1, target[:, None])[:, 0].view(b, points).cpu().numpy()
    return out


class PerturbationMetric:
    """Shared deletion/insertion logic; subclasses fix ``mode`` and the direction of the score."""

    mode: ClassVar[str] = ""
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = (
        Option("substrate", str, "mean", "what removed cells become: mean (train mean) or smooth "
               "(the input smoothed along time)"),
        Option("background", object, None, "train inputs [n, time, feature] for substrate mean "
               "when the model stores no normalisation"),
        Option("sigma", float, None, "smoothing width in time steps for substrate smooth (default "
               "length / 20)", min=1e-9, max=1e6),
        Option("step_fraction", float, 0.01, "share of the cells changed per curve point",
               min=1e-9, max=1.0),
        Option("order", str, "signed", "rank cells by signed or absolute attribution",
               choices=ORDERS),
        Option("seed", int, 0, "seed of the random-order baseline", min=0, max=2**63 - 1),
        Option("batch_size", int, 512, "inputs per forward pass", min=1, max=1_000_000),
    )
    defaults: ClassVar[dict[str, Any]] = defaults_of(options)

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """Scores plus the mean curves (``fraction``, ``curve``, ``random_curve``) for figures."""
        opts = validate(f"metric {self.name}", self.options, options)
        X = explanation.inputs
        substrate = substrate_for(model, X, opts["substrate"], opts["background"], opts["sigma"])
        scores = explanation.attributions
        if opts["order"] == "abs":
            scores = np.abs(scores)
        counts = step_counts(X.shape[1] * X.shape[2], float(opts["step_fraction"]))
        fraction = counts / counts[-1]
        random_scores = np.random.default_rng(int(opts["seed"])).random(X.shape)
        curves = {}
        for key, ordering in (("curve", scores), ("random_curve", random_scores)):
            per_sample = probability_curves(model, X, substrate, cell_ranks(ordering),
                                            explanation.targets, counts, self.mode,
                                            int(opts["batch_size"]))
            curves[key] = per_sample.mean(axis=0)
        auc = float(np.trapezoid(curves["curve"], fraction))
        random_auc = float(np.trapezoid(curves["random_curve"], fraction))
        return ({f"{self.mode}_auc": auc, f"{self.mode}_auc_random": random_auc},
                {"fraction": fraction, **curves})


class DeletionMetric(PerturbationMetric):
    """Deletion: the target probability should fall fast as the most relevant cells go."""

    mode = "deletion"
    name = "deletion"
    description = "Deletion AUC (RISE) of the target probability; lower is better"
    higher_is_better = False


class InsertionMetric(PerturbationMetric):
    """Insertion: the target probability should rise fast as the most relevant cells return."""

    mode = "insertion"
    name = "insertion"
    description = "Insertion AUC (RISE) of the target probability; higher is better"
    higher_is_better = True
