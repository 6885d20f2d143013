"""Shapley values of the segment game, evaluated in large batched forward passes.

The game of sample ``x`` for class ``c`` is the interventional SHAP value function
``v(S) = E_b f_c(x_S, b_rest)`` over the background samples ``b``: segments in ``S`` come from ``x``,
the others from ``b``. ``v(all) = f_c(x)`` and ``v(empty) = E_b f_c(b)``, the expected value.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from xaicore.plugin import XaiError

from .segments import Segments

MAX_EXACT_PLAYERS = 16
JUMP = 1.2  # a round raises a sample's pairs to 1.2 x what its standard error projects it needs


class Game(Protocol):
    """A batched cooperative game: ``game(sample, coalitions, base)`` gives the target logits of
    rows (sample and base indices, boolean coalitions ``[rows, players]``)."""

    inputs: torch.Tensor
    evaluations: int

    @property
    def n_players(self) -> int: ...

    def __call__(self, sample: torch.Tensor, coalitions: torch.Tensor,
                 base: torch.Tensor) -> torch.Tensor: ...


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

    @property
    def n_players(self) -> int:
        return self.segments.n_players

    @torch.no_grad()
    def __call__(self, sample: torch.Tensor, coalitions: torch.Tensor,
                 base: torch.Tensor) -> torch.Tensor:
        """Target logits (float64) of rows: ``sample`` and ``base`` indices, ``coalitions
        [rows, players]``."""
        out = torch.empty(len(sample), dtype=torch.float64, device=self.inputs.device)
        for start in range(0, len(sample), self.batch_size):
            part = slice(start, start + self.batch_size)
            rows = torch.where(self.segments.expand(coalitions[part]),
                               self.inputs[sample[part]], self.background[base[part]])
            logits = self.module(rows)
            out[part] = logits.gather(1, self.target[sample[part]][:, None])[:, 0].double()
        self.evaluations += len(sample)
        return out


def show(message: str) -> None:
    """Shows the cost and progress of the sampled rounds on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Goal:
    """What the sampled rounds aim at: every sample's ``||standard error|| / ||values||`` (the
    players weighted by ``1 / sizes [n, players]``, their positions, as the values are spread
    over them; None: all alike) at most ``target``, with at most ``max_pairs`` pairs per
    background sample, the estimates of a round solved in groups of samples that fit in
    ``budget`` bytes; ``report`` shows the cost up front and the progress of each round."""

    target: float
    max_pairs: int
    budget: int
    sizes: torch.Tensor | None = None
    report: Callable[[str], None] = show

    def relative(self, phi: torch.Tensor, variance: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``||standard error|| / ||values||`` of the samples ``rows`` as their attributions have it."""
        weight = 1 / self.sizes[rows].double() if self.sizes is not None else \
            torch.ones_like(phi)
        return ((variance * weight).sum(1).sqrt()
                / (phi.square() * weight).sum(1).sqrt().clamp_min(1e-12))


def sampled_shapley(game: Game, fx: torch.Tensor, fb: torch.Tensor, n_pairs: int,
                    generator: torch.Generator | Sequence[torch.Generator],
                    goal: Goal | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased estimate of the Shapley values: ``(phi [n, players], variance of phi)``, float64.

    For every background sample ``b`` (its own game ``v_b``; ``phi`` is their mean):

    1. the first-order coalitions, every single player ``{i}`` and every complement ``N - {i}``, are
       evaluated, and ``n_pairs`` coalitions ``S`` of 2 to m - 2 players are drawn with their
       complements (sizes stratified across the background samples, uniform within a size);
    2. for any additive game ``g(S) = v({}) + sum_{i in S} theta_i`` (a control, its Shapley values
       are ``theta``), ``phi_b = theta + W'(v - g)``, where ``W`` is the Shapley formula as a matrix:
       ``W'(v - g)`` is summed exactly over the first-order coalitions and estimated over the others
       from one drawn pair (Horvitz-Thompson: the pair's term divided by its probability);
    3. each drawn pair ``j`` gets its own control ``theta_j``: the weighted least-squares additive fit
       of ``v`` (KernelSHAP's regression: Shapley-kernel weights, ``sum theta = v(N) - v({})``) to the
       first-order coalitions and the *other* pairs. ``theta_j`` does not depend on pair ``j``, so
       each pair's estimate of ``phi_b`` is unbiased (leave-one-out cross-fitting), and the fit
       captures more of ``v_b`` than the paired first-order values ``(v({i}) - v({}) + v(N) -
       v(N - {i})) / 2`` do, which leaves a smaller residual to sample. ``phi_b`` is the mean of the
       pairs' estimates.

    Each estimate sums exactly to ``v(N) - v({})`` (the fit is constrained, each pair's term sums to
    zero over the players), so ``phi`` sums exactly to ``f(x) - E f(b)`` without any projection. The
    variance is the spread of the pairs' estimates within each background sample, divided by
    ``n_pairs`` and averaged over the background, so ``sqrt(variance)`` is a standard error of each
    value against the exact value of the same game. ``generator`` draws every sample's pairs in
    turn, or is one generator per sample.

    With a ``goal``, each sample whose relative standard error ``r`` is above its target ``t`` gets
    new pairs (drawn as the first ones, from its generator) up to ``JUMP * pairs * (r / t)^2``,
    what the error projects it needs as it falls as ``1 / sqrt(pairs)``, round after round until it
    meets the target or reaches ``goal.max_pairs``; each estimate uses all of its sample's pairs.
    """
    n, n_background = fb.shape
    m = game.n_players
    device = fx.device
    began = time.perf_counter()
    eye = torch.eye(m, dtype=torch.bool, device=device)
    known = torch.cat([eye, ~eye, eye.new_ones(1, m)])  # first-order coalitions and N
    v0 = fb[..., None]  # [n, nb, 1]
    v_known = torch.cat([game_values(game, known[None, None, :-1].expand(n, n_background, 2 * m, m)),
                         fx[:, None, None].expand(n, n_background, 1)], -1) - v0  # [n, nb, 2m + 1]
    if m < 4 or not n_pairs:  # no coalitions of 2 to m - 2 players (or none drawn): paired first order
        p = (v_known[..., :m] + v_known[..., -1:] - v_known[..., m:2 * m]) / 2
        residual = v_known - torch.einsum("km,nbm->nbk", known.double(), p)
        return (p + torch.einsum("nbk,km->nbm", residual, shapley_weights(known))).mean(1), \
            torch.zeros(n, m, dtype=torch.float64, device=device)
    generators = [generator] * n if isinstance(generator, torch.Generator) else list(generator)
    rows = torch.arange(n, device=device)
    coalitions, probability, v = drawn_values(game, rows, fb, n_pairs, generators)
    phi, variance = pair_estimates(v_known, coalitions, v, probability, known)
    if goal is None:
        return phi, variance
    draws = [(coalitions[i:i + 1], probability[i:i + 1], v[i:i + 1]) for i in range(n)]
    pairs = torch.full((n,), n_pairs)
    for round_ in itertools.count(2):
        relative = goal.relative(phi[rows], variance[rows], rows)
        above = (relative > goal.target) & (pairs[rows.cpu()] < goal.max_pairs).to(device)
        rows, relative = rows[above], relative[above]
        if not len(rows):
            break
        now = pairs[rows.cpu()]
        wanted = (JUMP * now * (relative.cpu() / goal.target).square()).ceil().long()
        wanted = wanted.clamp_max(min(goal.max_pairs, fitting_pairs(goal.budget, m, n_background)))
        if round_ == 2:
            announce(goal, relative, now, wanted, n, n_background,
                     game.evaluations / max(time.perf_counter() - began, 1e-9))
        for i, more in zip(rows.tolist(), (wanted - now).tolist()):
            if more <= 0:  # the pairs that fit in memory are reached
                continue
            extra = drawn_values(game, rows.new_tensor([i]), fb, more, [generators[i]])
            draws[i] = tuple(torch.cat([old, new], 2) for old, new in zip(draws[i], extra))
            phi[i], variance[i] = (t[0] for t in pair_estimates(v_known[i:i + 1], draws[i][0],
                                                                draws[i][2], draws[i][1], known))
            pairs[i] += more
        rows = rows[(wanted > now).to(device)]
        still = int((goal.relative(phi[rows], variance[rows], rows) > goal.target).sum())
        goal.report(f"shap: round {round_}: {len(rows)} of {n} samples raised to "
                    f"{int(pairs[rows.cpu()].min()) * n_background:,}-"
                    f"{int(pairs[rows.cpu()].max()) * n_background:,} pairs; {still} still above "
                    f"{goal.target:.0%}")
    return phi, variance


def fitting_pairs(budget: int, m: int, n_background: int) -> int:
    """The most pairs per background sample whose estimate of one sample fits in ``budget``."""
    low, high = 1, 1 << 40
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if sampled_bytes(m, n_background, middle) <= budget else \
            (low, middle - 1)
    return low


def announce(goal: Goal, relative: torch.Tensor, now: torch.Tensor, wanted: torch.Tensor, n: int,
             n_background: int, rate: float) -> None:
    """The cost of the rounds to come, up front: the pairs each sample above the target is raised
    to (what the standard error falls to as ``1 / sqrt(pairs)``, with a margin; at most
    ``goal.max_pairs``), their model rows and the time at the rows per second measured so far."""
    rows = int(2 * n_background * (wanted - now).sum())
    goal.report(f"shap: {len(relative)} of {n} samples have a standard error above "
                f"{goal.target:.0%} of their values (up to {float(relative.max()):.0%}) with "
                f"{int(now.min()) * n_background:,} pairs; raising them to "
                f"{int(wanted.min()) * n_background:,}-{int(wanted.max()) * n_background:,} "
                f"pairs (at most {goal.max_pairs * n_background:,}): about {rows:,} more model "
                f"rows, ~{rows / rate:,.0f} s at {rate:,.0f} rows/s")


def drawn_values(game: Game, rows: torch.Tensor, fb: torch.Tensor, k: int,
                 generators: Sequence[torch.Generator],
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``k`` pairs per background sample drawn for the samples ``rows`` of ``game`` (one generator
    each) and evaluated: coalitions ``[r, nb, k, 2, m]``, probabilities ``[r, nb, k]`` and
    ``v - v({})`` ``[r, nb, k, 2]``."""
    n_background, m = fb.shape[1], game.n_players
    coalitions, probability = draw_pairs(len(rows), n_background, k, m, generators, fb.device)
    v = game_values(game, coalitions.reshape(len(rows), n_background, 2 * k, m), rows)
    return coalitions, probability, v.reshape(len(rows), n_background, k, 2) - fb[rows, :, None, None]


def pair_estimates(v_known: torch.Tensor, coalitions: torch.Tensor, v: torch.Tensor,
                   probability: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi`` and its variance from the first-order values and the drawn pairs (steps 2 and 3 of
    ``sampled_shapley``)."""
    n, n_background, n_pairs, _, m = coalitions.shape
    theta = leave_one_out_fits(v_known, coalitions, v)  # [n, nb, k, m]
    residual_known = v_known[:, :, None] - torch.einsum("km,nbjm->nbjk", known.double(), theta)
    residual = v - torch.einsum("nbjsm,nbjm->nbjs", coalitions.double(), theta)
    weights = shapley_weights(coalitions.reshape(-1, m)).reshape(*coalitions.shape)
    estimates = (theta + torch.einsum("nbjk,km->nbjm", residual_known, shapley_weights(known))
                 + torch.einsum("nbjs,nbjsm->nbjm", residual, weights) / probability[..., None])
    variance = torch.zeros(n, m, dtype=torch.float64, device=v.device)
    if n_pairs > 1:
        variance = estimates.var(2).sum(1) / n_pairs / n_background ** 2
    return estimates.mean((1, 2)), variance


def draw_pairs(n: int, n_background: int, n_pairs: int, m: int, generators: Sequence[torch.Generator],
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_pairs`` pairs ``(S, N - S)`` with ``2 <= |S| <= m / 2`` per sample and background sample:
    coalitions ``[n, nb, k, 2, m]`` and each pair's probability ``[n, nb, k]``.

    ``sum_i |W[S, i]|`` is ``2 / C(m, |S|)`` for every coalition, so drawing pairs in proportion to
    it gives every size the same probability (the self-complementary size m / 2 half of it) and a
    uniform coalition within the size.
    """
    sizes = torch.arange(2, m // 2 + 1)
    size_weight = torch.where(2 * sizes == m, 0.5, 1.0).double()
    size_weight /= size_weight.sum()
    draws = n_background * n_pairs
    drawn = [sample_pairs(draws, m, sizes, size_weight, g) for g in generators]
    size = torch.stack([s for s, _ in drawn])
    members = torch.stack([c for _, c in drawn]).to(device).reshape(n, n_background, n_pairs, m)
    probability = (size_weight[size - 2] / torch.tensor([math.comb(m, int(s)) for s in sizes],
                                                         dtype=torch.float64)[size - 2]
                   * torch.where(2 * size == m, 2.0, 1.0))
    return (torch.stack([members, ~members], 3),
            probability.to(device).reshape(n, n_background, n_pairs))


def sample_pairs(draws: int, m: int, sizes: torch.Tensor, size_weight: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's ``draws`` coalition sizes and coalitions ``[draws, m]`` (``draw_pairs``),
    drawn one sample at a time: the same however the samples are grouped."""
    # stratified sizes: one systematic sample of the size distribution, then shuffled
    u = (torch.rand(1, generator=generator, dtype=torch.float64) + torch.arange(draws)) / draws
    size = sizes[torch.searchsorted(size_weight.cumsum(0), u).clamp_max(len(sizes) - 1)]
    size = size[torch.rand(draws, generator=generator).argsort()]
    rank = torch.rand(draws, m, generator=generator).argsort(-1).argsort(-1)
    return size, rank < size[:, None]


def leave_one_out_fits(v_known: torch.Tensor, coalitions: torch.Tensor,
                       v: torch.Tensor) -> torch.Tensor:
    """``theta [n, nb, k, m]``: for each drawn pair ``j``, the additive game fitted by weighted least
    squares to ``v - v({})`` on the first-order coalitions and the pairs other than ``j``, subject to
    ``sum theta = v(N) - v({})``.

    ``v_known [n, nb, 2m + 1]`` holds ``v - v({})`` of the singles, the complements and ``N``;
    ``coalitions [n, nb, k, 2, m]`` and ``v [n, nb, k, 2]`` the drawn pairs. The weights are the
    Shapley kernel's: each first-order coalition its own, the drawn coalitions together the kernel
    mass of the sizes 2 to m - 2, shared evenly. Under the constraint a pair ``(S, N - S)`` only
    enters through ``d = v(S) - v(N - S)`` against ``x = 2 z_S - 1``, so the fit is the weighted
    regression of ``d`` on ``x``; leaving pair ``j`` out is a rank-one downdate of its Gram matrix
    (Sherman-Morrison), one solve per background sample for all ``j`` (``gram_solve``).
    """
    m = v_known.shape[-1] // 2
    k = v.shape[2]
    mass = (m - 1) / (torch.arange(1, m) * (m - torch.arange(1, m))).double()  # per size
    w_known, w_pair = float(mass[0]) / m, float(mass[1:-1].sum()) / (2 * max(k - 1, 1))
    # row i of the first-order design is 2 e_i - 1: {i} against N - {i}
    d_known = v_known[..., :m] - v_known[..., m:2 * m]
    x = 2 * coalitions[..., 0, :].double() - 1  # [n, nb, k, m]
    d = v[..., 0] - v[..., 1]  # [n, nb, k]
    moment = w_known * (2 * d_known - d_known.sum(-1, keepdim=True)) \
        + w_pair * torch.einsum("nbj,nbja->nba", d, x)
    ones = torch.ones_like(moment)
    solved = gram_solve(x, w_known, w_pair, torch.cat([moment[..., None], ones[..., None],
                                                       x.transpose(-1, -2)], -1))
    g_moment, g_ones, g_x = solved[..., 0], solved[..., 1], solved[..., 2:].transpose(-1, -2)
    # without pair j: G_j^-1 a = G^-1 a + w G^-1 x_j (x_j' G^-1 a) / (1 - w x_j' G^-1 x_j)
    scale = w_pair / (1 - w_pair * (x * g_x).sum(-1, keepdim=True))  # [n, nb, k, 1]
    fit = (g_moment[:, :, None] + scale * g_x * (x * g_moment[:, :, None]).sum(-1, keepdim=True)
           - scale * g_x * d[..., None])  # G_j^-1 (moment - w d_j x_j)
    fit_ones = g_ones[:, :, None] + scale * g_x * (x * g_ones[:, :, None]).sum(-1, keepdim=True)
    total = v_known[..., -1:, None]  # v(N) - v({}) [n, nb, 1, 1]
    lagrange = (fit.sum(-1, keepdim=True) - total) / fit_ones.sum(-1, keepdim=True)
    return fit - lagrange * fit_ones


def gram_solve(x: torch.Tensor, w_known: float, w_pair: float, rhs: torch.Tensor) -> torch.Tensor:
    """``G^-1 rhs`` per sample and background sample, for the Gram matrix
    ``G = w_known (4 I + (m - 4) 11') + w_pair x'x`` of the first-order design and the drawn pairs
    ``x [n, nb, k, m]``; ``rhs [n, nb, m, q]``.

    The first-order part ``A`` has the closed-form inverse ``(I - c 11') / (4 w_known)`` with
    ``c = (m - 4) / (4 + m (m - 4))``, and the ``k`` pairs enter by the Woodbury identity, so the
    memory grows with ``k m`` per background sample, not ``m^2`` (480 players: 1.8 MB each). With
    more pairs than players the dense ``m x m`` system is the smaller one and is solved instead.
    """
    m, k = x.shape[-1], x.shape[-2]
    if k > m:
        first_order = w_known * (4 * torch.eye(m, dtype=x.dtype, device=x.device) + (m - 4))
        return torch.linalg.solve(first_order + w_pair * x.transpose(-1, -2) @ x, rhs)
    c = (m - 4) / (4 + m * (m - 4))

    def a_inverse(r: torch.Tensor) -> torch.Tensor:
        return (r - c * r.sum(-2, keepdim=True)) / (4 * w_known)

    a_rhs, a_xt = a_inverse(rhs), a_inverse(x.transpose(-1, -2))  # [n, nb, m, q], [n, nb, m, k]
    inner = torch.eye(k, dtype=x.dtype, device=x.device) / w_pair + x @ a_xt  # [n, nb, k, k]
    return a_rhs - a_xt @ torch.linalg.solve(inner, x @ a_rhs)


def game_values(game: Game, coalitions: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
    """``v_b(S)`` for coalitions ``[n, nb, k, players]`` of the samples ``rows`` (default: every
    sample of the game) and every background sample: ``[n, nb, k]``."""
    n, n_background, k, m = coalitions.shape
    device = coalitions.device
    rows = torch.arange(n, device=device) if rows is None else rows
    sample = rows[:, None, None].expand(n, n_background, k)
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


def sampled_bytes(m: int, n_background: int, n_pairs: int) -> int:
    """Peak bytes of one sample in ``sampled_shapley`` (its game rows are passed in batches
    apart): the first-order rows, the drawn pairs, the Gram solves (``k x k`` per background
    sample) and the float64 tensors of ``[background, pair, player]``, each with room for the
    temporaries computed from it."""
    draws = n_background * n_pairs
    first_order = n_background * 2 * m * (m + 24)
    return first_order + 48 * n_background * min(n_pairs, m) ** 2 + 256 * draws * (m + 2)


def exact_bytes(m: int, n_background: int) -> int:
    """Peak bytes of one sample in ``exact_shapley``: every coalition with every background
    sample (coalition, sample and background indices, value), twice for copies."""
    return 2 * 2 ** m * n_background * (m + 24)


def exact_cost(n: int, n_players: int, n_background: int) -> float:
    """Model evaluations ``exact_shapley`` needs."""
    return n * (2 ** n_players) * n_background if n_players <= MAX_EXACT_PLAYERS else math.inf


def sampled_cost(n: int, n_players: int, n_background: int, n_pairs: int) -> int:
    """Model evaluations ``sampled_shapley`` needs."""
    return n * n_background * (2 * n_players + (2 * n_pairs if n_players >= 4 else 0))


def exact_shapley(game: Game, n: int, n_background: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Shapley values ``[n, players]`` (float64): every coalition with every background sample.

    Also returns the values of each background sample's own game ``v_b(S) = f(x_S, b_rest)``,
    ``[n, n_background, players]``, whose mean over the background is ``phi``.
    """
    m = game.n_players
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
