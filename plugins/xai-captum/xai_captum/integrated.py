"""Integrated Gradients along the whole path in batched passes (``passes.py``).

Captum's ``IntegratedGradients`` costs 3x a plain pass per step on the hybrid (its gradient of
``torch.unbind(outputs)``); the integration points and weights here are captum's.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from xaicore.plugin import XaiError

from .passes import copies_per_pass, rows_that_fit, target_gradient

MAX_GAUSS_LEGENDRE = 1024
METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


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
                       f"steps (its set-up grows with the cube of the steps: 2048 took 16 s "
                       f"here), got {n_steps}; riemann_trapezoid takes more")
    step_sizes, alphas = approximation_parameters(method)
    return tuple(alphas(n_steps)), tuple(step_sizes(n_steps))


def integrated_gradients(module: nn.Module, inputs: torch.Tensor, baselines: torch.Tensor,
                         target: torch.Tensor, n_steps: int, method: str,
                         internal_batch_size: int | None) -> torch.Tensor:
    """``(x - baseline) * sum_k w_k grad F(baseline + a_k (x - baseline))`` for every sample.

    Points go through passes of at most ``internal_batch_size`` rows (whole steps of the batch,
    at least one step per pass; by default the device's ``passes.AUTO_ROWS``).
    """
    alphas, weights = path_points(method, n_steps)
    batch = inputs.shape[0]
    fit = rows_that_fit(inputs[0], inputs.device, "integrated-gradients")
    if batch > fit:  # memory bound: explain fewer samples per pass
        per_sample = baselines.shape[0] == batch
        return torch.cat([integrated_gradients(
            module, inputs[i:i + fit], baselines[i:i + fit] if per_sample else baselines,
            target[i:i + fit], n_steps, method, internal_batch_size)
            for i in range(0, batch, fit)])
    steps_per_pass = min(copies_per_pass(batch, internal_batch_size, inputs.device,
                                         "integrated-gradients"), max(1, fit // batch))
    diff = (inputs - baselines).detach()
    total = torch.zeros_like(inputs, dtype=torch.float32)
    for start in range(0, n_steps, steps_per_pass):
        a = torch.tensor(alphas[start:start + steps_per_pass], device=inputs.device,
                         dtype=inputs.dtype)
        w = torch.tensor(weights[start:start + steps_per_pass], device=inputs.device,
                         dtype=torch.float32)
        k = len(a)
        points = (baselines.detach()[None] + a[:, None, None, None] * diff[None])
        grads, _ = target_gradient(module, points.reshape(k * batch, *inputs.shape[1:]),
                                   target.repeat(k))
        total += (grads.float().reshape(k, *inputs.shape) * w[:, None, None, None]).sum(0)
    return diff.float() * total
