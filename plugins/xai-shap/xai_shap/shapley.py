"""Shapley values of the segment game, evaluated in large batched forward passes.

The game of sample ``x`` for class ``c`` is the interventional SHAP value function
``v(S) = E_b f_c(x_S, b_rest)`` over the background samples ``b``: segments in ``S`` come from ``x``,
the others from ``b``. ``v(all) = f_c(x)`` and ``v(empty) = E_b f_c(b)``, the expected value.
"""

from __future__ import annotations

import math

import torch

from xaicore.plugin import XaiError

from .segments import Segments

MAX_EXACT_PLAYERS = 16


class SegmentGame:
    """Evaluates ``f_c(x_S, b_rest)`` for many (sample, coalition, background) rows at once."""

    def __init__(self, module: torch.nn.Module, inputs: torch.Tensor, background: torch.Tensor,
                 target: torch.Tensor, segments: Segments, batch_size: int) -> None:
        self.module = module
        self.inputs = inputs
        self.background = background
        self.target = target
        self.segments = segments
        self.batch_size = batch_size
        self.evaluations = 0

    @torch.no_grad()
    def __call__(self, sample: torch.Tensor, coalitions: torch.Tensor,
                 base: torch.Tensor) -> torch.Tensor:
        """Target logits (float64) of rows: ``sample`` and ``base`` indices, ``coalitions [rows, players]``."""
        out = torch.empty(len(sample), dtype=torch.float64, device=self.inputs.device)
        for start in range(0, len(sample), self.batch_size):
            part = slice(start, start + self.batch_size)
            rows = torch.where(self.segments.expand(coalitions[part]),
                               self.inputs[sample[part]], self.background[base[part]])
            logits = self.module(rows)
            out[part] = logits.gather(1, self.target[sample[part]][:, None])[:, 0].double()
        self.evaluations += len(sample)
        return out


def permutation_shapley(game: SegmentGame, fx: torch.Tensor, fb: torch.Tensor,
                        n_permutations: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Antithetic permutation sampling: ``(phi [n, players], spread of phi)``, float64.

    Each pair of chains (a random order of the players and its reverse) starts from one
    background sample and adds the sample's segments one at a time; its marginal contributions
    telescope to ``f(x) - f(b)``. The pairs' background samples are stratified by ``f(b)`` (one per
    quantile slice), so their mean output is close to ``E f(b)``; once the pairs are a multiple of
    the background size every background sample is used equally often and the estimate sums exactly
    to ``f(x) - E f(b)``. ``fx [n]`` and ``fb [n, n_background]`` are the target logits of the inputs
    and the background for each sample's target class. The spread (variance across pairs over the
    number of pairs) tells how uncertain each value is, relative to the others.
    """
    n, n_background = fb.shape
    m = game.segments.n_players
    pairs = n_permutations // 2
    device = fx.device
    # the pairs' orders are rotations of one random order by m / pairs positions (each order is
    # still uniformly random), so every player is added early in some chains and late in others
    first = torch.rand(n, m, generator=generator).argsort(-1)
    shift = (torch.arange(pairs)[:, None] * m // pairs + torch.arange(m)) % m
    orders = first[:, shift].to(device)  # [n, pairs, m]
    orders = torch.cat([orders, orders.flip(-1)], 1)  # [n, K, m]
    # pair p draws its background sample from quantile slice [p, p + 1) / pairs of f(b)
    u = (torch.arange(pairs) + torch.rand(n, pairs, generator=generator)) / pairs
    strata = (u * n_background).long().clamp_max(n_background - 1).to(device)
    base = fb.argsort(-1).gather(1, strata).repeat(1, 2)  # [n, K]
    k = 2 * pairs
    rank = orders.argsort(-1)
    states = rank[:, :, None, :] < torch.arange(1, m, device=device)[:, None]  # [n, K, m-1, m]
    sample = torch.arange(n, device=device)[:, None, None].expand(n, k, m - 1)
    values = game(sample.reshape(-1), states.reshape(-1, m),
                  base[:, :, None].expand(n, k, m - 1).reshape(-1)).reshape(n, k, m - 1)
    chain = torch.cat([fb.gather(1, base)[..., None], values, fx[:, None, None].expand(n, k, 1)], -1)
    marginal = torch.zeros(n, k, m, dtype=torch.float64, device=device)
    marginal.scatter_(-1, orders, chain.diff(dim=-1))
    paired = (marginal[:, :pairs] + marginal[:, pairs:]) / 2  # one estimate per pair
    variance = (paired.var(1) / pairs if pairs > 1 else torch.zeros(n, m, dtype=torch.float64,
                                                                      device=device))
    return paired.mean(1), variance


def project_efficiency(phi: torch.Tensor, variance: torch.Tensor,
                       total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make ``phi`` sum to ``total`` (per sample), moving each value in proportion to its variance.

    The minimum-variance correction under the efficiency constraint (Strumbelj and Kononenko's
    adjustment, also used by shap's SamplingExplainer); uniform where no variance was estimated.
    Returns the corrected values and the residual that was redistributed.
    """
    residual = total - phi.sum(1)
    weight_sum = variance.sum(1, keepdim=True)
    uniform = torch.full_like(variance, 1.0 / variance.shape[1])
    weights = torch.where(weight_sum > 0, variance / weight_sum.clamp_min(1e-300), uniform)
    return phi + weights * residual[:, None], residual


def exact_cost(n: int, n_players: int, n_background: int) -> float:
    """Model evaluations ``exact_shapley`` needs."""
    return n * (2 ** n_players) * n_background if n_players <= MAX_EXACT_PLAYERS else math.inf


def shapley_matrix(m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """All coalitions ``[2^m, m]`` (bit ``j`` of row ``S`` is player ``j``) and the matrix ``W [2^m, m]``
    with ``phi = v @ W``: ``W[S, j] = (|S|-1)! (m-|S|)! / m!`` if ``j`` is in ``S``, else
    ``-|S|! (m-|S|-1)! / m!`` (the Shapley formula summed coalition by coalition)."""
    codes = torch.arange(2 ** m, device=device)
    coalitions = (codes[:, None] >> torch.arange(m, device=device)) & 1 == 1
    sizes = coalitions.sum(1)
    f = [math.factorial(k) for k in range(m + 1)]
    with_j = torch.tensor([f[max(s - 1, 0)] * f[m - s] / f[m] for s in range(m + 1)],
                          dtype=torch.float64, device=device)
    without_j = torch.tensor([f[s] * f[max(m - s - 1, 0)] / f[m] for s in range(m + 1)],
                             dtype=torch.float64, device=device)
    W = torch.where(coalitions, with_j[sizes][:, None], -without_j[sizes][:, None])
    return coalitions, W


def exact_shapley(game: SegmentGame, n: int, n_background: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Shapley values ``[n, players]`` (float64): every coalition with every background sample.

    Also returns the values of each background sample's own game ``v_b(S) = f(x_S, b_rest)``,
    ``[n, n_background, players]``, whose mean over the background is ``phi``.
    """
    m = game.segments.n_players
    if m > MAX_EXACT_PLAYERS:
        raise XaiError(f"exact SHAP values over {m} segments need 2^{m} coalitions per sample; use at "
                       f"most {MAX_EXACT_PLAYERS} segments in all (n_segments x features) or "
                       f"algorithm='permutation'")
    device = game.inputs.device
    coalitions, W = shapley_matrix(m, device)
    sample = torch.arange(n, device=device)[:, None, None].expand(n, 2 ** m, n_background)
    base = torch.arange(n_background, device=device).expand(n, 2 ** m, n_background)
    rows = coalitions[None, :, None, :].expand(n, 2 ** m, n_background, m)
    v = game(sample.reshape(-1), rows.reshape(-1, m), base.reshape(-1))
    per_background = torch.einsum("nsb,sm->nbm", v.reshape(n, 2 ** m, n_background), W)
    return per_background.mean(1), per_background
