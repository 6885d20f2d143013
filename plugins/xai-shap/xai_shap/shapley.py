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


def sampled_shapley(game: SegmentGame, fx: torch.Tensor, fb: torch.Tensor, n_pairs: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased estimate of the Shapley values: ``(phi [n, players], variance of phi)``, float64.

    For every background sample ``b`` (its own game ``v_b``; ``phi`` is their mean):

    1. the first-order coalitions, every single player ``{i}`` and every complement ``N - {i}``, give
       the paired first-order values ``p_i = (v({i}) - v({}) + v(N) - v(N - {i})) / 2``, exact for
       games without interactions of three or more players;
    2. the additive game ``g(S) = v({}) + sum_{i in S} p_i`` is a control: its Shapley values are
       ``p``, so ``phi_b = p + W'(v - g)``, where ``W`` is the Shapley formula as a matrix;
    3. ``W'(v - g)`` is known exactly on the first-order coalitions and estimated on the others by
       ``n_pairs`` coalitions ``S`` drawn with their complements (Horvitz-Thompson: each pair's term
       divided by its probability; sizes stratified across the background samples).

    Each pair's term sums to zero over the players, so the estimate sums exactly to
    ``f(x) - E f(b)`` without any projection. The variance is that of the sampled correction (the
    pairs of each background sample are independent draws), so ``sqrt(variance)`` is a standard
    error of each value against the exact value of the same game.
    """
    n, n_background = fb.shape
    m = game.segments.n_players
    device = fx.device
    eye = torch.eye(m, dtype=torch.bool, device=device)
    first = game_values(game, torch.cat([eye, ~eye])[None, None].expand(n, n_background, 2 * m, m))
    v0 = fb[..., None]  # [n, nb, 1]
    singles, complements = first[..., :m], first[..., m:]
    p = (singles - v0 + fx[:, None, None] - complements) / 2  # [n, nb, m]
    residual_first = torch.cat([singles - v0 - p, complements - v0 - (p.sum(-1, keepdim=True) - p),
                                fx[:, None, None] - v0 - p.sum(-1, keepdim=True)], -1)
    known = torch.einsum("nbk,km->nbm", residual_first,
                         shapley_weights(torch.cat([eye, ~eye, eye.new_ones(1, m)])))
    estimate, variance = p + known, torch.zeros(n, m, dtype=torch.float64, device=device)
    if m >= 4 and n_pairs:  # coalitions of 2 to m - 2 players exist
        terms = pair_terms(game, fx, fb, p, n_pairs, generator)  # [n, nb, k, m]
        estimate = estimate + terms.mean(2)
        if n_pairs > 1:
            variance = terms.var(2).sum(1) / n_pairs / n_background ** 2
    return estimate.mean(1), variance


def pair_terms(game: SegmentGame, fx: torch.Tensor, fb: torch.Tensor, p: torch.Tensor,
               n_pairs: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, nb, n_pairs, m]``: for drawn pairs ``(S, N - S)`` with ``2 <= |S| <= m / 2``,
    ``(W[S] r(S) + W[N - S] r(N - S)) / q(S)`` with ``r = v - g`` and ``q`` the pair's probability.

    ``sum_i |W[S, i]|`` is ``2 / C(m, |S|)`` for every coalition, so drawing pairs in proportion to
    it gives every size the same probability (the self-complementary size m / 2 half of it) and a
    uniform coalition within the size.
    """
    n, n_background = fb.shape
    m = p.shape[-1]
    device = fx.device
    sizes = torch.arange(2, m // 2 + 1)
    size_weight = torch.where(2 * sizes == m, 0.5, 1.0).double()
    size_weight /= size_weight.sum()
    draws = n_background * n_pairs
    # stratified sizes: one systematic sample of the size distribution per sample, then shuffled
    u = (torch.rand(n, 1, generator=generator, dtype=torch.float64) + torch.arange(draws)) / draws
    size = sizes[torch.searchsorted(size_weight.cumsum(0), u).clamp_max(len(sizes) - 1)]
    size = size.gather(1, torch.rand(n, draws, generator=generator).argsort(1))
    rank = torch.rand(n, draws, m, generator=generator).argsort(-1).argsort(-1)
    members = (rank < size[..., None]).to(device).reshape(n, n_background, n_pairs, m)
    coalitions = torch.stack([members, ~members], 3)  # [n, nb, k, 2, m]
    v = game_values(game, coalitions.reshape(n, n_background, 2 * n_pairs, m))
    v = v.reshape(n, n_background, n_pairs, 2)
    control = fb[..., None, None] + torch.einsum("nbksm,nbm->nbks", coalitions.double(), p)
    weights = shapley_weights(coalitions.reshape(-1, m)).reshape(*coalitions.shape)
    terms = torch.einsum("nbks,nbksm->nbkm", v - control, weights)
    probability = (size_weight[size - 2] / torch.tensor([math.comb(m, int(s)) for s in sizes],
                                                         dtype=torch.float64)[size - 2]
                   * torch.where(2 * size == m, 2.0, 1.0))
    return terms / probability.to(device).reshape(n, n_background, n_pairs, 1)


def game_values(game: SegmentGame, coalitions: torch.Tensor) -> torch.Tensor:
    """``v_b(S)`` for coalitions ``[n, nb, k, players]`` of every sample and background sample:
    ``[n, nb, k]``."""
    n, n_background, k, m = coalitions.shape
    device = coalitions.device
    sample = torch.arange(n, device=device)[:, None, None].expand(n, n_background, k)
    base = torch.arange(n_background, device=device)[None, :, None].expand(n, n_background, k)
    return game(sample.reshape(-1), coalitions.reshape(-1, m),
                base.reshape(-1)).reshape(n, n_background, k)


def shapley_weights(coalitions: torch.Tensor) -> torch.Tensor:
    """The rows of the Shapley formula for boolean coalitions ``[k, m]``: ``phi = sum_S v(S) W[S]``
    with ``W[S, j] = (|S|-1)! (m-|S|)! / m!`` if ``j`` is in ``S``, else ``-|S|! (m-|S|-1)! / m!``."""
    m = coalitions.shape[-1]
    f = [math.factorial(k) for k in range(m + 1)]
    with_j = torch.tensor([f[max(s - 1, 0)] * f[m - s] / f[m] for s in range(m + 1)],
                          dtype=torch.float64, device=coalitions.device)
    without_j = torch.tensor([f[s] * f[max(m - s - 1, 0)] / f[m] for s in range(m + 1)],
                             dtype=torch.float64, device=coalitions.device)
    sizes = coalitions.sum(-1)
    return torch.where(coalitions, with_j[sizes][..., None], -without_j[sizes][..., None])


def exact_cost(n: int, n_players: int, n_background: int) -> float:
    """Model evaluations ``exact_shapley`` needs."""
    return n * (2 ** n_players) * n_background if n_players <= MAX_EXACT_PLAYERS else math.inf


def sampled_cost(n: int, n_players: int, n_background: int, n_pairs: int) -> int:
    """Model evaluations ``sampled_shapley`` needs."""
    return n * n_background * (2 * n_players + (2 * n_pairs if n_players >= 4 else 0))


def exact_shapley(game: SegmentGame, n: int, n_background: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Shapley values ``[n, players]`` (float64): every coalition with every background sample.

    Also returns the values of each background sample's own game ``v_b(S) = f(x_S, b_rest)``,
    ``[n, n_background, players]``, whose mean over the background is ``phi``.
    """
    m = game.segments.n_players
    if m > MAX_EXACT_PLAYERS:
        raise XaiError(f"exact SHAP values over {m} segments need 2^{m} coalitions per sample; use at "
                       f"most {MAX_EXACT_PLAYERS} segments in all (n_segments x features) or "
                       f"algorithm='sampled'")
    device = game.inputs.device
    codes = torch.arange(2 ** m, device=device)
    coalitions = (codes[:, None] >> torch.arange(m, device=device)) & 1 == 1
    W = shapley_weights(coalitions)
    sample = torch.arange(n, device=device)[:, None, None].expand(n, 2 ** m, n_background)
    base = torch.arange(n_background, device=device).expand(n, 2 ** m, n_background)
    rows = coalitions[None, :, None, :].expand(n, 2 ** m, n_background, m)
    v = game(sample.reshape(-1), rows.reshape(-1, m), base.reshape(-1))
    per_background = torch.einsum("nsb,sm->nbm", v.reshape(n, 2 ** m, n_background), W)
    return per_background.mean(1), per_background
