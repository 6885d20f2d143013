"""The `shap` explainer: additivity, Shapley properties against closed forms and exact values, extras."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import xaicore
from tolerances import assert_close, assert_identical, is_close
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.models.checkpoints import load_checkpoint, load_run
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry


class HybridNet(nn.Module):
    """Conv1d, BiLSTM and multi-head self-attention: layers shap's DeepExplainer cannot handle."""

    default_params: dict = {}
    gradcam_layer = "cnn.0"

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv1d(n_features, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2))
        self.lstm = nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.cnn(x.transpose(1, 2)).transpose(1, 2))
        h, _ = self.attn(h, h, h)
        return self.fc(h.mean(1))


class Linear(nn.Module):
    """Logits linear in the input: SHAP values have a closed form."""

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(seq_len * n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class FirstHalf(nn.Module):
    """A nonlinear model that ignores the second half of the series."""

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.half = seq_len // 2
        self.mlp = nn.Sequential(nn.Linear(self.half * n_features, 16), nn.Tanh(),
                                 nn.Linear(16, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x[:, :self.half].flatten(1))


def wrap(cls: type, n_features: int = 2, seq_len: int = 24, n_classes: int = 3,
         seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    network = cls(n_features, seq_len, n_classes)
    return LoadedModel(network, name=cls.__name__, class_names=[f"c{i}" for i in range(n_classes)],
                       feature_names=[f"f{i}" for i in range(n_features)], seq_len=seq_len,
                       mean=[0.5] * n_features, std=[2.0] * n_features)


def data(n: int, seq_len: int = 24, n_features: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, seq_len, n_features)).cumsum(1) * 0.5).astype(np.float32)


def delta(model: LoadedModel, X: np.ndarray, background: np.ndarray, target: np.ndarray) -> np.ndarray:
    """f(x) - E f(background) for each sample's target class, computed independently."""
    fx = model.logits(X).astype(np.float64)[np.arange(len(X)), target]
    return fx - model.logits(background).astype(np.float64).mean(0)[target]


def additivity(model: LoadedModel, e: Explanation, background: np.ndarray) -> np.ndarray:
    d = delta(model, e.inputs, background, e.targets)
    return np.abs(e.attributions.astype(np.float64).sum((1, 2)) - d) / np.abs(d)


def segment_sums(attributions: np.ndarray, bounds: list[int]) -> np.ndarray:
    """Attributions summed per segment: [sample, segment, feature]."""
    return np.stack([attributions[:, a:b].sum(1) for a, b in zip(bounds[:-1], bounds[1:])], 1)


def test_hybrid_attributions_are_additive_in_logit_space():
    model, X, background = wrap(HybridNet), data(6), data(30, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background)
    assert e.attributions.shape == X.shape
    assert additivity(model, e, background).max() < 1e-4  # by construction: no projection
    assert e.extras["algorithm"] == "sampled" and e.extras["additivity_ok"] is True
    # the error is a difference of logits: float32 error of the logits' scale
    outputs = model.logits(X)[np.arange(6), e.targets]
    assert_close(e.extras["additivity_error"], additivity(model, e, background),
                 scale=float(np.abs(outputs).max()))
    assert_close(e.extras["model_output"], outputs)


@pytest.mark.parametrize("name", ["cnn-lstm-attention", "fcn", "resnet", "inception-time",
                                  "transformer"])
def test_every_builtin_model_is_explained_additively(name):
    if name not in registry.names("models"):
        pytest.skip(f"model {name} is not installed")
    torch.manual_seed(0)
    network = registry.get_model(name)(2, 32, 3)
    model = LoadedModel(network, name=name, class_names=["a", "b", "c"], feature_names=["x", "y"],
                        seq_len=32)
    X, background = data(3, 32), data(8, 32, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_pairs=2, target=1)
    assert e.attributions.shape == (3, 32, 2)
    assert additivity(model, e, background).max() < 0.01


@pytest.mark.parametrize("algorithm", ["sampled", "exact"])
def test_linear_model_matches_the_closed_form(algorithm):
    model, X, background = wrap(Linear, n_features=2, seq_len=12), data(4, 12), data(5, 12, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=3,
                        algorithm=algorithm, target=2)
    w = model.network.fc.weight[2].detach().numpy().reshape(12, 2) / 2.0  # normalisation std 2
    per_step = w * (X - background.mean(0))
    bounds = e.extras["segment_bounds"]
    assert bounds == [0, 4, 8, 12]
    assert_close(segment_sums(e.attributions, bounds), segment_sums(per_step, bounds))
    # spread evenly: every step of a segment carries the same share
    assert_close(e.attributions[:, 0], e.attributions[:, 3])
    # an additive game has no interactions: the sampled correction is zero and so is its error
    assert np.abs(e.extras["standard_error"]).max() < 1e-6


def test_segments_the_model_ignores_get_nothing():
    model, X, background = wrap(FirstHalf, seq_len=20), data(5, 20), data(12, 20, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                        target=0, algorithm="exact")
    scale = np.abs(e.attributions).max()
    assert scale > 0
    assert np.abs(e.attributions[:, 10:]).max() <= 1e-5 * scale  # segments 2 and 3: steps 10..19
    assert additivity(model, e, background).max() < 1e-4
    # the sampled estimate gives them zero up to its own standard error
    sampled = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                              target=0, algorithm="sampled")
    assert sampled.extras["algorithm"] == "sampled"
    ignored = np.abs(sampled.attributions[:, 10:])
    assert np.all(ignored <= 4 * sampled.extras["standard_error"][:, 10:] + 1e-6 * scale)
    assert additivity(model, sampled, background).max() < 1e-4


def test_sampled_values_converge_to_exact_shapley_values():
    model, X, background = wrap(HybridNet, n_features=1), data(3, n_features=1), \
        data(6, n_features=1, seed=1)
    exact = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                            target=0, algorithm="exact")
    assert additivity(model, exact, background).max() < 1e-4
    sampled = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                              n_pairs=200, target=0, algorithm="sampled")
    assert sampled.extras["algorithm"] == "sampled"
    ex = segment_sums(exact.attributions, exact.extras["segment_bounds"])
    est = segment_sums(sampled.attributions, sampled.extras["segment_bounds"])
    rel = np.linalg.norm((est - ex).reshape(3, -1), axis=1) / np.linalg.norm(ex.reshape(3, -1), axis=1)
    assert rel.max() < 0.1, rel
    # auto picks exact values when they cost at most twice the estimate: 2^4 <= 2 (2 x 4 + 2 x 50)
    auto = xaicore.explain(model, X, method="shap", background=background, n_segments=4,
                           target=0)
    assert auto.extras["algorithm"] == "exact"
    assert_identical(auto.attributions, exact.attributions)  # the same algorithm and batch


def test_same_seed_same_result_and_seeded_background():
    model, X, background = wrap(HybridNet), data(4), data(40, seed=1)
    run = lambda seed: xaicore.explain(model, X, method="shap", background=background,  # noqa: E731
                                       background_size=10, n_pairs=2, seed=seed)
    a, b, c = run(3), run(3), run(4)
    assert_identical(a.attributions, b.attributions)  # same seed, same draws, same batches
    assert a.extras["background_indices"] == b.extras["background_indices"]
    assert not is_close(a.attributions, c.attributions)
    indices = a.extras["background_indices"]
    assert len(indices) == len(set(indices)) == a.extras["background_size"] == 10
    assert indices != c.extras["background_indices"]


def test_extras_describe_the_expected_value_and_the_game():
    model, X, background = wrap(HybridNet), data(5), data(20, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=6,
                        n_pairs=2, max_pairs=2, target="c1", algorithm="sampled")
    expected = model.logits(background).astype(np.float64).mean(0)
    assert isinstance(e.extras["expected_value"], list) and len(e.extras["expected_value"]) == 3
    assert_close(e.extras["expected_value"], expected)
    assert_close(e.extras["base_value"], np.full(5, expected[1]))
    assert e.extras["segment_bounds"] == [0, 4, 8, 12, 16, 20, 24]
    assert e.extras["output_space"] == "logit" and e.extras["background_size"] == 20
    # 5 samples x 20 background samples x (2 x 12 first-order + 2 x 2 paired coalitions; no
    # further rounds at max_pairs = n_pairs), plus f(x) and f(background)
    assert e.extras["n_model_evaluations"] == 5 * 20 * (24 + 4) + 5 + 20
    assert e.options["n_pairs"] == 2 and "background" not in e.options
    per_sample = [k for k, v in e.extras.items() if isinstance(v, np.ndarray)]
    assert all(e.extras[k].shape[0] == 5 for k in per_sample)


def test_failed_additivity_is_flagged_and_warned():
    model, X, background = wrap(HybridNet), data(2), data(8, seed=1)
    with pytest.warns(RuntimeWarning, match="additivity"):
        e = xaicore.explain(model, X, method="shap", background=background,
                            additivity_tolerance=-1.0)
    assert e.extras["additivity_ok"] is False


@pytest.mark.parametrize("options, message", [
    ({}, "needs background"),
    ({"background": np.zeros((5, 10, 2))}, r"background must be \[n, time, feature\]"),
    ({"background": np.zeros((0, 24, 2))}, "no samples"),
    ({"background": np.full((3, 24, 2), np.nan)}, "NaN"),
    ({"n_segments": 0}, "n_segments"),
    ({"n_segments": 25}, "n_segments"),
    ({"n_pairs": 1}, "n_pairs"),
    ({"background_size": 0}, "background_size"),
    ({"algorithm": "deep"}, "algorithm"),
    ({"algorithm": "exact", "n_segments": 9}, "2\\^18"),
    ({"nsamples": 5}, "no option 'nsamples'"),
])
def test_bad_options_name_the_problem(options, message):
    model, X = wrap(HybridNet), data(2)
    options = {"background": data(4, seed=1), **options} if options else options
    with pytest.raises(XaiError, match=message):
        xaicore.explain(model, X, method="shap", **options)


def test_trained_hybrid_on_gunpoint_is_additive_and_cli_passes_the_train_split(gunpoint_run,
                                                                                tmp_path):
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    result = CliRunner().invoke(cli, ["explain", "--run", str(run), "--method", "shap",
                                      "--samples", "0:8", "--out", str(tmp_path / "out"),
                                      "--no-figures"])
    assert result.exit_code == 0, result.output
    e = Explanation.load(tmp_path / "out" / "shap.npz")
    assert e.attributions.shape == (8, 150, 1) and e.extras["algorithm"] == "sampled"  # 8 players
    assert e.extras["background_size"] == 50  # GunPoint's whole train split (50 < 100)
    model = load_run(run)
    train = load_dataset(load_checkpoint(run / "checkpoint.pt")["dataset"]).train.X
    assert additivity(model, e, train).max() < 0.01
    assert np.max(e.extras["additivity_error"]) < 0.01


class SmallFCN(nn.Module):
    """Conv1d, BatchNorm1d, ReLU, global average pooling, linear: layers DeepExplainer handles."""

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(n_features, 8, 5, padding=2), nn.BatchNorm1d(8),
                                  nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.transpose(1, 2))


def test_deep_explainer_on_a_linear_model_is_the_closed_form_per_step():
    model, X, background = wrap(Linear, seq_len=12), data(3, 12), data(6, 12, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, algorithm="deep", target=0)
    w = model.network.fc.weight[0].detach().numpy().reshape(12, 2) / 2.0
    assert_close(e.attributions, w * (X - background.mean(0)))
    assert e.extras["algorithm"] == "deep" and "segment_bounds" not in e.extras


def test_deep_explainer_is_additive_where_it_covers_every_layer():
    model, X, background = wrap(SmallFCN), data(4), data(10, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, algorithm="deep")
    assert additivity(model, e, background).max() < 0.01 and e.extras["additivity_ok"] is True


def test_deep_explainer_is_refused_on_lstm_and_attention_naming_them():
    with pytest.raises(XaiError, match="no handler for the LSTM, MultiheadAttention layers"):
        xaicore.explain(wrap(HybridNet), data(2), method="shap", background=data(4, seed=1),
                        algorithm="deep")


def brute_force_shapley(model: LoadedModel, x: np.ndarray, background: np.ndarray, target: int,
                        bounds: list[int]) -> np.ndarray:
    """Shapley values of v(S) = mean_b f_target(x on the segments in S, b elsewhere), univariate
    series, by the textbook formula over every coalition (independent of the plugin's code)."""
    from itertools import combinations
    from math import factorial

    m = len(bounds) - 1
    coalitions = [frozenset(c) for k in range(m + 1) for c in combinations(range(m), k)]
    rows = []
    for S in coalitions:
        keep = np.zeros(x.shape[0], dtype=bool)
        for s in S:
            keep[bounds[s]:bounds[s + 1]] = True
        rows.append(np.where(keep[None, :, None], x[None], background))
    logits = model.logits(np.concatenate(rows).astype(np.float32)).astype(np.float64)[:, target]
    v = dict(zip(coalitions, logits.reshape(len(coalitions), len(background)).mean(1)))
    phi = np.zeros(m)
    for j in range(m):
        for S in coalitions:
            if j not in S:
                weight = factorial(len(S)) * factorial(m - len(S) - 1) / factorial(m)
                phi[j] += weight * (v[S | {j}] - v[S])
    return phi


def relative_errors(e: Explanation, exact: np.ndarray) -> np.ndarray:
    est = segment_sums(e.attributions.astype(np.float64), e.extras["segment_bounds"])[..., 0]
    return np.linalg.norm(est - exact, axis=1) / np.linalg.norm(exact, axis=1)


def test_default_on_trained_gunpoint_matches_brute_force_shapley_values(gunpoint_run):
    model = load_run(gunpoint_run)
    dataset = load_dataset(load_checkpoint(gunpoint_run / "checkpoint.pt")["dataset"])
    X, background = dataset.test.X[:3], dataset.train.X[:12]
    e = xaicore.explain(model, X, method="shap", background=background)  # all defaults
    bounds = e.extras["segment_bounds"]
    assert len(bounds) == 9  # 8 segments of the 150 steps
    exact = np.stack([brute_force_shapley(model, X[i], background, int(e.targets[i]), bounds)
                      for i in range(len(X))])
    assert np.median(relative_errors(e, exact)) < 0.05
    assert additivity(model, e, background).max() < 1e-3
    se = e.extras["standard_error"]
    assert se.shape == X.shape and np.all(np.isfinite(se)) and np.all(se >= 0)


def test_short_series_default_one_player_per_step_matches_brute_force():
    model, X, background = wrap(FirstHalf, n_features=1, seq_len=10), data(3, 10, 1), \
        data(7, 10, 1, seed=1)
    e = xaicore.explain(model, X, method="shap", background=background, target=1)
    assert e.extras["segment_bounds"] == list(range(11))  # one player per time step
    exact = np.stack([brute_force_shapley(model, X[i], background, 1, list(range(11)))
                      for i in range(3)])
    assert np.median(relative_errors(e, exact)) < 0.05
    assert additivity(model, e, background).max() < 1e-3
    assert np.all(e.extras["standard_error"] >= 0)


def test_sampled_values_report_a_standard_error_that_covers_the_error():
    # 16 players: the default samples
    model, X, background = wrap(HybridNet, n_features=1, seq_len=16), data(4, 16, 1), \
        data(6, 16, 1, seed=1)
    with pytest.warns(RuntimeWarning, match="standard error"):
        e = xaicore.explain(model, X, method="shap", background=background, target=0,
                            n_pairs=24, max_pairs=24, standard_error_tolerance=0.0,
                            algorithm="sampled")  # auto would give exact values to the samples above
    assert e.extras["algorithm"] == "sampled"
    se = e.extras["standard_error"]
    assert np.all(se >= 0) and np.all(se.reshape(4, -1).max(1) > 0)
    exact = xaicore.explain(model, X, method="shap", background=background, target=0,
                            algorithm="exact").attributions
    # the error lies within a few standard errors (estimated from 4 pairs per background sample)
    err = np.linalg.norm((e.attributions - exact).reshape(4, -1), axis=1)
    assert np.all(err < 4 * np.linalg.norm(se.reshape(4, -1), axis=1))


class PairwiseInteractions(nn.Module):
    """Logit quadratic in the segment means: a game with interactions of at most two players."""

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.segments = 8
        self.a = nn.Parameter(torch.randn(n_classes, self.segments))
        self.b = nn.Parameter(torch.randn(n_classes, self.segments, self.segments))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[..., 0].reshape(len(x), self.segments, -1).mean(-1)  # [n, 8]
        return s @ self.a.T + torch.einsum("ns,cst,nt->nc", s, self.b, s)


def test_sampled_values_are_exact_for_games_without_higher_interactions():
    # first-order paired values are exact when no three players interact, so the sampled
    # correction must vanish: values equal the exact ones and their standard error is zero
    model, X, background = wrap(PairwiseInteractions, n_features=1, seq_len=24), \
        data(3, 24, 1), data(9, 24, 1, seed=1)
    sampled = xaicore.explain(model, X, method="shap", background=background, target=0,
                              algorithm="sampled", n_segments=8)
    exact = np.stack([brute_force_shapley(model, X[i], background, 0, list(range(0, 25, 3)))
                      for i in range(3)])
    assert_close(segment_sums(sampled.attributions.astype(np.float64),
                              sampled.extras["segment_bounds"])[..., 0], exact)
    assert np.abs(sampled.extras["standard_error"]).max() < 1e-5


@pytest.mark.parametrize("m", [4, 5, 8, 40])
def test_the_fits_gram_solve_equals_the_dense_solve(m):
    """The leave-one-out fits solve with the first-order part's closed-form inverse and Woodbury
    (memory players x pairs); the same as solving the dense Gram matrix."""
    from xai_shap.shapley import gram_solve

    gen = torch.Generator().manual_seed(m)
    x = 2 * (torch.rand(2, 3, 6, m, generator=gen) < 0.4).double() - 1  # 6 pairs
    rhs = torch.randn(2, 3, m, 4, generator=gen, dtype=torch.float64)
    first_order = 2 * torch.eye(m, dtype=torch.float64) - 1
    gram = 0.3 * first_order.T @ first_order + 0.05 * x.transpose(-1, -2) @ x
    torch.testing.assert_close(gram_solve(x, 0.3, 0.05, rhs), torch.linalg.solve(gram, rhs),
                               rtol=1e-9, atol=1e-9)
