"""`shap` on multivariate series: Owen values against an exact oracle, the sampled rounds that
reach their standard-error target, and warnings whose advice works."""

from __future__ import annotations

import re
import warnings
from itertools import permutations

import numpy as np
import pytest

import xaicore
from test_shap import HybridNet, Linear, additivity, data, segment_sums, wrap
from tolerances import assert_close
from xaicore.models.loaded import LoadedModel


def game_values(model: LoadedModel, x: np.ndarray, background: np.ndarray, target: int,
                bounds: list[int]) -> dict[frozenset, float]:
    """v(S) = mean_b f_target(x on the players of S, b elsewhere) for every coalition, player
    f * segments + s being segment s of feature f (independent of the plugin's code)."""
    n_segments, n_features = len(bounds) - 1, x.shape[1]
    m = n_segments * n_features
    coalitions = [frozenset(j for j in range(m) if code >> j & 1) for code in range(2 ** m)]
    rows = []
    for S in coalitions:
        keep = np.zeros(x.shape, dtype=bool)
        for j in S:
            f, s = divmod(j, n_segments)
            keep[bounds[s]:bounds[s + 1], f] = True
        rows.append(np.where(keep[None], x[None], background))
    logits = model.logits(np.concatenate(rows).astype(np.float32)).astype(np.float64)[:, target]
    return dict(zip(coalitions, logits.reshape(len(coalitions), len(background)).mean(1)))


def nested_groups(n_features: int, n_segments: int) -> list[frozenset]:
    """Every node of the hierarchy as its set of players: the features halved (first half
    first), then each feature's segments halved."""
    groups: list[frozenset] = []

    def split(features: list[int], segments: list[int]) -> None:
        groups.append(frozenset(f * n_segments + s for f in features for s in segments))
        if len(features) > 1:
            half = len(features) // 2
            split(features[:half], segments), split(features[half:], segments)
        elif len(segments) > 1:
            half = len(segments) // 2
            split(features, segments[:half]), split(features, segments[half:])

    split(list(range(n_features)), list(range(n_segments)))
    return groups


def owen_oracle(v: dict[frozenset, float], m: int, groups: list[frozenset]) -> np.ndarray:
    """The Owen value by its definition: the mean marginal contribution of each player over
    every order of the players in which each group's players come together."""
    totals, count = np.zeros(m), 0
    for order in permutations(range(m)):
        position = {p: i for i, p in enumerate(order)}
        if any(max(position[p] for p in g) - min(position[p] for p in g) != len(g) - 1
               for g in groups):
            continue
        count += 1
        before: frozenset = frozenset()
        for p in order:
            totals[p] += v[before | {p}] - v[before]
            before = before | {p}
    return totals / count


def shapley_oracle(v: dict[frozenset, float], m: int) -> np.ndarray:
    """Shapley values by the textbook formula over every coalition."""
    from math import factorial

    phi = np.zeros(m)
    for S, value in v.items():
        for j in range(m):
            if j not in S:
                phi[j] += factorial(len(S)) * factorial(m - len(S) - 1) / factorial(m) * (
                    v[S | {j}] - value)
    return phi


def player_values(e, n_features: int) -> np.ndarray:
    """The explanation's values per player ``[sample, f * segments + s]``."""
    sums = segment_sums(e.attributions.astype(np.float64), e.extras["segment_bounds"])
    return sums.transpose(0, 2, 1).reshape(len(sums), -1)


@pytest.mark.parametrize("n_features, n_segments", [(2, 3), (3, 2)])
def test_owen_values_equal_the_definition_over_hierarchical_orders(n_features, n_segments):
    model = wrap(HybridNet, n_features=n_features, seq_len=12)
    X, background = data(3, 12, n_features), data(5, 12, n_features, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=n_segments,
                        algorithm="owen", target=1)
    assert e.extras["algorithm"] == "owen"
    m = n_features * n_segments
    groups = nested_groups(n_features, n_segments)
    values = [game_values(model, X[i], background, 1, e.extras["segment_bounds"]) for i in range(3)]
    oracle = np.stack([owen_oracle(v, m, groups) for v in values])
    assert_close(player_values(e, n_features), oracle)
    # a different solution: not the Shapley values of this (interacting) game
    shapley = np.stack([shapley_oracle(v, m) for v in values])
    assert np.abs(oracle - shapley).max() > 1e-3 * np.abs(shapley).max()
    assert additivity(model, e, background).max() < 1e-4
    assert np.abs(e.extras["standard_error"]).max() == 0  # exact: no sampling error


def test_owen_values_of_an_additive_game_are_its_shapley_values():
    model, X, background = wrap(Linear, n_features=3, seq_len=12), data(4, 12, 3), \
        data(6, 12, 3, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                        algorithm="owen", target=0)
    w = model.network.fc.weight[0].detach().numpy().reshape(12, 3) / 2.0  # normalisation std 2
    bounds = e.extras["segment_bounds"]
    assert_close(segment_sums(e.attributions, bounds),
                 segment_sums(w * (X - background.mean(0)), bounds))


def test_default_on_48_multivariate_players_meets_the_standard_error_target(capsys):
    model, X, background = wrap(HybridNet, n_features=6, seq_len=16), data(2, 16, 6), \
        data(6, 16, 6, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no standard-error warning
        e = xaicore.explain(model, X, method="shap", background=background)
    assert e.extras["algorithm"] == "sampled" and e.extras["n_segments"] == 8  # 48 players
    relative = e.extras["relative_standard_error"]
    assert np.all(relative <= 0.05) and relative.max() > 0.03, relative  # raised to the target
    assert "raising them to" in capsys.readouterr().err  # beyond the first round, cost shown
    assert additivity(model, e, background).max() < 1e-4


def test_sampled_rounds_meet_the_target_and_stay_within_their_errors_of_exact(capsys):
    # 2 features x 4 segments: few enough players to enumerate
    model, X, background = wrap(HybridNet, n_features=2, seq_len=16), data(4, 16, 2), \
        data(6, 16, 2, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                        algorithm="sampled", n_pairs=12, target=0)
    shown = capsys.readouterr().err
    assert re.search(r"samples have a standard error above 5% .* about [\d,]+ more model rows, "
                     r"~[\d,]+ s", shown), shown  # the cost of the rounds, up front
    assert re.search(r"round 2: \d+ of 4 samples raised to [\d,]+-[\d,]+ pairs", shown), shown
    relative = e.extras["relative_standard_error"]
    assert np.all(relative <= 0.05), relative
    exact = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                            algorithm="exact", target=0)
    se = player_values_of(e.extras["standard_error"], e)
    z = (player_values(e, 2) - player_values(exact, 2)) / np.maximum(se, 1e-12)
    assert np.all(np.abs(z) < 4.5), z
    assert np.mean(z ** 2) < 3, np.mean(z ** 2)


def player_values_of(per_step: np.ndarray, e) -> np.ndarray:
    """A per-step array spread over players (the standard error) back per player: each step
    carries ``value / steps``, so one step times the segment's steps."""
    bounds = e.extras["segment_bounds"]
    steps = np.diff(bounds)
    first = per_step[:, bounds[:-1]] * steps[None, :, None]  # [sample, segment, feature]
    return first.transpose(0, 2, 1).reshape(len(first), -1)


def advised(caught: list[warnings.WarningMessage]) -> tuple[int, str]:
    """The max_pairs a standard-error warning advises, and its text."""
    text = " ".join(str(w.message) for w in caught if "standard error" in str(w.message))
    match = re.search(r"raise max_pairs to ([\d,]+)", text)
    assert match, text
    return int(match.group(1).replace(",", "")), text


@pytest.mark.parametrize("n_features, n_segments, algorithm", [(1, 8, "exact"), (6, 4, "owen")])
def test_every_advice_of_the_standard_error_warning_can_be_followed(n_features, n_segments,
                                                                    algorithm):
    model = wrap(HybridNet, n_features=n_features, seq_len=16)
    X, background = data(2, 16, n_features), data(4, 16, n_features, seed=1)
    options = dict(method="shap", background=background, n_segments=n_segments, target=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        capped = xaicore.explain(model, X, algorithm="sampled", n_pairs=8, max_pairs=8,
                                 **options)
    assert capped.extras["relative_standard_error"].max() > 0.05
    pairs, text = advised(caught)
    assert f"algorithm='{algorithm}'" in text
    # raising max_pairs as advised reaches the target
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        raised = xaicore.explain(model, X, algorithm="sampled", n_pairs=8, max_pairs=pairs,
                                 **options)
    assert np.all(raised.extras["relative_standard_error"] <= 0.05)
    # the algorithm it names accepts the case, with no sampling error
    other = xaicore.explain(model, X, algorithm=algorithm, **options)
    assert other.extras["algorithm"] == algorithm
    assert np.abs(other.extras["standard_error"]).max() == 0


def test_auto_never_spends_more_than_exact_values_would():
    # 8 players: the rounds stop where the sampled rows reach the exact values' rows, and the
    # samples still above the target get exact values
    model, X, background = wrap(HybridNet, n_features=1, seq_len=16), data(3, 16, 1), \
        data(5, 16, 1, seed=1)
    options = dict(method="shap", background=background, n_segments=8, target=0)
    e = xaicore.explain(model, X, standard_error_tolerance=1e-4, n_pairs=10, **options)
    exact = xaicore.explain(model, X, algorithm="exact", **options)
    assert e.extras["algorithm"] == "sampled" and e.extras["exact"].all()
    assert_close(e.attributions, exact.attributions)
    assert np.abs(e.extras["standard_error"]).max() == 0
    # first-order rows, the pairs up to the exact values' rows, then exact values
    per_sample = len(background) * (2 * 8 + 2 * ((2 ** 8 - 2 * 8) // 2) + 2 ** 8)
    assert e.extras["n_model_evaluations"] <= 3 * per_sample + 3 + len(background)
