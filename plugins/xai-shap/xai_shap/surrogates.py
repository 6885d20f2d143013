"""``kernel-shap`` and ``lime``: a linear surrogate of the target logit fitted to coalitions of the
same players as ``shap`` (a series' time segments per feature, texts' words or tokens, images'
superpixels or patches), absent players replaced by the kind's baseline (series) or substrate.

Each sample plays its own game ``v(S) = f_c(x with the players outside S absent)``; the coalitions
of every sample of one player count go through the model together in passes of ``pass_rows``, and
the regressions are solved together in torch. Coalitions come from one generator per sample seeded
``seed``, so a sample gets the same values alone as in any batch.

KernelSHAP (Lundberg & Lee 2017): coalitions drawn from the Shapley kernel (a size ``s`` with
probability proportional to ``(m - 1) / (s (m - s))``, then ``s`` players uniformly), or every
coalition with its kernel weight when ``n_samples`` covers them all (then the values are exact);
the weighted least-squares fit of ``v(S) - v({})`` on the coalitions with the efficiency constraint
``sum phi = f(x) - f(reference)`` solved exactly (its KKT system).

LIME (Ribeiro et al. 2016): the sample itself and ``n_samples - 1`` coalitions drawn uniformly (each
player present with probability 1/2), weighted by the exponential kernel
``exp(-d^2 / (2 kernel_width^2))`` of their ``cosine`` (or ``euclidean``) distance to the
all-present coalition in the players' binary space, and a weighted ridge regression with intercept
(``alpha`` on the coefficients only, as scikit-learn's ``Ridge`` that LIME uses). LIME explains
probabilities; here, as ``shap``, the logit.

A player's value is spread evenly over its cells, so the cells of a player sum to it.

Standard errors (the extras ``standard_error``, like the values, and ``relative_standard_error``
per sample, as ``shap`` reports them): the spread of the values over draws of the coalitions,
from the regression's sandwich estimator (heteroskedasticity-consistent, HC1): the coalitions are
independent draws, so ``Cov(phi) ~ B (sum_k w_k^2 e_k^2 z_k z_k') B * k / (k - p)`` with ``e_k``
the fit's residuals, ``p`` its free coefficients and ``B`` the inverse of the fit's normal
equations (KernelSHAP: the block of the inverse KKT matrix, which keeps the efficiency
constraint; LIME: ``(Z'WZ + alpha I)^-1`` on centred coalitions). They measure sampling noise
only, not the ridge's shrinkage (LIME with ``alpha > 0``); exact KernelSHAP values have 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from xaicore.plugin import (
    BaseExplainer,
    LoadedModel,
    Option,
    XaiError,
    modality_of,
    pass_budget,
    pass_rows,
)

from .explainer import SHORT_SERIES
from .players import (
    COMPACTNESS,
    PATCH,
    default_absent,
    has_players,
    kind_players,
    player_extras,
    reference,
    word_values,
)
from .segments import make_segments

DISTANCES = ("cosine", "euclidean")
#: LIME's default kernel widths: texts and images on the cosine distance, tabular data on the
#: euclidean one (times the square root of the number of players)
COSINE_WIDTH, EUCLIDEAN_WIDTH = 0.25, 0.75
SOLVE_BYTES = 48  # bytes per coalition and player of one sample's regression (float64 copies)

PLAYER_OPTIONS = (
    Option("n_segments", int, None, "series: contiguous time segments per feature (as shap: one "
           "per step for univariate series of at most 32 steps, else min(8, length)); images, "
           "players=superpixels: the superpixels SLIC aims at (default 16)", min=1, max=1_000_000),
    Option("players", str, None, "texts and images, one of the kind's units (as shap): texts "
           "'words' (default) or 'tokens'; images 'superpixels' (default) or 'patches'"),
    Option("absent", str, None, "what an absent player's cells become: series a baseline (mean, "
           "the mean train series, the default; zero, blurred or random); texts a substrate "
           "(mask, the default, or pad); images blurred (default) or mean"),
    COMPACTNESS,
    PATCH,
    Option("seed", int, 0, "seed of the coalitions (one generator per sample)", min=0,
           max=2**63 - 1),
    Option("batch_size", int, None, "rows per forward pass (default: the device's fastest, "
           "xaicore.plugin.pass_rows)", min=1, max=1_000_000_000),
    Option("background", object, None, "raw train inputs (the series baseline mean)"),
)


@dataclass
class Game:
    """Every sample's own game: ``ids[i, cell]`` the player of each cell of sample ``i`` (-1: never
    a player, always present), ``counts[i]`` its number of players, ``reference`` what absent
    cells become, ``spread(values [rows, m], rows)`` a player's value spread evenly over its cells
    (``Players.spread``, ``Segments.spread``), ``extras`` what the explanation records."""

    module: torch.nn.Module
    inputs: torch.Tensor
    reference: torch.Tensor
    target: torch.Tensor
    ids: torch.Tensor
    counts: torch.Tensor
    spread: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    extras: dict[str, Any]
    rows_per_pass: int
    evaluations: int = 0

    @torch.no_grad()
    def __call__(self, sample: torch.Tensor, coalitions: torch.Tensor) -> torch.Tensor:
        """Target logits (float64) of rows: ``sample`` indices and boolean ``coalitions [rows, m]``
        (players beyond a sample's count are ignored), in passes of ``rows_per_pass``."""
        out = torch.empty(len(sample), dtype=torch.float64, device=self.inputs.device)
        m = coalitions.shape[1]
        for start in range(0, len(sample), self.rows_per_pass):
            part = slice(start, start + self.rows_per_pass)
            rows = sample[part]
            kept = torch.cat([coalitions[part], coalitions.new_ones(len(rows), 1)], 1)
            column = torch.where(self.ids[rows] >= 0, self.ids[rows], m).flatten(1)
            present = kept.gather(1, column).view(len(rows), *self.inputs.shape[1:])
            logits = self.module(torch.where(present, self.inputs[rows], self.reference[rows]))
            out[part] = logits.gather(1, self.target[rows][:, None])[:, 0].double()
        self.evaluations += len(sample)
        return out


def build_game(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor, options: dict,
               method: str) -> Game:
    """The players of ``inputs`` as ``shap`` plays them and what absent players become."""
    n, steps, channels = inputs.shape
    rows = options["batch_size"] or pass_rows(inputs.device, inputs[0].numel())
    if has_players(model):
        players = kind_players(model, inputs, options["players"], options, method)
        absent = options["absent"] or default_absent(model)
        masked = reference(model, inputs, absent, f"{method}: option absent")
        ids = players.ids[..., None].expand(-1, -1, channels)

        def spread(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return (players.spread(values, rows)[..., None] / channels).expand(-1, -1, channels)

        return Game(model.module, inputs, masked, target, ids, players.counts, spread,
                    {"players": players.unit, "absent": absent, **player_extras(players)}, rows)
    for name in ("players", "compactness", "patch"):
        if options[name] is not None:
            raise XaiError(f"{method}: {name} is an option of texts and images; the players of a "
                           f"series are time segments (n_segments)")
    segments = options["n_segments"]
    if segments is None:
        segments = steps if channels == 1 and steps <= SHORT_SERIES else min(8, steps)
    if segments > steps:
        raise XaiError(f"{method}: n_segments {segments} is more than the series' {steps} steps")
    cut = make_segments(steps, channels, segments, inputs.device)
    absent = options["absent"] or "mean"
    kind = modality_of(model)
    if absent not in kind.baselines:
        raise XaiError(f"{method}: option absent must be one of {', '.join(kind.baselines)} for "
                       f"{kind.name}, not {absent!r}")
    base = kind.baseline(absent, model, inputs, background=options["background"], seed=options["seed"],
                         method=method).expand_as(inputs)
    return Game(model.module, inputs, base, target, cut.ids.expand(n, -1, -1),
                torch.full((n,), cut.n_players, dtype=torch.long, device=inputs.device),
                lambda values, rows: cut.spread(values),
                {"absent": absent, "n_segments": cut.n_segments, "segment_bounds": cut.bounds}, rows)


def generators(seed: int, n: int) -> list[torch.Generator]:
    """One generator per sample, each seeded ``seed``: a sample draws the same alone as in a batch."""
    return [torch.Generator().manual_seed(seed) for _ in range(n)]


def uniform_subsets(sizes: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean coalitions ``[len(sizes), m]``: ``sizes[k]`` players drawn uniformly for row k."""
    rank = torch.rand(len(sizes), m, generator=generator).argsort(-1).argsort(-1)
    return rank < sizes[:, None]


def shapley_kernel(sizes: torch.Tensor, m: int) -> torch.Tensor:
    """The Shapley kernel ``(m - 1) / (C(m, s) s (m - s))`` of coalitions of ``sizes`` players."""
    combinations = torch.tensor([math.comb(m, s) for s in range(m + 1)], dtype=torch.float64)
    s = sizes.double()
    return (m - 1) / (combinations[sizes] * s * (m - s))


def kernel_coalitions(m: int, n_samples: int, count: int,
                      seed: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``count`` samples' coalitions ``[count, k, m]`` and weights ``[count, k]``: every coalition
    but the empty and the full one with its kernel weight when there are at most ``n_samples``
    (exact), else ``n_samples`` drawn from the kernel, each of weight 1."""
    if 2 ** m - 2 <= n_samples:
        codes = torch.arange(1, 2 ** m - 1)
        every = (codes[:, None] >> torch.arange(m)) & 1 == 1
        weights = shapley_kernel(every.sum(1), m)
        return every.expand(count, -1, -1), weights.expand(count, -1), True
    sizes = torch.arange(1, m)
    mass = shapley_kernel(sizes, m) * torch.tensor([math.comb(m, int(s)) for s in sizes],
                                                   dtype=torch.float64)
    drawn = []
    for generator in generators(seed, count):
        size = sizes[torch.multinomial(mass, n_samples, replacement=True, generator=generator)]
        drawn.append(uniform_subsets(size, m, generator))
    return torch.stack(drawn), torch.ones(count, n_samples, dtype=torch.float64), False


def constrained_fit(z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, total: torch.Tensor,
                    method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi [g, m]`` minimising ``sum_k w_k (y_k - z_k phi)^2`` subject to ``sum phi = total``,
    per sample (the KKT system, solved batched), and its sandwich standard errors."""
    g, k, m = z.shape
    zw = z.transpose(1, 2) * weights[:, None, :]  # [g, m, k]
    kkt = torch.zeros(g, m + 1, m + 1, dtype=torch.float64, device=z.device)
    kkt[:, :m, :m] = zw @ z
    kkt[:, :m, m] = kkt[:, m, :m] = 1
    rhs = torch.cat([(zw @ y[..., None])[..., 0], total[:, None]], 1)
    try:
        phi = torch.linalg.solve(kkt, rhs)[:, :m]
        bread = torch.linalg.inv(kkt)[:, :m, :m]  # the constrained fit's linear response
    except torch.linalg.LinAlgError:
        raise XaiError(f"{method}: the {z.shape[1]} coalitions drawn do not determine the values of "
                       f"{m} players; raise n_samples") from None
    residuals = y - (z @ phi[..., None])[..., 0]
    return phi, sandwich(bread, z, weights * residuals, m - 1)


def sandwich(bread: torch.Tensor, z: torch.Tensor, scores: torch.Tensor, free: int) -> torch.Tensor:
    """Standard errors ``[g, m]`` of a weighted least-squares fit on independent draws: the
    diagonal of ``bread (sum_k s_k^2 z_k z_k') bread``, ``s_k = w_k e_k`` (weight times
    residual), scaled by ``k / (k - free)`` (HC1)."""
    k = z.shape[1]
    meat = z * scores[..., None]  # [g, k, m]
    covariance = bread @ (meat.transpose(1, 2) @ meat) @ bread
    return (covariance.diagonal(dim1=1, dim2=2).clamp_min(0) * (k / max(k - free, 1))).sqrt()


def uncertainty(values: torch.Tensor, standard_error: torch.Tensor) -> dict[str, torch.Tensor]:
    """The extras ``standard_error`` (per cell, spread like the values) and
    ``relative_standard_error`` (its L2 norm over the values', per sample), as ``shap``'s."""
    relative = standard_error.norm(dim=(1, 2)) / values.norm(dim=(1, 2)).clamp_min(1e-12)
    return {"standard_error": standard_error.float(), "relative_standard_error": relative}


class KernelShap(BaseExplainer):
    """KernelSHAP values of the target logit over the players of ``shap``, efficiency exact."""

    name = "kernel-shap"
    description = ("KernelSHAP (efficiency exact) over time segments (series), words and tokens "
                   "(texts) or superpixels and patches (images)")
    requires = ("background",)
    evaluation_samples = 48  # n_samples forward rows per sample
    options = (
        Option("n_samples", int, 512, "coalitions per sample: drawn from the Shapley kernel, or "
               "all of them (exact values) when there are at most this many", min=1,
               max=10_000_000),
        *PLAYER_OPTIONS,
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **options: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        game = build_game(model, inputs, target, options, self.name)
        logits, fx, f_ref = ends(model, game)
        values = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
        errors = torch.zeros_like(values)
        exact = torch.ones(len(inputs), dtype=torch.bool, device=inputs.device)
        for m, rows in groups(game, options["n_samples"]):
            if m == 1:  # efficiency alone gives the one value
                phi = (fx - f_ref)[rows, None]
                error = torch.zeros_like(phi)
            else:
                z, weights, every = kernel_coalitions(m, options["n_samples"], len(rows),
                                                      options["seed"])
                z, weights = z.to(inputs.device), weights.to(inputs.device)
                y = play(game, rows, z) - f_ref[rows, None]
                phi, error = constrained_fit(z.double(), y, weights,
                                                      fx[rows] - f_ref[rows], self.name)
                if every:  # every coalition: the values themselves, no sampling error
                    error = torch.zeros_like(phi)
                exact[rows] = every
            values[rows] = game.spread(phi, rows)
            errors[rows] = game.spread(error, rows)
        attributions = values.float()
        return attributions, {
            **common_extras(model, inputs, game, values, fx, f_ref),
            **uncertainty(values, errors),
            "exact": exact,
            "additivity_error": (attributions.double().sum((1, 2)) - (fx - f_ref)).abs(),
        }, logits


class Lime(BaseExplainer):
    """LIME's weighted ridge surrogate of the target logit over the players of ``shap``."""

    name = "lime"
    description = ("LIME (kernel-weighted ridge surrogate) over time segments (series), words and "
                   "tokens (texts) or superpixels and patches (images)")
    requires = ("background",)
    evaluation_samples = 48  # n_samples forward rows per sample
    options = (
        Option("n_samples", int, 1000, "coalitions per sample: the sample itself and n_samples - 1 "
               "drawn uniformly (each player present with probability 1/2)", min=2,
               max=10_000_000),
        Option("kernel_width", float, None, "width w of the kernel exp(-d^2 / (2 w^2)) on the "
               "distance d of a coalition to the sample (default LIME's: 0.25 on the cosine "
               "distance, 0.75 sqrt(players) on the euclidean one)", min=1e-12, max=1e12),
        Option("distance", str, "cosine", "distance of a coalition's binary vector to the "
               "all-present one: cosine (LIME's for texts and images) or euclidean",
               choices=DISTANCES),
        Option("alpha", float, 1.0, "ridge penalty on the coefficients (LIME's Ridge(alpha=1); 0: "
               "weighted least squares)", min=0.0, max=1e12),
        *PLAYER_OPTIONS,
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **options: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        game = build_game(model, inputs, target, options, self.name)
        logits, fx, f_ref = ends(model, game)
        n = len(inputs)
        values = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
        errors = torch.zeros_like(values)
        intercept = torch.zeros(n, dtype=torch.float64, device=inputs.device)
        score = torch.ones_like(intercept)
        for m, rows in groups(game, options["n_samples"]):
            z = lime_coalitions(m, options["n_samples"], len(rows), options["seed"]).to(inputs.device)
            weights = lime_weights(z, options["distance"], options["kernel_width"])
            y = play(game, rows, z)
            beta, intercept[rows], score[rows], error = ridge(z.double(), y, weights,
                                                              options["alpha"], self.name)
            values[rows] = game.spread(beta, rows)
            errors[rows] = game.spread(error, rows)
        return values.float(), {
            **common_extras(model, inputs, game, values, fx, f_ref),
            **uncertainty(values, errors),
            "intercept": intercept,
            "score": score,
        }, logits


def lime_coalitions(m: int, n_samples: int, count: int, seed: int) -> torch.Tensor:
    """``[count, n_samples, m]``: the all-present coalition (the sample itself, as LIME's code)
    then ``n_samples - 1`` with each player present with probability 1/2."""
    drawn = [torch.cat([torch.ones(1, m, dtype=torch.bool),
                        torch.rand(n_samples - 1, m, generator=generator) < 0.5])
             for generator in generators(seed, count)]
    return torch.stack(drawn)


def lime_weights(z: torch.Tensor, distance: str, width: float | None) -> torch.Tensor:
    """``exp(-d^2 / (2 width^2))`` of each coalition's distance to the all-present one: cosine
    ``1 - |z| / sqrt(|z| m)`` (1 for the empty coalition) or euclidean ``sqrt(m - |z|)``."""
    m = z.shape[-1]
    present = z.sum(-1).double()
    if distance == "cosine":
        d = 1 - present.sqrt() / math.sqrt(m)
        width = COSINE_WIDTH if width is None else width
    else:
        d = (m - present).sqrt()
        width = EUCLIDEAN_WIDTH * math.sqrt(m) if width is None else width
    return torch.exp(-d ** 2 / (2 * width ** 2))


def ridge(z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, alpha: float,
          method: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, ``beta [g, m]``, intercept, weighted R^2 and the sandwich standard errors of
    ``beta`` of the ridge regression minimising ``sum_k w_k (y_k - b - z_k beta)^2 + alpha
    |beta|^2`` (intercept not penalised)."""
    m = z.shape[-1]
    share = weights / weights.sum(1, keepdim=True)
    z_mean = (share[..., None] * z).sum(1)
    y_mean = (share * y).sum(1)
    zc, yc = z - z_mean[:, None], y - y_mean[:, None]
    zw = zc.transpose(1, 2) * weights[:, None, :]
    gram = zw @ zc + alpha * torch.eye(m, dtype=z.dtype, device=z.device)
    try:
        beta = torch.linalg.solve(gram, (zw @ yc[..., None]))[..., 0]
        bread = torch.linalg.inv(gram)
    except torch.linalg.LinAlgError:
        raise XaiError(f"{method}: the {z.shape[1]} coalitions drawn do not determine the "
                       f"coefficients of {m} players without a penalty; raise n_samples or "
                       f"alpha") from None
    residual = yc - (zc @ beta[..., None])[..., 0]
    spread = (weights * yc ** 2).sum(1)
    score = 1 - (weights * residual ** 2).sum(1) / spread.clamp_min(1e-300)
    return (beta, y_mean - (z_mean * beta).sum(1), torch.where(spread > 0, score, 1.0),
            sandwich(bread, zc, weights * residual, m + 1))


def ends(model: LoadedModel, game: Game) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits of the inputs and the target logits of the inputs and of their references."""
    n = len(game.inputs)
    with torch.no_grad():
        logits = torch.cat([model.module(part) for part in
                            torch.cat([game.inputs, game.reference]).split(game.rows_per_pass)])
    chosen = logits.gather(1, game.target.repeat(2)[:, None])[:, 0].double()
    return logits[:n], chosen[:n], chosen[n:]


def groups(game: Game, n_samples: int) -> list[tuple[int, torch.Tensor]]:
    """The samples of each player count (samples without players keep 0), in runs whose
    regressions (``n_samples`` coalitions each) fit in half the device's pass budget."""
    budget = pass_budget(game.inputs.device) // 2
    out = []
    for m in (int(c) for c in game.counts.unique() if c > 0):
        rows = (game.counts == m).nonzero()[:, 0]
        size = max(1, budget // (SOLVE_BYTES * n_samples * (m + 2)))
        out += [(m, part) for part in rows.split(size)]
    return out


def play(game: Game, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``v(S)`` of the coalitions ``z [len(rows), k, m]`` of the samples ``rows``: ``[len(rows), k]``,
    all of them through the model in passes of the game's rows."""
    count, k, m = z.shape
    return game(rows.repeat_interleave(k), z.reshape(-1, m)).reshape(count, k)


def common_extras(model: LoadedModel, inputs: torch.Tensor, game: Game, values: torch.Tensor,
                  fx: torch.Tensor, f_ref: torch.Tensor) -> dict[str, Any]:
    """What both surrogates record: the players, the values of the sample and of its reference."""
    per_position = values.sum(2)
    return {
        "output_space": "logit",
        **game.extras,
        **(word_values(per_position, model, inputs) if "player_ids" in game.extras else {}),
        "model_output": fx,
        "base_value": f_ref,
        "n_model_evaluations": game.evaluations + 2 * len(inputs),
    }
