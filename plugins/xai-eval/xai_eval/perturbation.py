"""Deletion and insertion curves after RISE (Petsiuk et al. 2018), adapted to time series.

Cells ``(time, feature)`` are removed (replaced by a substrate) or inserted (restored from the
input, starting from the substrate) in order of attribution, about ``step_fraction`` of the cells per
step. The curve is the probability of the explained class; its area (trapezoid over the fraction of
cells changed, 0..1) is the score. The same curve for a seeded random order is reported beside it.

Every kind of input steps the same way: an image's cells are its ``(pixel, channel)`` values, so
a 32x32 grey image changes about 102 pixels per step.

Variable-length series: only valid cells are ranked and changed (the fraction is of each sample's
own valid cells), the padding stays padding, and smoothing and imputation stay within the series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from xaicore.plugin import BaseMetric, Explanation, LoadedModel, Option, XaiError, modality_of, pass_rows

ORDERS = ("signed", "abs")


def cell_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every cell of every sample, 0 for the highest score (ties in index order); NaN
    cells (padding) rank last."""
    n = scores.shape[0]
    flat = np.where(np.isnan(scores), -np.inf, scores).reshape(n, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(flat.shape[1]), flat.shape), axis=1)
    return ranks.reshape(scores.shape)


def removable_cells(model: LoadedModel, X: np.ndarray) -> np.ndarray:
    """The cells of ``X`` a metric may remove: the kind's ``removable`` (texts: the real tokens but
    the special ones), every valid cell for a kind without one (series)."""
    removable = getattr(modality_of(model), "removable", None)
    return np.asarray(removable(model, X), bool) if callable(removable) else ~np.isnan(X)


def substrate_of(model: LoadedModel, X: np.ndarray, opts: dict) -> np.ndarray:
    """What removed cells of ``X`` become: the kind's substrate ``opts["substrate"]`` (default
    its first)."""
    modality = modality_of(model)
    return modality.substrate(opts.get("substrate") or modality.substrates[0], model, X,
                              background=opts["background"], sigma=opts.get("sigma"))


def same_inputs(explanations: list[Explanation]) -> np.ndarray:
    """The inputs the explanations share, or an XaiError when their inputs or targets differ."""
    X = explanations[0].inputs
    for e in explanations[1:]:
        if e.inputs.shape != X.shape or not np.array_equal(e.targets, explanations[0].targets):
            raise XaiError("evaluate_many needs explanations of the same inputs and targets")
    return X


def order_ranks(explanations: list[Explanation], removable: np.ndarray, opts: dict,
                least_first: bool = False) -> np.ndarray:
    """Ranks ``[ordering * sample, ...]`` of the removable cells (the others rank last) by each
    explanation's signed or absolute attributions (``order``), then, with ``random_baseline``,
    by a seeded random order."""
    orderings = []
    for e in explanations:
        scores = np.abs(e.attributions) if opts["order"] == "abs" else e.attributions
        orderings.append(-scores if least_first else scores)
    if opts.get("random_baseline", True):
        orderings.append(np.random.default_rng(int(opts["seed"])).random(removable.shape))
    return np.concatenate([cell_ranks(np.where(removable, o, np.nan)) for o in orderings])


def continuous_only(model: LoadedModel, what: str) -> str | None:
    """Why ``what``, which needs inputs on a continuous scale, cannot apply to ``model``'s kind of
    input (one that does not declare ``continuous``: token ids), or None."""
    kind = modality_of(model)
    if getattr(kind, "continuous", False):
        return None
    return f"{what}, which needs inputs on a continuous scale, not {kind.description.lower()}"


def step_counts(n_cells: int, step_fraction: float) -> np.ndarray:
    """How many cells are changed at each point of the curve: 0, k, 2k, ..., n_cells."""
    if not 0 < step_fraction <= 1:
        raise XaiError(f"step_fraction must be in (0, 1], got {step_fraction}")
    per_step = max(1, round(step_fraction * n_cells))
    n_steps = math.ceil(n_cells / per_step)
    return np.minimum(np.arange(n_steps + 1) * per_step, n_cells)


def linear_impute(x: torch.Tensor, removed: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Removed cells of ``x`` ``[n, time, feature]`` imputed from their kept neighbours in time.

    This is the solution of ROAD's linear system (Rong et al. 2022) on the time axis: every removed
    cell equals the average of its two neighbours in time (one at the ends), kept cells fixed. In
    one dimension that system is solved exactly by linear interpolation between the nearest kept
    cells before and after a gap, and by the nearest kept cell beyond the ends; a feature with no
    kept cell at all takes ``fallback`` (the train mean). Kept cells are returned unchanged.
    """
    n, T, F = x.shape
    t = torch.arange(T, device=x.device).view(1, T, 1).expand(n, T, F)
    kept = ~removed & ~torch.isnan(x)  # padding is no neighbour
    prev = torch.where(kept, t, torch.full_like(t, -1)).cummax(dim=1).values
    nxt = torch.where(kept, t, torch.full_like(t, T)).flip(1).cummin(dim=1).values.flip(1)
    has_prev, has_next = prev >= 0, nxt < T
    x_prev = x.gather(1, prev.clamp(0, T - 1))
    x_next = x.gather(1, nxt.clamp(0, T - 1))
    span = (nxt - prev).clamp_min(1).to(x.dtype)
    w = (t - prev).to(x.dtype) / span
    inner = x_prev + (x_next - x_prev) * w
    value = torch.where(has_prev & has_next, inner,
                        torch.where(has_prev, x_prev, torch.where(has_next, x_next,
                                                                  fallback.expand_as(x))))
    return torch.where(removed, value, x)


Imputer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def imputer_of(model: LoadedModel) -> Imputer:
    """How ROAD imputes removed cells of ``model``'s inputs: the kind's ``impute`` (images: from
    the eight neighbours in the image plane), else ``linear_impute`` along the positions."""
    impute = getattr(modality_of(model), "impute", None)
    return partial(impute, model) if callable(impute) else linear_impute


def road_noise(shape: tuple[int, ...], std: np.ndarray, seed: int) -> np.ndarray:
    """ROAD's Gaussian noise ``[sample, point, time, feature]`` (per-feature ``std``), drawn once
    per sample and curve point: every ordering of a sample meets the same noise, so a method's
    score does not depend on which others it is scored with, and methods compare on common draws."""
    noise = np.random.default_rng([seed, 1]).standard_normal(shape, dtype=np.float32)  # not the
    # random order's stream (default_rng(seed))
    return noise * np.asarray(std, np.float32).reshape(1, 1, 1, -1)


@torch.no_grad()
def probability_curves(model: LoadedModel, inputs: np.ndarray, substrate: np.ndarray,
                       ranks: np.ndarray, targets: np.ndarray, limits: np.ndarray, mode: str,
                       batch_size: int = 512, noise: np.ndarray | None = None) -> np.ndarray:
    """Target-class probability ``[sample, point]`` as cells are deleted or inserted by rank.

    ``limits [sample, point]``: cells ranked below it are changed at that point of the curve.
    All points of several samples go through the model in one forward pass of about
    ``batch_size`` series. With ``noise`` (``[sample, point, time, feature]``; row ``i`` of the
    inputs takes ``noise[i % len(noise)]``) removed cells are not replaced by ``substrate`` but
    imputed from their kept neighbours (the kind's ``imputer_of``) plus that noise (ROAD).
    """
    n, T, F = inputs.shape
    device = model.device
    points = limits.shape[1]
    per_batch = max(1, batch_size // points)
    out = np.empty((n, points), dtype=np.float64)
    if noise is not None:
        fallback = torch.as_tensor(np.asarray(substrate[0, 0], np.float32), device=device).view(1, 1, F)
        impute = imputer_of(model)
    model.module.eval()
    for start in range(0, n, per_batch):
        sl = slice(start, start + per_batch)
        x = torch.as_tensor(inputs[sl], device=device)[:, None]
        limit = torch.as_tensor(limits[sl], device=device)[:, :, None, None]
        changed = torch.as_tensor(ranks[sl], device=device)[:, None] < limit
        b = x.shape[0]
        if noise is not None:
            xs = x.expand(b, points, T, F).reshape(b * points, T, F)
            gone = changed.reshape(b * points, T, F)
            filled = impute(xs, gone, fallback)
            drawn = torch.as_tensor(noise[np.arange(start, start + b) % len(noise)], device=device)
            batch = (torch.where(gone, filled + drawn.reshape(b * points, T, F), xs)
                     if mode == "deletion" else None)
            if batch is None:
                raise XaiError("imputation is a removal strategy: use it with deletion (ROAD)")
        else:
            s = torch.as_tensor(substrate[sl], device=device)[:, None]
            batch = torch.where(changed, s, x) if mode == "deletion" else torch.where(changed, x, s)
            batch = batch.reshape(b * points, T, F)
        probs = torch.softmax(model.module(batch).float(), dim=1)
        target = torch.as_tensor(targets[sl], device=device).repeat_interleave(points)
        out[sl] = probs.gather(1, target[:, None])[:, 0].view(b, points).cpu().numpy()
    return out


class PerturbationMetric(BaseMetric):
    """Shared deletion/insertion logic; subclasses fix ``mode`` and the direction of the score."""

    mode: ClassVar[str] = ""
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    versus_random: ClassVar[bool] = True  # the evaluation compares every method with random on it
    capabilities: ClassVar[frozenset[str]] = frozenset({"curves", "many"})
    options: ClassVar[tuple[Option, ...]] = (
        Option("substrate", str, None, "what removed cells become, one the kind of input declares "
               "(default its first): series mean (train mean) or smooth (the input smoothed along "
               "time); texts mask or pad (the token, special tokens never removed); images mean "
               "(the train mean per channel) or blurred (the image blurred)"),
        Option("background", object, None, "train inputs [n, time, feature] for substrate mean "
               "when the model stores no normalisation"),
        Option("sigma", float, None, "smoothing width: time steps for series' smooth (default "
               "length / 20), pixels for images' blurred (default a tenth of the shorter side)",
               min=1e-9, max=1e6),
        Option("step_fraction", float, 0.1, "share of the cells changed per curve point (11 "
               "points, as ROAD; on the demo run the AUCs of 0.01 differ by at most 0.005)",
               min=1e-9, max=1.0),
        Option("order", str, "signed", "rank cells by signed or absolute attribution",
               choices=ORDERS),
        Option("seed", int, 0, "seed of the random-order baseline", min=0, max=2**63 - 1),
        Option("batch_size", int, None, "inputs per forward pass (default: the device's "
               "fastest, xaicore.plugin.pass_rows)", min=1, max=1_000_000),
        Option("random_baseline", bool, True, "also score a seeded random order (the evaluation "
               "command scores the random method instead)"),
    )

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """Scores plus the mean curves (``fraction``, ``curve``, ``random_curve``) for figures and
        the per-sample scores (``per_sample``) for intervals."""
        return self.evaluate_many(model, [explanation], **options)[0]

    def score_name(self) -> str:
        return f"{self.mode}_auc"

    def removal(self, opts: dict) -> tuple[str, bool]:
        """The curve's mode (deletion/insertion) and whether the cells are ranked least relevant first."""
        return self.mode, False

    def evaluate_many(self, model: LoadedModel, explanations: list[Explanation],
                      **opts: Any) -> list[tuple[dict[str, float], dict[str, Any]]]:
        """Several explanations of the same inputs and targets (e.g. one per method), their perturbed
        copies sent through the model together in batches of ``batch_size``."""
        X = same_inputs(explanations)
        substrate = substrate_of(model, X, opts)
        mode, least_first = self.removal(opts)
        noise_std = self.imputation_noise(model, X, opts)
        counts = step_counts(X.shape[1] * X.shape[2], float(opts["step_fraction"]))
        fraction = counts / counts[-1]
        with_random = bool(opts.get("random_baseline", True))
        removable = removable_cells(model, X)
        ranks = order_ranks(explanations, removable, opts, least_first)
        m, n = len(ranks) // len(X), len(X)
        # each sample changes the same fraction of its own removable cells at every point
        valid_cells = removable.reshape(n, -1).sum(1)
        limits = np.round(fraction[None, :] * valid_cells[:, None]).astype(np.int64)
        rows = opts["batch_size"] or pass_rows(model.device, X[0].size)
        targets = explanations[0].targets
        noise = (None if noise_std is None else
                 road_noise((n, len(fraction), *X.shape[1:]), noise_std, int(opts["seed"])))
        # the first point (nothing changed) and the last (every valid cell changed) do not depend
        # on the order: one pass over them serves every ordering
        ends = probability_curves(model, X, substrate, ranks[:n], targets, limits[:, [0, -1]],
                                  mode, rows, None if noise is None else noise[:, [0, -1]])
        per_sample = np.empty((m, n, len(fraction)))
        per_sample[:, :, 0], per_sample[:, :, -1] = ends[:, 0], ends[:, 1]
        if len(fraction) > 2:
            per_sample[:, :, 1:-1] = probability_curves(
                model, np.tile(X, (m, 1, 1)), np.tile(substrate, (m, 1, 1)), ranks,
                np.tile(targets, m), np.tile(limits[:, 1:-1], (m, 1)), mode, rows,
                None if noise is None else noise[:, 1:-1]).reshape(m, n, -1)
        aucs = np.trapezoid(per_sample, fraction, axis=2)
        name = self.score_name()
        results = []
        for i in range(len(explanations)):
            scores = {name: float(aucs[i].mean())}
            curve: dict[str, Any] = {"fraction": fraction, "curve": per_sample[i].mean(axis=0),
                                     "per_sample": {name: aucs[i]}}
            if with_random:
                scores[f"{name}_random"] = float(aucs[-1].mean())
                curve["random_curve"] = per_sample[-1].mean(axis=0)
            results.append((scores, curve))
        return results

    def imputation_noise(self, model: LoadedModel, X: np.ndarray, opts: dict) -> np.ndarray | None:
        return None


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


def feature_spread(model: LoadedModel, X: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation: the model's train normalisation, else the inputs'."""
    if model.normalisation is not None:
        return model.normalisation.std.detach().cpu().numpy().reshape(-1).astype(np.float32)
    return np.maximum(np.nanstd(X, axis=(0, 1)), 1e-6).astype(np.float32)


class RoadMetric(PerturbationMetric):
    """ROAD (Rong et al., ICML 2022): removal by noisy linear imputation from the kept neighbours
    (in time for series, ``linear_impute``; a kind's own ``impute`` where it declares one: the
    eight neighbours in the image plane for images).

    MoRF removes the most relevant cells first (the probability should fall: lower AUC is better);
    LeRF the least relevant first (it should stay: higher is better). Imputing from the kept
    neighbours instead of pasting a constant keeps the removal itself from leaking the removed
    cells' positions (the class-information leakage ROAD was designed against).
    """

    mode = "deletion"
    least_first: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = (
        Option("imputation", str, "linear", "linear (noisy linear imputation from the kept "
               "neighbours, ROAD: in time for series, in the plane for images) or mean (the "
               "train-mean substrate)", choices=("linear", "mean")),
        Option("noise", float, 0.01, "std of the noise added to imputed cells, relative to each "
               "feature's spread", min=0.0, max=100.0),
        Option("background", object, None, "train inputs [n, time, feature] for the mean when the "
               "model stores no normalisation"),
        Option("step_fraction", float, 0.1, "share of the cells removed per curve point (ROAD: "
               "10%)", min=1e-9, max=1.0),
        Option("order", str, "signed", "rank cells by signed or absolute attribution",
               choices=ORDERS),
        Option("seed", int, 0, "seed of the imputation noise and the random order", min=0,
               max=2**63 - 1),
        Option("batch_size", int, None, "inputs per forward pass (default: the device's "
               "fastest, xaicore.plugin.pass_rows)", min=1, max=1_000_000),
        Option("random_baseline", bool, True, "also score a seeded random order"),
    )

    def check(self, model: LoadedModel) -> str | None:
        return continuous_only(model, "ROAD imputes removed cells linearly from their neighbours")

    def score_name(self) -> str:
        return self.name.replace("-", "_") + "_auc"

    def removal(self, opts: dict) -> tuple[str, bool]:
        return "deletion", self.least_first

    def imputation_noise(self, model: LoadedModel, X: np.ndarray, opts: dict) -> np.ndarray | None:
        if opts["imputation"] != "linear":
            return None
        return feature_spread(model, X) * float(opts["noise"])


class RoadMorfMetric(RoadMetric):
    name = "road-morf"
    description = "ROAD MoRF: noisy linear imputation of the most relevant cells first; lower is better"
    higher_is_better = False
    least_first = False


class RoadLerfMetric(RoadMetric):
    name = "road-lerf"
    description = "ROAD LeRF: noisy linear imputation of the least relevant cells first; higher is better"
    higher_is_better = True
    least_first = True
