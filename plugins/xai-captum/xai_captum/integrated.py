"""Integrated Gradients along the whole path in batched passes (``passes.py``).

Captum's ``IntegratedGradients`` costs several plain passes per step on the hybrid (its gradient of
``torch.unbind(outputs)``); the integration points and weights here are captum's, plus
Clenshaw-Curtis, whose nodes nest (``nested_integrated_gradients``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from xaicore.plugin import XaiError, saved_bytes_per_row

from .passes import copies_per_pass, rows_that_fit, target_gradient

METHOD = "integrated-gradients"
MAX_GAUSS_LEGENDRE = 1024
CLENSHAW_CURTIS = "clenshaw_curtis"
METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre",
           CLENSHAW_CURTIS)


@lru_cache(maxsize=32)
def clenshaw_curtis(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Clenshaw-Curtis nodes on [0, 1] (increasing, both ends included) and weights, ``points``
    >= 2. The rule of n + 1 points integrates polynomials of degree n exactly, and its nodes are
    every other node of the rule of 2n + 1 points (Trefethen's clencurt, mapped to [0, 1])."""
    n = points - 1
    theta = np.pi * np.arange(n + 1) / n
    k = np.arange(1, n // 2 + 1)
    factor = np.where(2 * k == n, 1.0, 2.0) / (4.0 * k * k - 1)
    series = np.zeros(n + 1)
    for start in range(0, len(k), 256):  # blocks: 10,000 points need no 400 MB matrix
        block = slice(start, start + 256)
        series += np.cos(2 * np.outer(theta, k[block])) @ factor[block]
    ends = np.isin(np.arange(n + 1), (0, n))
    return (1 - np.cos(theta)) / 2, np.where(ends, 1.0, 2.0) / n * (1 - series) / 2


@lru_cache(maxsize=16)
def path_points(method: str, n_steps: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Integration points in [0, 1] and their weights for ``method`` (captum's; cached, as
    Gauss-Legendre nodes for many steps are slow to compute)."""
    if method not in METHODS:
        raise XaiError(f"integrated-gradients: unknown integration_method {method!r}; choose "
                       f"one of {', '.join(METHODS)}")
    if n_steps < 2 and method not in ("riemann_left", "riemann_right"):
        raise XaiError(f"integrated-gradients: {method} needs n_steps >= 2, got {n_steps}")
    if n_steps < 1:
        raise XaiError(f"integrated-gradients: n_steps must be at least 1, got {n_steps}")
    if method == "gausslegendre" and n_steps > MAX_GAUSS_LEGENDRE:
        raise XaiError(f"integrated-gradients: gausslegendre takes at most {MAX_GAUSS_LEGENDRE} "
                       f"steps (its set-up grows with the cube of the steps), got {n_steps}; "
                       f"riemann_trapezoid takes more")
    if method == CLENSHAW_CURTIS:
        alphas, weights = clenshaw_curtis(n_steps)
        return tuple(alphas.tolist()), tuple(weights.tolist())
    step_sizes, alphas = approximation_parameters(method)
    return tuple(alphas(n_steps)), tuple(step_sizes(n_steps))


def integrated_gradients(module: nn.Module, inputs: torch.Tensor, baselines: torch.Tensor,
                         target: torch.Tensor, n_steps: int, method: str,
                         internal_batch_size: int | None) -> torch.Tensor:
    """``(x - baseline) * sum_k w_k grad F(baseline + a_k (x - baseline))`` for every sample.

    The path points go through ``weighted_gradients``' passes.
    """
    alphas, weights = path_points(method, n_steps)
    batch = inputs.shape[0]
    fit = rows_that_fit(inputs[0], inputs.device, METHOD, saved_bytes_per_row(module, inputs[0]))
    if batch > fit:  # memory bound: explain fewer samples per pass
        per_sample = baselines.shape[0] == batch
        return torch.cat([integrated_gradients(
            module, inputs[i:i + fit], baselines[i:i + fit] if per_sample else baselines,
            target[i:i + fit], n_steps, method, internal_batch_size)
            for i in range(0, batch, fit)])
    diff = (inputs - baselines).detach()
    total = weighted_gradients(module, baselines, diff, target, np.asarray(alphas),
                               np.asarray(weights)[None], internal_batch_size, fit)[0]
    return diff.float() * total


def weighted_gradients(module: nn.Module, baselines: torch.Tensor, diff: torch.Tensor,
                       target: torch.Tensor, alphas: np.ndarray, weights: np.ndarray,
                       internal_batch_size: int | None, fit: int) -> torch.Tensor:
    """``sum_k weights[r, k] grad F(baseline + alphas[k] diff)`` for every rule ``r`` (a row of
    ``weights``) and sample: ``[rule, sample, time, feature]``. Points go through passes of at
    most ``internal_batch_size`` rows (whole copies of the batch, at least one per pass; by
    default the device's ``passes.AUTO_ROWS``) and at most ``fit`` rows."""
    batch = diff.shape[0]
    per_pass = copies_per_pass(batch, internal_batch_size, diff.device, METHOD, fit,
                               saved_bytes_per_row(module, diff[0]))
    w = torch.tensor(weights, dtype=torch.float32, device=diff.device)
    sums = torch.zeros((len(w), *diff.shape), dtype=torch.float32, device=diff.device)
    for start in range(0, len(alphas), per_pass):
        a = torch.tensor(alphas[start:start + per_pass], device=diff.device, dtype=diff.dtype)
        k = len(a)
        points = baselines.detach()[None] + a[:, None, None, None] * diff[None]
        grads, _ = target_gradient(module, points.reshape(k * batch, *diff.shape[1:]),
                                   target.repeat(k))
        sums += torch.tensordot(w[:, start:start + k], grads.float().reshape(k, *diff.shape),
                                dims=1)
    return sums


def nested_integrated_gradients(module: nn.Module, inputs: torch.Tensor, baselines: torch.Tensor,
                                target: torch.Tensor, levels: tuple[int, ...],
                                converged: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                                internal_batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients with Clenshaw-Curtis rules of ``levels`` points (n + 1, n doubling:
    33, 65, ...), raised per sample until ``converged(rows, attributions)`` says so.

    The rules nest, so a sample taken to the next level costs only the new nodes: each node's
    gradient is added, with its weight in every rule still to come, to one sum per level. The
    attributions at a level equal the rule's own (``integrated_gradients``) up to float rounding.
    Returns the attributions and the points each sample took.
    """
    batch = inputs.shape[0]
    fit = rows_that_fit(inputs[0], inputs.device, METHOD, saved_bytes_per_row(module, inputs[0]))
    per_sample = baselines.shape[0] == batch
    if batch > fit:  # memory bound: fewer samples at a time
        parts = [nested_integrated_gradients(
            module, inputs[i:i + fit], baselines[i:i + fit] if per_sample else baselines,
            target[i:i + fit], levels, lambda rows, attr, i=i: converged(rows + i, attr),
            internal_batch_size) for i in range(0, batch, fit)]
        return torch.cat([a for a, _ in parts]), torch.cat([p for _, p in parts])
    rules = [clenshaw_curtis(points) for points in levels]
    diff = (inputs - baselines).detach()
    sums = torch.zeros((len(levels), *inputs.shape), dtype=torch.float32, device=inputs.device)
    attr = torch.zeros_like(inputs, dtype=torch.float32)
    taken = torch.zeros(batch, dtype=torch.int64)
    pending = torch.arange(batch, device=inputs.device)
    for level, points in enumerate(levels):
        n = points - 1
        new = np.arange(n + 1) if level == 0 else np.arange(1, n, 2)  # nodes not computed yet
        # each new node's weight in this rule and every finer one: node j of n intervals is node
        # j * (m / n) of m intervals
        weights = np.stack([rules[finer][1][new * ((levels[finer] - 1) // n)]
                            for finer in range(level, len(levels))])
        d = diff[pending]
        sums[level:, pending] += weighted_gradients(
            module, baselines[pending] if per_sample else baselines, d, target[pending],
            rules[level][0][new], weights, internal_batch_size, fit)
        attr[pending] = d.float() * sums[level, pending]
        taken[pending.cpu()] = points
        pending = pending[~converged(pending, attr[pending])]
        if not len(pending):
            break
    return attr, taken
