"""``shap``: SHAP values over time segments, in logit space, with the additivity error reported.

Kinds that declare players (``Modality.players``: texts' words or tokens, images' superpixels or
grid patches) play each sample's own game instead: absent players take the kind's substrate (texts
their mask or pad token, images blurred by default or the mean), so the reference is the sample
itself with every player absent (``players_shap``, ``players.py``); the series path below is
unchanged by them.

Why not shap's own explainers by default: DeepExplainer has no handlers for LSTM or
MultiheadAttention (the cnn-lstm-attention hybrid) and its additivity check fails there; GradientExplainer
(expected gradients) is not additive and needs hundreds of backward passes per sample. The segment
game is model-agnostic, so the same algorithms are correct for every model, and both (exact values,
the sampled estimate) sum exactly to f(x) - E f(background). DeepExplainer is offered on request
(``algorithm="deep"``) for models whose every layer it handles, with its additivity checked.

Default: exact values (every coalition with every background sample) when they cost at most twice
the sampled estimate (up to 5 players), else the unbiased sampled estimate of ``sampled_shapley``,
its pairs raised in rounds until every sample's standard error meets ``standard_error_tolerance``.
Each value carries a standard error (``standard_error`` extra: 0 when exact). On request, exact
Owen values over features, then time segments (``algorithm="owen"``, ``owen.py``), a different
solution of the same game. See docs/shap.md for the game and the evidence.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from xaicore.plugin import (
    BaseExplainer,
    LoadedModel,
    Option,
    XaiError,
    as_series,
    modality_of,
    pass_budget,
    pass_rows,
    saved_bytes_per_row,
)

from .deep import deep_shap
from .owen import Node, hierarchy, owen_bytes, owen_cost, owen_values
from .players import (
    COMPACTNESS,
    PATCH,
    default_absent,
    has_players,
    kind_players,
    player_extras,
    reference,
    solve_players,
    word_values,
)
from .segments import make_segments
from .shapley import (
    MAX_EXACT_PLAYERS,
    Goal,
    SegmentGame,
    exact_bytes,
    exact_cost,
    exact_shapley,
    sampled_bytes,
    sampled_cost,
    sampled_shapley,
)

FLOAT32_SLACK = 1e-5  # relative rounding of the float32 attributions the tolerance is checked on
ADVICE_MARGIN = 1.5  # the advised max_pairs' room for the noise of the standard error's estimate
SHORT_SERIES = 32  # univariate series up to this length: one player per time step by default
GAME_VALUE_BYTES = 64  # bytes per input value of a game row beyond the model's (masks, gathers)

ALGORITHMS = ("auto", "sampled", "exact", "owen", "deep")
DETAILS = {
    "sampled": "Shapley values over time segments per feature, per background sample: single "
               "players, their complements and n_pairs drawn coalitions with their complements; "
               "for each drawn pair an additive game fitted to the others (Shapley-kernel least "
               "squares, leave-one-out) as control variate and the pair's Horvitz-Thompson "
               "correction, so unbiased; sums exactly to f(x) - E f(background)",
    "exact": "exact Shapley values over time segments per feature: every coalition with every "
             "background sample (standard error 0)",
    "owen": "exact Owen values over time segments per feature, over a binary hierarchy of the "
            "players (features halved, then each feature's segments halved): the mean marginal "
            "contribution over the orders that keep every node's players together, a solution "
            "other than the Shapley value; every needed coalition with every background sample "
            "(standard error 0); sums exactly to f(x) - E f(background)",
    "deep": "shap's DeepExplainer (DeepLIFT multipliers averaged over the background), per time "
            "step; only for models whose every layer has a DeepExplainer handler",
}
PLAYER_GAME = ("players the sample's {players}, absent ones its {absent} substrate, so the "
               "reference is the sample itself with every player absent; a player's value spread "
               "evenly over its positions")
PLAYER_DETAILS = {
    "exact": f"exact Shapley values of each sample's own game (standard error 0): {PLAYER_GAME}",
    "sampled": f"the unbiased sampled estimate of each sample's own game (n_pairs pairs per "
               f"sample, first-order control fitted leave-one-out): {PLAYER_GAME}",
    "auto": f"exact values for the samples of few players (the exact extra), the sampled "
            f"estimate for the others: {PLAYER_GAME}",
}


class ShapExplainer(BaseExplainer):
    """SHAP values of the target logit for segments of each feature, or for each sample's players,
    spread evenly over their positions."""

    name = "shap"
    description = ("SHAP values over time segments (series), words and tokens (texts) or "
                   "superpixels and patches (images), with additivity error reported")
    requires = ("background",)
    # about (2 x players + 1) x background + 2 x n_pairs forward rows per sample, many more than
    # saliency's one pass or auto-step IG's; the default evaluation explains 48 samples with it
    evaluation_samples = 48

    options = (
        Option("background", object, None, "raw train inputs [n, time, feature]"),
        Option("background_size", int, 100, "background samples drawn (seeded) from background",
               min=1, max=1_000_000),
        Option("n_segments", int, None, "series: contiguous time segments per feature (default: "
               "one per step for univariate series of at most 32 steps, else min(8, length)); "
               "images, players=superpixels: the superpixels SLIC aims at (default 16)", min=1,
               max=1_000_000),
        Option("n_pairs", int, 300, "sampled: coalitions (each with its complement) drawn per "
               "sample beyond the first-order ones in the first round, spread over the background "
               "samples (at least 2 each); the error falls as 1 / sqrt(pairs)", min=2,
               max=1_000_000),
        Option("max_pairs", int, 100_000, "sampled: the most pairs per sample the rounds reach "
               "(a sample above standard_error_tolerance gets the pairs its error projects it "
               "needs, round after round; at least n_pairs)", min=2, max=100_000_000),
        Option("algorithm", str, "auto", "auto (exact when it costs at most twice the sampled "
               "estimate, else sampled), sampled, exact, owen (exact Owen values over features, "
               "then time segments, halved: a different solution; series only), or deep "
               "(DeepExplainer where it covers every layer)", choices=ALGORITHMS),
        Option("seed", int, 0, "seed of the background draw and the sampled coalitions", min=0,
               max=2**63 - 1),
        Option("batch_size", int, None, "rows per forward pass (default: the device's "
               "fastest, xaicore.plugin.pass_rows)",
               min=1, max=1_000_000_000),
        Option("additivity_tolerance", float, 0.01, "largest additivity error (share of "
               "|f(x) - E f(background)|) before a warning"),
        Option("standard_error_tolerance", float, 0.05, "sampled: the largest ||standard error|| "
               "/ ||values|| (L2 per sample) a sample may keep: its pairs are raised until it is "
               "met or max_pairs reached, then a warning (exact values have none)", min=0.0),
        Option("players", str, None, "one of the kind's units: texts 'words' (default; a word's "
               "tokens are one player) or 'tokens' (each real non-special token); images "
               "'superpixels' (default, SLIC; grid patches when scikit-image is not installed) "
               "or 'patches'"),
        Option("absent", str, None, "texts and images: what an absent player's positions become, a "
               "substrate of the kind: texts 'mask' (default) or 'pad', images 'blurred' "
               "(default) or 'mean' (the train split's per-channel mean)"),
        COMPACTNESS,
        PATCH,
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **options: Any) -> tuple[torch.Tensor, dict]:
        n, seq_len, n_features = inputs.shape
        budget = pass_budget(inputs.device) // 2  # half for the game's passes, half for solves
        batch_size, notes = forward_rows(model, inputs, options["batch_size"], budget)
        if has_players(model):  # each sample's own game, its reference the sample all absent
            return players_shap(model, inputs, target, options, batch_size, budget, notes)
        if any(options[name] is not None for name in ("players", "absent", "compactness", "patch")):
            raise XaiError("shap: players and absent are options of texts and images; the players "
                           "of a series are time segments (n_segments) and absent ones come from "
                           "background")
        n_segments = options["n_segments"]
        if n_segments is None:
            n_segments = seq_len if n_features == 1 and seq_len <= SHORT_SERIES else min(8, seq_len)
        segments = make_segments(seq_len, n_features, n_segments, inputs.device)
        tree = hierarchy(n_features, segments.n_segments)
        background, chosen = select_background(options["background"], inputs,
                                                options["background_size"], options["seed"])
        m, n_background = segments.n_players, len(background)
        pairs_per_background = max(2, -(-options["n_pairs"] // n_background))
        max_per_background = max(pairs_per_background, -(-options["max_pairs"] // n_background))
        algorithm = options["algorithm"]
        exact_above = algorithm == "auto" and m <= MAX_EXACT_PLAYERS
        if algorithm == "auto":
            cheap = exact_cost(n, m, n_background) <= 2 * sampled_cost(n, m, n_background,
                                                                        pairs_per_background)
            algorithm = "exact" if cheap else "sampled"
        if exact_above:  # no more pairs than cost as many rows as exact values; then exact ones
            max_per_background = min(max_per_background,
                                     max(pairs_per_background, (2 ** m - 2 * m) // 2))

        fx_all, fb_all = _logits(model, inputs, batch_size), _logits(model, background, batch_size)
        expected = fb_all.mean(0)
        fx = fx_all.gather(1, target[:, None])[:, 0]
        if algorithm == "deep":
            check_deep_fits(model, inputs, n_background, budget)
            attributions = deep_shap(model.module, inputs, background, target, model.name).float()
            evaluations = 2 * n * n_background  # forward and backward passes
            solved: dict[str, Any] = {}
        else:
            games = [SegmentGame(model.module, inputs[group], background, target[group],
                                 segments, batch_size)
                     for group in solver_groups(n, algorithm, m, n_background,
                                                pairs_per_background, budget, owen_cost(tree))]
            sizes = torch.bincount(segments.ids.flatten(), minlength=m)
            goal = Goal(options["standard_error_tolerance"], max_per_background, budget,
                        sizes.expand(n, m))
            phi, variance, exact = solve_games(games, algorithm, fx, fb_all[:, target].T,
                                        expected[target], pairs_per_background, options["seed"],
                                        goal, tree, exact_above)
            attributions = segments.spread(phi).float()
            evaluations = sum(game.evaluations for game in games)
            solved = {**standard_errors(attributions, segments.spread(variance.sqrt()),
                                        options["standard_error_tolerance"],
                                        Advice(max_per_background * n_background, m,
                                               2 * m * n_background, owen=True)),
                      "n_segments": segments.n_segments, "segment_bounds": segments.bounds,
                      **({"exact": exact} if exact_above and algorithm == "sampled" else {})}
        return attributions, {
            "algorithm": algorithm,
            "algorithm_detail": DETAILS[algorithm],
            "output_space": "logit",
            "expected_value": expected.tolist(),
            **additivity(attributions, fx, expected[target], options["additivity_tolerance"]),
            **solved,
            "background_size": n_background,
            "background_indices": chosen.tolist(),
            "n_model_evaluations": evaluations + n + n_background,
            **({"warnings": notes} if notes else {}),
        }


def players_shap(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor, options: dict,
                 batch_size: int, budget: int, notes: list[str]) -> tuple[torch.Tensor, dict]:
    """SHAP values of each sample's own game over the players its kind gives (texts' words or
    tokens, images' superpixels or patches), an absent player's positions the kind's substrate;
    a player's value is spread evenly over its positions, non-players (special tokens) get 0."""
    n = len(inputs)
    kind = modality_of(model)
    players = kind_players(model, inputs, options["players"], options, "shap")
    absent = options["absent"] or default_absent(model)
    masked = reference(model, inputs, absent, "shap: option absent")
    pairs, most = options["n_pairs"], max(options["n_pairs"], options["max_pairs"])
    logits = _logits(model, torch.cat([inputs, masked]), batch_size)
    fx, f_masked = logits[:n].gather(1, target[:, None])[:, 0], logits[n:].gather(1, target[:, None])[:, 0]
    solved = solve_players(model.module, inputs, masked, players, target, fx, f_masked,
                           options["algorithm"], pairs, options["seed"], batch_size, kind.name,
                           lambda k, algorithm, m: solver_groups(k, algorithm, m, 1, pairs, budget),
                           Goal(options["standard_error_tolerance"], most, budget))
    channels = inputs.shape[2]  # every channel of a position carries its share (texts have one)
    attributions = (solved.values[..., None] / channels).expand(-1, -1, channels).float()
    algorithm = "exact" if bool(solved.exact.all()) else \
        "sampled" if not bool(solved.exact.any()) else "auto"
    return attributions, {
        "algorithm": algorithm,
        "algorithm_detail": PLAYER_DETAILS[algorithm].format(players=players.unit, absent=absent),
        "output_space": "logit",
        "players": players.unit,
        "absent": absent,
        "expected_value": f_masked,  # per sample: the value of its empty coalition, all absent
        **additivity(attributions, fx, f_masked, options["additivity_tolerance"]),
        **standard_errors(attributions, (solved.standard_error[..., None] / channels)
                          .expand(-1, -1, channels), options["standard_error_tolerance"],
                          Advice(most, int(players.counts.max()),
                                 2 * int(players.counts.max()))),
        "exact": solved.exact,
        **player_extras(players),
        **word_values(solved.values, model, inputs),
        "n_model_evaluations": solved.evaluations + 2 * n,
        **({"warnings": notes} if notes else {}),
    }


def solve_games(games: list[SegmentGame], algorithm: str, fx: torch.Tensor, fb: torch.Tensor,
                base: torch.Tensor, pairs: int, seed: int, goal: Goal, tree: Node,
                exact_above: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapley values (Owen values over ``tree`` for ``owen``) and their variance (0 when exact)
    of consecutive groups of samples, one game each; ``fx``, ``fb``, ``base`` and ``goal`` are of
    the whole batch. The sampled draws come from one generator, so they are those of the whole
    batch. With ``exact_above``, the samples still above the goal after the sampled rounds get
    exact values, one sample at a time; the third tensor says which samples' values are exact."""
    generator = torch.Generator().manual_seed(seed)
    parts, start = [], 0
    for game in games:
        rows = slice(start, start + len(game.inputs))
        start = rows.stop
        m = game.segments.n_players
        if algorithm == "owen" and m > 1:
            phi = owen_values(game, fx[rows], fb[rows], tree)
            parts.append((phi, torch.zeros_like(phi), torch.zeros(len(phi), dtype=torch.bool)))
            continue
        if algorithm == "sampled" and m > 1:
            group = replace(goal, sizes=None if goal.sizes is None else goal.sizes[rows])
            phi, variance = sampled_shapley(game, fx[rows], fb[rows], pairs, generator, group)
            everyone = torch.arange(len(phi), device=phi.device)
            above = group.relative(phi, variance, everyone) > goal.target
            above &= exact_above
            for i in above.nonzero()[:, 0].tolist():
                one = SegmentGame(game.module, game.inputs[i:i + 1], game.background,
                                  game.target[i:i + 1], game.segments, game.batch_size)
                phi[i] = exact_shapley(one, 1, len(game.background))[0][0]
                variance[i] = 0
                game.evaluations += one.evaluations
            parts.append((phi, variance, above.cpu()))
            continue
        phi = (fx[rows] - base[rows])[:, None] if m == 1 else \
            exact_shapley(game, len(game.inputs), len(game.background))[0]
        parts.append((phi, torch.zeros_like(phi), torch.full((len(phi),), algorithm == "exact")))
    phi, variance, exact = (torch.cat(values) for values in zip(*parts))
    return phi, variance, exact


def forward_rows(model: LoadedModel, inputs: torch.Tensor, asked: int | None,
                 budget: int) -> tuple[int, list[str]]:
    """Rows per forward pass: ``asked`` (the batch_size option; else the device's fastest) within
    what fits in ``budget``, and the warning when ``asked`` was capped (also warned)."""
    row = inputs[0]
    need = saved_bytes_per_row(model.module, row) + row.numel() * GAME_VALUE_BYTES
    fit = budget // need
    if fit < 1:
        raise XaiError(f"shap: one game row of shape {tuple(row.shape)} needs about "
                       f"{need / 2**30:.1f} GiB per pass but only {budget / 2**30:.1f} GiB is "
                       f"available; shorten or downsample the series")
    if asked is None:
        return min(pass_rows(inputs.device, row.numel()), fit), []
    if asked <= fit:
        return asked, []
    message = (f"shap: batch_size {asked:,} capped at {fit:,} rows per pass, the most that fit "
               f"in the {budget / 2**30:.1f} GiB free for one pass")
    warnings.warn(message, UserWarning, stacklevel=4)
    return fit, [message]


def solver_bytes(algorithm: str, m: int, n_background: int, pairs: int, coalitions: int) -> int:
    """Peak bytes of one sample's coalitions and solve (``shapley.sampled_bytes``,
    ``exact_bytes``, ``owen_bytes`` of Owen values over ``coalitions``; exact values over too many
    players are refused by ``exact_shapley``)."""
    if m == 1 or (algorithm == "exact" and m > MAX_EXACT_PLAYERS):
        return 0
    if algorithm == "exact":
        return exact_bytes(m, n_background)
    if algorithm == "owen":
        return owen_bytes(m, n_background, coalitions)
    return sampled_bytes(m, n_background, pairs)


def solver_groups(n: int, algorithm: str, m: int, n_background: int, pairs: int,
                  budget: int, coalitions: int = 0) -> list[slice]:
    """Consecutive ranges of the ``n`` samples whose coalitions and solves fit in ``budget``
    together (``solver_bytes`` each; ``coalitions`` those of Owen values); an XaiError naming the
    estimate when one sample's do not."""
    per_sample = solver_bytes(algorithm, m, n_background, pairs, coalitions)
    if per_sample > budget:
        what = f"{2 ** m:,} coalitions" if algorithm == "exact" else \
            f"{coalitions:,} coalitions" if algorithm == "owen" else f"{pairs:,} pairs"
        raise XaiError(f"shap: {algorithm} values of one sample ({m} players, {n_background} "
                       f"background samples, {what} each) need about {per_sample / 2**30:.1f} GiB "
                       f"but only {budget / 2**30:.1f} GiB is available; lower n_pairs, "
                       f"background_size or n_segments")
    size = n if per_sample == 0 else max(1, min(n, budget // per_sample))
    return [slice(start, start + size) for start in range(0, n, size)]


def check_deep_fits(model: LoadedModel, inputs: torch.Tensor, n_background: int,
                    budget: int) -> None:
    """DeepExplainer passes a sample tiled against the whole background (twice its rows, with
    gradients): an XaiError naming the estimate when that does not fit in ``budget``."""
    row = inputs[0]
    need = 2 * n_background * (2 * saved_bytes_per_row(model.module, row)
                               + row.numel() * GAME_VALUE_BYTES)
    if need > budget:
        raise XaiError(f"shap: DeepExplainer passes each sample with all {n_background} "
                       f"background samples, about {need / 2**30:.1f} GiB, but only "
                       f"{budget / 2**30:.1f} GiB is available; lower background_size")


def additivity(attributions: torch.Tensor, fx: torch.Tensor, base_value: torch.Tensor,
               tolerance: float) -> dict[str, Any]:
    """How far the values miss ``f(x) - E f(b)`` per sample (share of it), warned above ``tolerance``."""
    delta = fx - base_value
    scale = torch.maximum(delta.abs(), 1e-6 * torch.maximum(fx.abs(), base_value.abs()).clamp_min(1))
    error = (attributions.double().sum((1, 2)) - delta).abs() / scale
    worst = float(error.max())
    if worst > tolerance:
        warnings.warn(f"shap: attributions miss additivity by up to {worst:.2%} of "
                      f"|f(x) - E f(background)| (tolerance {tolerance:.2%}); see the "
                      f"additivity_error extra", RuntimeWarning, stacklevel=4)
    return {"base_value": base_value, "model_output": fx, "additivity_error": error,
            "additivity_error_max": worst, "additivity_ok": worst <= tolerance}


@dataclass
class Advice:
    """What the warning of a sampled estimate above its tolerance can advise: the pairs per
    sample the rounds reached at most (``max_pairs``), the most players of a sample (exact values
    are advised only up to ``MAX_EXACT_PLAYERS``), the model rows of a sample's first-order
    coalitions (each pair then adds two) and whether Owen values are an algorithm of the game
    (series)."""

    max_pairs: int
    players: int
    first_order_rows: int
    owen: bool = False


def standard_errors(attributions: torch.Tensor, standard_error: torch.Tensor, tolerance: float,
                    advice: Advice) -> dict[str, torch.Tensor]:
    """The standard errors and their size relative to the values per sample, warned above
    ``tolerance`` with the ``max_pairs`` that would meet it (the error falls as 1 / sqrt(pairs),
    with room for the noise of its estimate)."""
    relative = (standard_error.norm(dim=(1, 2))
                / attributions.double().norm(dim=(1, 2)).clamp_min(1e-12))
    worst = float(relative.max())
    # the rounds met the target on float64 values; these are float32 attributions
    if worst > tolerance * (1 + FLOAT32_SLACK):
        needed = math.ceil(ADVICE_MARGIN * advice.max_pairs * (worst / max(tolerance, 1e-6)) ** 2)
        exact = " or use algorithm='exact'" if advice.players <= MAX_EXACT_PLAYERS else \
            " or use algorithm='owen' (exact Owen values, a different solution: docs/shap.md)" \
            if advice.owen else ""
        warnings.warn(f"shap: sampled values are uncertain: standard error up to {worst:.1%} of "
                      f"the values (L2 norm per sample, tolerance {tolerance:.0%}) with max_pairs "
                      f"{advice.max_pairs:,} pairs per sample; raise max_pairs to {needed:,} "
                      f"(about {2 * needed + advice.first_order_rows:,} model rows per sample)"
                      f"{exact} "
                      f"(see the standard_error extra)", RuntimeWarning, stacklevel=4)
    return {"standard_error": standard_error.float(), "relative_standard_error": relative}



def select_background(background: Any, inputs: torch.Tensor, size: Any,
                      seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``size`` background samples drawn without replacement (seeded) and their indices."""
    if background is None:
        raise XaiError("shap needs background data: pass background=<train inputs [n, time, "
                       "feature]> (xai explain passes the run's train split)")
    X = as_series(background, "shap background", inputs.shape[2])
    if X.shape[1:] != tuple(inputs.shape[1:]):
        raise XaiError(f"shap background must be [n, time, feature] like the inputs "
                       f"(n, {inputs.shape[1]}, {inputs.shape[2]}); got shape {X.shape}")
    size = _integer(size, "background_size", minimum=1)
    chosen = np.arange(len(X))
    if len(X) > size:
        chosen = np.sort(np.random.default_rng(seed).choice(len(X), size, replace=False))
    return torch.from_numpy(X[chosen]).to(inputs.device), chosen


@torch.no_grad()
def _logits(model: LoadedModel, X: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model.module(X[i:i + batch_size]).double()
                      for i in range(0, len(X), batch_size)])


def _integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise XaiError(f"shap option {name} must be an integer, got {value!r}")
    if value < minimum:
        raise XaiError(f"shap option {name} must be at least {minimum}, got {value}")
    return int(value)
