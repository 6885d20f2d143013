"""Evaluation: deletion/insertion, randomisation, synthetic ground truth, AUP/AUR, TSR, `xai evaluate`."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from oracles import linear_impute_sparse
from tolerances import assert_close, assert_identical, is_close
from xai_eval.baseline import RandomExplainer
from xai_eval.localisation import AUPMetric, AURMetric, precision_recall
from xai_eval.perturbation import DeletionMetric, InsertionMetric, RoadLerfMetric, RoadMorfMetric, step_counts
from xai_eval.randomisation import RandomisationMetric, layers_in_forward_order
from xai_eval.synthetic import load as load_synthetic
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.api import explain, get_explainer
from xaicore.explaining.base import BaseExplainer, build_explanation
from xaicore.models.loaded import LoadedModel, wrap_model
from xaicore.plugins import loading as plugins
from xaicore.plugins import registry
from xaicore.plugins.hookspecs import hookimpl


class WindowNet(nn.Module):
    """Class 1 logit = sum of squares of feature 0 over time steps [8, 16); class 0 logit = 0."""

    default_params: dict = {}
    gradcam_layer = None

    def __init__(self, n_features: int = 2, seq_len: int = 32, n_classes: int = 2) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.bias = nn.Parameter(torch.tensor(-2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scale * (x[:, 8:16, 0] ** 2).sum(1) + self.bias
        return torch.stack([torch.zeros_like(z), z], dim=1)


class SmallCNN(nn.Module):
    """Conv1d, ReLU, global average pooling, linear (trained for a few epochs in the tests)."""

    default_params: dict = {}
    gradcam_layer = "conv"

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_features, 8, 5, padding=2)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x.transpose(1, 2))).mean(2))


class GradExplainer(BaseExplainer):
    """Gradient of the target logit (plain saliency, signed), the tests' own explainer."""

    name = "test-grad"
    defaults = {"scale": 1.0}

    def attribute(self, model, inputs, target, **opts):
        x = inputs.detach().clone().requires_grad_(True)
        out = model.module(x).gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(out, x)
        return grad * opts["scale"], {}


class CostlyExplainer(GradExplainer):
    """The same gradient, declared costly: the default evaluation explains 4 samples with it."""

    name = "test-costly"
    evaluation_samples = 4


class WarningExplainer(GradExplainer):
    """The gradient, with a warning each time (as IG warns about its completeness gap)."""

    name = "test-warns"

    def attribute(self, model, inputs, target, **opts):
        warnings.warn("test-warns: a warning from the explainer", RuntimeWarning, stacklevel=2)
        return super().attribute(model, inputs, target, **opts)


class DyingExplainer(GradExplainer):
    """Ends its process when it runs in a worker (as the kernel's out-of-memory killer would)."""

    name = "test-dies"
    parent = os.getpid()

    def attribute(self, model, inputs, target, **opts):
        if os.getpid() != self.parent:
            os._exit(3)
        return super().attribute(model, inputs, target, **opts)


class FailingMetric:
    """A metric that refuses every explanation."""

    name = "test-fails"
    defaults: dict = {}

    def evaluate(self, model, explanation, **options):
        raise XaiError("this metric always fails")


class Plugin:
    @hookimpl
    def register_explainers(self, register):
        register("test-grad", GradExplainer, description="test gradient")
        register("test-costly", CostlyExplainer, description="test gradient, declared costly")
        register("test-warns", WarningExplainer, description="test gradient that warns")
        register("test-dies", DyingExplainer, description="test gradient that kills its worker")

    @hookimpl
    def register_metrics(self, register):
        register("test-fails", FailingMetric, description="test metric that always fails")

    @hookimpl
    def register_models(self, register):
        register("test-small-cnn", SmallCNN, description="test model")


@pytest.fixture(scope="module")
def test_plugin():
    plugins.pm.register(Plugin(), name="test-evaluation-plugin")
    yield
    plugins.pm.unregister(name="test-evaluation-plugin")


def window_model() -> LoadedModel:
    return wrap_model(WindowNet(), n_classes=2, n_features=2, seq_len=32, name="window")


def window_inputs(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = 0.3 * rng.standard_normal((n, 32, 2)).astype(np.float32)
    X[:, 8:16, 0] += 1.0
    return X


def oracle_explanation(model: LoadedModel, X: np.ndarray, attributions: np.ndarray, method="oracle"):
    x = torch.from_numpy(X)
    return build_explanation(model, x, torch.ones(len(X), dtype=torch.long), attributions, method, {})


# ---------- deletion / insertion ----------

def test_oracle_order_beats_random_on_deletion_and_insertion():
    model, X = window_model(), window_inputs()
    truth = np.zeros_like(X)
    truth[:, 8:16, 0] = X[:, 8:16, 0] ** 2
    e = oracle_explanation(model, X, truth)
    deletion = DeletionMetric().evaluate(model, e, background=np.zeros((4, 32, 2)))
    insertion = InsertionMetric().evaluate(model, e, background=np.zeros((4, 32, 2)))
    assert deletion["deletion_auc"] < deletion["deletion_auc_random"] - 0.2
    assert insertion["insertion_auc"] > insertion["insertion_auc_random"] + 0.2
    reverse = oracle_explanation(model, X, -truth)
    assert DeletionMetric().evaluate(model, reverse, background=np.zeros((4, 32, 2)))[
        "deletion_auc"] > deletion["deletion_auc"]


def test_curves_start_at_the_input_and_end_at_the_substrate():
    model, X = window_model(), window_inputs(3)
    e = oracle_explanation(model, X, np.random.default_rng(1).random(X.shape))
    background = np.zeros((2, 32, 2), dtype=np.float32)
    _, deletion = DeletionMetric().evaluate_curves(model, e, background=background,
                                                   step_fraction=1 / 64)
    _, insertion = InsertionMetric().evaluate_curves(model, e, background=background,
                                                     step_fraction=1 / 64)
    p_input = model.predict_proba(X)[:, 1].mean()
    p_substrate = model.predict_proba(np.zeros_like(X))[:, 1].mean()
    n_points = len(step_counts(64, 1 / 64))
    assert len(deletion["curve"]) == n_points == 65  # 1 cell (of 64) per step, plus the start
    # means of probabilities, so of their scale, 1
    assert_close(deletion["curve"][0], p_input, scale=1.0)
    assert_close(deletion["curve"][-1], p_substrate, scale=1.0)
    assert_close(insertion["curve"][0], p_substrate, scale=1.0)
    assert_close(insertion["curve"][-1], p_input, scale=1.0)
    assert deletion["fraction"][0] == 0 and deletion["fraction"][-1] == 1


@pytest.mark.parametrize("metric", [DeletionMetric(), InsertionMetric(), RoadMorfMetric(),
                                    RoadLerfMetric()], ids=lambda m: m.name)
def test_curves_of_several_explanations_equal_each_computed_alone(metric):
    """evaluate_many shares the order-free end points between explanations, and ROAD's noise is
    drawn per sample and point, the same for every ordering: every curve is the one its
    explanation gets alone, whichever methods it is scored with."""
    model, X = window_model(), window_inputs(4)
    rng = np.random.default_rng(2)
    explanations = [oracle_explanation(model, X, rng.random(X.shape)) for _ in range(3)]
    background = np.zeros((2, 32, 2), dtype=np.float32)
    together = metric.evaluate_many(model, explanations, background=background,
                                    step_fraction=1 / 8)
    for e, (scores, curve) in zip(explanations, together):
        alone_scores, alone = metric.evaluate_curves(model, e, background=background,
                                                     step_fraction=1 / 8)
        assert_close(curve["curve"], alone["curve"], scale=1.0)
        assert scores.keys() == alone_scores.keys()
        for name, value in alone_scores.items():
            assert_close(scores[name], value, scale=1.0, err_msg=name)
    assert not is_close(together[0][1]["curve"], together[1][1]["curve"], scale=1.0)


def test_perturbation_options_are_checked():
    model, X = window_model(), window_inputs(2)
    e = oracle_explanation(model, X, np.ones_like(X))
    with pytest.raises(XaiError, match="needs background"):
        DeletionMetric().evaluate(model, e)  # no stored normalisation, no background
    with pytest.raises(XaiError, match="substrate must be one of"):
        DeletionMetric().evaluate(model, e, substrate="noise")
    with pytest.raises(XaiError, match="has no option 'steps'"):
        InsertionMetric().evaluate(model, e, steps=3)
    with pytest.raises(XaiError, match="step_fraction"):
        DeletionMetric().evaluate(model, e, substrate="smooth", step_fraction=0)


# ---------- randomisation ----------

def test_randomisation_leaves_the_model_alone_and_separates_dependent_maps():
    torch.manual_seed(0)
    model = wrap_model(SmallCNN(2, 32, 2), n_classes=2, n_features=2, seq_len=32)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    X = window_inputs(4)
    x, t = torch.from_numpy(X), torch.zeros(4, dtype=torch.long)
    grad = GradExplainer()
    scores, curves = RandomisationMetric().evaluate_curves(model, grad.explain(model, x, t),
                                                           explainer=grad)
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    assert curves["layers"] == ["fc", "conv"]  # top-down: output layer first
    assert scores["randomisation_spearman_final"] < 0.5
    rnd = RandomExplainer()
    independent = RandomisationMetric().evaluate(model, rnd.explain(model, x, t, seed=3),
                                                 explainer=rnd)
    assert independent["randomisation_spearman"] == pytest.approx(1.0)
    assert independent["randomisation"] == "fail" and scores["randomisation"] == "pass"
    # a sample's random map does not depend on the batch it is explained in: drawn from a
    # generator seeded per sample, so the same numbers
    assert_identical(rnd.explain(model, x, t, seed=3).attributions[2:],
                     rnd.explain(model, x[2:], t[2:], seed=3).attributions)


class FlippingExplainer(BaseExplainer):
    """A map over time whose ranking flips as soon as the model's weights differ from the
    trained ones: it depends on the weights, and is anti-correlated after randomisation."""

    name = "test-flip"

    def __init__(self, trained: LoadedModel) -> None:
        self.trained = {k: v.clone() for k, v in trained.module.state_dict().items()}

    def attribute(self, model, inputs, target, **opts):
        same = all(torch.equal(self.trained[k], v) for k, v in model.module.state_dict().items())
        steps = torch.arange(1, inputs.shape[1] + 1, dtype=inputs.dtype)
        ramp = steps if same else steps.flip(0)
        return ramp[None, :, None].expand_as(inputs).clone(), {}


def test_randomisation_fails_a_map_that_turns_anti_correlated():
    torch.manual_seed(0)
    model = wrap_model(SmallCNN(2, 32, 2), n_classes=2, n_features=2, seq_len=32)
    x, t = torch.from_numpy(window_inputs(6)), torch.zeros(6, dtype=torch.long)
    flip = FlippingExplainer(model)
    scores = RandomisationMetric().evaluate(model, flip.explain(model, x, t), explainer=flip,
                                            samples=6)
    # the ranking of |map| is reversed on every sample: Spearman -1, a strong dependence
    assert_close(scores["randomisation_spearman_final"], -1.0)
    assert scores["randomisation"] == "fail"
    assert scores["randomisation_ssim_final"] < 0  # a rising ramp against a falling one
    rnd = RandomExplainer()
    independent = RandomisationMetric().evaluate(model, rnd.explain(model, x, t, seed=3),
                                                 explainer=rnd, samples=6)
    # maps that ignore the weights are identical after every step: both similarities are 1
    assert independent["randomisation"] == "fail"
    assert_close(independent["randomisation_ssim_final"], 1.0)


def test_ssim_is_one_for_equal_maps_and_matches_a_hand_computed_case():
    from xai_eval.similarity import normalised, ssim

    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    assert_close(ssim(x, x), 1.0)
    assert_close(ssim(x[:, 0], x[:, 0]), 1.0)
    # one window covers the 3 cells: mu = 0.5 on both, variances 1/6, covariance -1/6,
    # C1 = 0.01^2, C2 = 0.03^2, so SSIM = (0.5 + C1)(C2 - 1/3) / ((0.5 + C1)(1/3 + C2))
    c2 = 0.03 ** 2
    assert_close(ssim(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0])),
                 (c2 - 1 / 3) / (1 / 3 + c2))
    # two windows of 7 in 8 cells, one of them [0]*6 + [1] against all zeros: mu_x = 1/7,
    # var_x = 6/49, the other's moments 0, so (C1)(C2) / ((1/49 + C1)(6/49 + C2)); the window
    # of the last 7 cells has the same moments
    c1 = 0.01 ** 2
    one = c1 * c2 / ((1 / 49 + c1) * (6 / 49 + c2))
    assert_close(ssim(np.r_[np.zeros(3), 1.0, np.zeros(4)], np.zeros(8)), one)
    assert_close(normalised(np.array([[-2.0, 1.0], [0.0, 0.5]])), np.array([[1.0, 0.5], [0.0, 0.25]]))


def test_randomisation_verdict_says_undecided_when_the_interval_straddles_the_threshold():
    from xai_eval.randomisation import verdict

    assert verdict(np.array([0.1, 0.2, 0.15, 0.05]), 0.5, seed=0) == "pass"
    assert verdict(np.array([0.9, 0.8, 0.95, 0.7]), 0.5, seed=0) == "fail"
    assert verdict(np.array([-0.2, 1.0, 0.1, 0.9, 0.4, 0.7]), 0.5, seed=0) == "undecided"
    assert verdict(np.array([np.nan, np.nan]), 0.5, seed=0) == "fail"
    # sign-insensitive: anti-correlated maps depend on the weights as much as correlated ones
    assert verdict(np.array([-0.9, -0.8, -0.95, -0.7]), 0.5, seed=0) == "fail"
    assert verdict(np.array([-0.1, 0.2, -0.15, 0.05]), 0.5, seed=0) == "pass"


def test_randomisation_re_explains_a_seeded_subset_of_the_samples():
    torch.manual_seed(0)
    model = wrap_model(SmallCNN(2, 32, 2), n_classes=2, n_features=2, seq_len=32)
    X = window_inputs(6)
    x, t = torch.from_numpy(X), torch.zeros(6, dtype=torch.long)
    grad = GradExplainer()
    e = grad.explain(model, x, t)
    _, curves = RandomisationMetric().evaluate_curves(model, e, explainer=grad, samples=3)
    _, again = RandomisationMetric().evaluate_curves(model, e, explainer=grad, samples=3)
    _, whole = RandomisationMetric().evaluate_curves(model, e, explainer=grad, samples=6)
    rho = curves["per_sample"]["randomisation_spearman_final"]
    assert rho.shape == (3,) and whole["per_sample"]["randomisation_spearman_final"].shape == (6,)
    # the same samples, batch and seed: the same computation
    assert_identical(rho, again["per_sample"]["randomisation_spearman_final"])
    # the subset's values are those of the same samples in the whole run
    assert np.isin(rho, whole["per_sample"]["randomisation_spearman_final"]).all()


def test_layers_follow_the_forward_pass():
    model = wrap_model(SmallCNN(2, 32, 2), n_classes=2, n_features=2, seq_len=32)
    names = [n for n, _ in layers_in_forward_order(model, torch.zeros(1, 32, 2))]
    assert names == ["conv", "fc"]


# ---------- synthetic data and AUP/AUR ----------

@pytest.mark.parametrize("name", ["synthetic-middle", "synthetic-small", "synthetic-rare-time",
                                  "synthetic-rare-feature", "synthetic-moving"])
def test_synthetic_mask_marks_the_shifted_cells(name):
    d = load_synthetic(name, n_train=200, n_test=20, seq_len=40, n_features=10, signal=2.0)
    mask, X, y = d.info["mask_train"], d.train.X, d.train.y
    assert mask.shape == X.shape and d.info["mask_test"].shape == d.test.X.shape
    assert mask.any(axis=(1, 2)).all()
    assert abs(X[~mask].mean()) < 0.05
    assert X[mask & (y == 1)[:, None, None]].mean() == pytest.approx(2.0, abs=0.1)
    assert X[mask & (y == 0)[:, None, None]].mean() == pytest.approx(-2.0, abs=0.1)
    again = load_synthetic(name, n_train=200, n_test=20, seq_len=40, n_features=10, signal=2.0)
    assert np.array_equal(again.train.X, X) and np.array_equal(again.info["mask_test"],
                                                               d.info["mask_test"])
    starts = {tuple(np.argwhere(m)[0]) for m in mask}
    assert (len(starts) > 1) == (name == "synthetic-moving")


def test_synthetic_box_shapes_follow_the_variant():
    shape = lambda name: load_synthetic(name, n_train=8, n_test=4, seq_len=50, n_features=50  # noqa: E731
                                        ).info["mask_test"][0]
    rare_time, rare_feature = shape("synthetic-rare-time"), shape("synthetic-rare-feature")
    assert rare_time.any(1).sum() == 6 and rare_time.any(0).sum() == 40
    assert rare_feature.any(1).sum() == 40 and rare_feature.any(0).sum() == 6
    assert shape("synthetic-small").sum() < shape("synthetic-middle").sum()
    with pytest.raises(XaiError, match="no option 'length'"):
        load_synthetic("synthetic-middle", length=3)


def test_aup_aur_reward_saliency_on_the_mask():
    d = load_synthetic("synthetic-middle", n_train=8, n_test=16, seq_len=30, n_features=6)
    mask = d.info["mask_test"]
    model = wrap_model(WindowNet(), n_classes=2, n_features=6, seq_len=30)
    explain_ = lambda a: oracle_explanation(model, d.test.X, a)  # noqa: E731
    perfect = AUPMetric().evaluate(model, explain_(mask * 1.0), mask=mask)["aup"]
    outside = AUPMetric().evaluate(model, explain_(~mask * 1.0), mask=mask)["aup"]
    noise = AUPMetric().evaluate(model, explain_(np.random.default_rng(0).random(mask.shape)),
                                 mask=mask)["aup"]
    assert perfect == pytest.approx(1.0) and outside == pytest.approx(0.0)
    assert noise == pytest.approx(mask.mean(), abs=0.05)
    precision, recall = precision_recall(mask * 1.0, mask)
    assert np.all(np.diff(recall) > 0)  # more mass selected, more of the mask recalled
    assert AURMetric().evaluate(model, explain_(~mask * 1.0), mask=mask)["aur"] == 0.0
    with pytest.raises(XaiError, match="needs the ground-truth mask"):
        AURMetric().evaluate(model, explain_(mask * 1.0))


# ---------- TSR ----------

def test_tsr_keeps_only_the_informative_window(test_plugin):
    model, X = window_model(), window_inputs(3)
    e = explain(model, X, method="tsr:test-grad", target=1)
    assert e.method == "tsr:test-grad" and e.attributions.shape == X.shape
    assert (e.attributions >= 0).all()
    outside = np.ones(X.shape, dtype=bool)
    outside[:, 8:16, 0] = False
    assert np.all(e.attributions[outside] == 0)
    assert (e.attributions[:, 8:16, 0] > 0).mean() > 0.5
    assert e.extras["time_relevance"].shape == (3, 32)
    scaled = explain(model, X, method="tsr:test-grad", target=1, scale=2.0)  # option passes through
    assert_close(scaled.attributions, 4 * e.attributions)
    with pytest.raises(XaiError, match="has no option 'nope'"):
        explain(model, X, method="tsr:test-grad", nope=1)


def test_tsr_alone_or_twice_is_refused(test_plugin):
    model = window_model()
    assert "tsr:" in get_explainer("tsr").check(model)
    with pytest.raises(XaiError, match="cannot explain"):
        explain(model, window_inputs(1), method="tsr")
    with pytest.raises(XaiError, match="cannot wrap tsr"):
        get_explainer("tsr").wrap(get_explainer("tsr"))


# ---------- xai evaluate ----------

@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, test_plugin):
    """A run directory with a SmallCNN trained briefly on the default synthetic-small data."""
    dataset = registry.get_dataset("synthetic-small")("synthetic-small")
    torch.manual_seed(0)
    net = SmallCNN(dataset.n_features, dataset.seq_len, 2)
    mean, std = dataset.train.X.mean((0, 1)), dataset.train.X.std((0, 1))
    model = LoadedModel(net, name="test-small-cnn", class_names=dataset.class_names,
                        feature_names=dataset.feature_names, seq_len=dataset.seq_len,
                        mean=mean, std=std)
    opt = torch.optim.Adam(model.module.parameters(), lr=0.01)
    X, y = torch.from_numpy(dataset.train.X[:300]), torch.from_numpy(dataset.train.y[:300])
    model.module.train()
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model.module(X), y).backward()
        opt.step()
    model.module.eval()
    run = tmp_path_factory.mktemp("evaluation") / "run"
    run.mkdir()
    torch.save({"format": 1, "model": "test-small-cnn", "hyperparameters": {},
                "state_dict": model.module.state_dict(), "class_names": dataset.class_names,
                "feature_names": dataset.feature_names, "seq_len": dataset.seq_len,
                "normalisation": {"mean": mean.tolist(), "std": std.tolist()},
                "dataset": {"name": "synthetic-small"}}, run / "checkpoint.pt")
    accuracy = (model.logits(dataset.test.X).argmax(1) == dataset.test.y).mean()
    assert accuracy > 0.9
    return run


def test_evaluate_command_writes_table_and_figures(synthetic_run):
    args = ["evaluate", "--run", str(synthetic_run), "--method", "test-grad", "--method", "random",
            "--samples", "8", "--figures"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(synthetic_run / "evaluation.csv")
    assert list(raw.columns[:2]) == ["verdict", "method"]
    table = raw.set_index("method")
    assert list(table.index) == ["test-grad", "random"]
    for column in ("deletion_auc", "deletion_auc_low", "deletion_auc_high", "insertion_auc",
                   "road_morf_auc", "road_lerf_auc", "randomisation_spearman", "aup", "aur",
                   "infidelity", "infidelity_low"):
        assert table[column].notna().all(), column
    grad, rnd = table.loc["test-grad"], table.loc["random"]
    assert grad["deletion_auc"] < rnd["deletion_auc"]
    assert grad["insertion_auc"] > rnd["insertion_auc"]
    assert grad["verdict"] == "better than random" and rnd["verdict"] == "baseline"
    assert grad["summary"].startswith("better on") and grad["better"] > grad["worse"]
    settings = json.loads((synthetic_run / "evaluation" / "settings.json").read_text())
    assert settings["directions"]["deletion_auc"] == "lower"
    assert settings["directions"]["insertion_auc"] == "higher"
    assert settings["labels"]["road_lerf_auc"] == "ROAD LeRF"
    assert "deletion_auc (lower better)" in result.output
    assert grad["aup"] > 1.5 * rnd["aup"]
    assert rnd["randomisation_spearman"] == pytest.approx(1.0)
    figures = synthetic_run / "evaluation"
    for name in ("auc_summary", "perturbation_test-grad", "randomisation", "aup", "aur"):
        assert (figures / f"{name}.png").stat().st_size > 1000, name
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "use --force" in again.output
    (figures / "auc_summary.png").unlink()
    no_curves = [a for a in args if a != "--figures"] + ["--force", "--metric", "deletion"]
    assert CliRunner().invoke(cli, no_curves).exit_code == 0
    assert (figures / "auc_summary.png").stat().st_size > 1000  # drawn without --figures
    assert CliRunner().invoke(cli, args + ["--force", "--metric", "aup"]).exit_code == 0
    assert list(pd.read_csv(synthetic_run / "evaluation.csv").columns) == ["verdict", "method",
                                                                           "samples", "aup"]


def test_a_costly_method_is_scored_and_compared_on_its_own_subset(synthetic_run):
    from xai_eval.runner import score_methods, verdict_table
    from xaicore.application import load_run_data

    model, dataset = load_run_data(synthetic_run)
    X, y = dataset.test.X[:8], dataset.test.y[:8]
    context = {"background": dataset.train.X, "seed": 0, "random_baseline": False}
    methods = ["test-grad", "test-costly", "random"]
    scored = score_methods(model, methods, ["deletion"], X, y, np.arange(8), dataset.train.X,
                           context, seed=0, progress=False, full=False)
    rows = scored["covered"]["test-costly"]
    assert len(rows) == 4 and len(scored["covered"]["test-grad"]) == 8
    per_sample = scored["per_sample"]
    # the same map on its 4 samples scores as test-grad does on those samples
    # (other batches: equal within float32 error, not bit for bit)
    assert_close(per_sample["test-costly"]["deletion_auc"],
                 per_sample["test-grad"]["deletion_auc"][rows], scale=1.0)
    table = {r["method"]: r for r in verdict_table(scored, 8, seed=0, n_boot=200)}
    assert [table[m]["samples"] for m in methods] == [8, 4, 8]
    assert_close(table["test-costly"]["deletion_auc"],
                 per_sample["test-grad"]["deletion_auc"][rows].mean(), scale=1.0)
    full = score_methods(model, methods, ["deletion"], X, y, np.arange(8), dataset.train.X,
                         context, seed=0, progress=False, full=True)
    assert_close(full["per_sample"]["test-costly"]["deletion_auc"],
                 full["per_sample"]["test-grad"]["deletion_auc"], scale=1.0)


def test_worker_processes_give_the_same_numbers_and_pass_on_warnings_and_failures(synthetic_run,
                                                                                 capsys,
                                                                                 thread_free):
    """Two forked workers (each task seeded on its own) give the table one process gives (with
    one torch thread here, as in each worker, so rounding is alike); an
    explainer's warning raised in a worker reaches the caller; a metric failing there is a
    warning and the other metrics' scores stay."""
    from xai_eval.runner import evaluate_run

    methods, metrics = ["test-warns", "test-costly", "random"], ["deletion", "road-morf",
                                                                  "randomisation", "infidelity",
                                                                  "test-fails"]
    tables = []
    for workers in (1, 2):
        with pytest.warns(RuntimeWarning, match="test-warns: a warning from the explainer"):
            evaluate_run(synthetic_run, methods, metrics, samples=24, force=True, progress=False,
                         n_boot=200, workers=workers)
        assert capsys.readouterr().err.count("warning: test-fails of ") == len(methods)
        tables.append(pd.read_csv(synthetic_run / "evaluation.csv").set_index("method"))
        settings = (synthetic_run / "evaluation" / "settings.json").read_text()
        assert f'"workers": {workers}' in settings
    # every task seeded, one torch thread in either case: the same computation
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
    assert tables[1]["randomisation_spearman"].notna().all()
    assert tables[1].loc["test-costly", "samples"] == 4


def test_a_worker_that_dies_is_a_one_line_error_not_a_hang(synthetic_run, thread_free):
    from xai_eval.runner import evaluate_run

    with pytest.raises(XaiError, match="evaluation worker process died"):
        evaluate_run(synthetic_run, ["test-dies", "random"], ["deletion"], samples=8, force=True,
                     progress=False, n_boot=100, workers=2)


def test_each_worker_plans_its_passes_with_its_share_of_the_memory(synthetic_run, monkeypatch):
    from xai_captum import passes
    from xai_eval.lanes import Lanes
    from xaicore.application import load_run_data, set_memory_share
    from xaicore.plugin import memory_share

    model, _ = load_run_data(synthetic_run)
    with Lanes(model, 2) as lanes:
        shares = {lanes.submit(memory_share).result()[0] for _ in range(4)}
    assert shares == {0.5} and memory_share() == 1.0  # this process keeps all of it
    from xaicore.models import devices

    monkeypatch.setattr(devices, "free_memory", lambda device: 2**30)
    row = torch.zeros(150, 1)
    alone = passes.rows_that_fit(row, torch.device("cpu"), "test")
    try:
        set_memory_share(0.25)
        assert passes.rows_that_fit(row, torch.device("cpu"), "test") == alone // 4
    finally:
        set_memory_share(1.0)


def test_workers_are_checked(synthetic_run, thread_free):
    from xai_eval.lanes import check_workers

    assert check_workers(None, torch.device("cuda")) == 1  # auto: one process beside a GPU
    assert check_workers(3, torch.device("cpu")) == 3
    with pytest.raises(XaiError, match="--workers 2 needs the CPU"):
        check_workers(2, torch.device("cuda"))
    result = CliRunner().invoke(cli, ["evaluate", "--run", str(synthetic_run), "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # as a Jupyter kernel or a server runs threads
    other.start()
    try:
        assert check_workers(None, torch.device("cpu")) == 1  # auto: no fork beside a thread
        with pytest.raises(XaiError, match="would fork this process while it runs other threads"):
            check_workers(2, torch.device("cpu"))
    finally:
        stop.set()
        other.join()


def test_evaluate_command_names_bad_input(synthetic_run):
    base = ["evaluate", "--run", str(synthetic_run), "--method", "test-grad", "--force"]
    result = CliRunner().invoke(cli, base + ["--metric", "no-such-metric"])
    assert result.exit_code == 1 and "unknown metric 'no-such-metric'" in result.output
    result = CliRunner().invoke(cli, base + ["--samples", "0"])
    assert result.exit_code == 1 and "--samples must be at least 1" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--run", str(synthetic_run / "nope")])
    assert result.exit_code == 1 and "nope" in result.output


def test_metric_and_synthetic_options_are_declared_and_validated():
    model, X = window_model(), window_inputs(2)
    e = oracle_explanation(model, X, np.ones_like(X))
    with pytest.raises(XaiError, match=r"metric deletion: option 'step_fraction' must be in "
                                       r"\[1e-09, 1\], not 2.0"):
        DeletionMetric().evaluate(model, e, substrate="smooth", step_fraction=2)
    with pytest.raises(XaiError, match="metric insertion: unknown order 'up'; it must be one of "
                                       "signed, abs"):
        InsertionMetric().evaluate(model, e, substrate="smooth", order="up")
    with pytest.raises(XaiError, match="metric randomisation: option 'max_steps' must be in"):
        RandomisationMetric().evaluate(model, e, max_steps=0)
    with pytest.raises(XaiError, match=r"synthetic dataset: option 'n_train' must be in \[4, "):
        load_synthetic("synthetic-small", n_train=3)
    with pytest.raises(XaiError, match="synthetic dataset: option 'seq_len' must be an integer"):
        load_synthetic("synthetic-small", seq_len=2.5)
    runner = CliRunner()
    for name, line in (("deletion", "order (str, default 'signed' one of signed, abs)"),
                       ("infidelity", "n_perturb_samples (int, default 10 in [1, 10000])"),
                       ("synthetic-middle", "signal (float, default 1.0 in [0, 1000])")):
        listed = runner.invoke(cli, ["list", "--options", name])
        assert listed.exit_code == 0 and line in listed.output, listed.output


# ---------- intervals, verdicts, stability, ROAD ----------

def test_verdict_rewards_the_oracle_and_condemns_its_reverse():
    from xai_eval.stats import BETTER, WORSE, bootstrap_indices, paired_verdict

    model, X = window_model(), window_inputs(40)
    truth = np.zeros_like(X)
    truth[:, 8:16, 0] = X[:, 8:16, 0] ** 2
    rng = np.random.default_rng(3)
    explanations = [oracle_explanation(model, X, a) for a in (truth, -truth, rng.random(X.shape))]
    indices = bootstrap_indices(len(X), 1000, 0)
    for metric in (DeletionMetric(), InsertionMetric()):
        results = metric.evaluate_many(model, explanations, background=np.zeros((4, 32, 2)),
                                       random_baseline=False)
        name = metric.score_name()
        oracle, reverse, rand = (r[1]["per_sample"][name] for r in results)
        assert paired_verdict(oracle, rand, metric.higher_is_better, indices)["verdict"] == BETTER
        assert paired_verdict(reverse, rand, metric.higher_is_better, indices)["verdict"] == WORSE


def test_holm_matches_a_hand_computed_family():
    from xai_eval.stats import holm

    # sorted: 0.005, 0.01, 0.03, 0.04 -> 4 * 0.005, 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 0.04)
    assert_close(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # an untested metric (NaN) stays NaN and does not count: m = 2
    adjusted = holm([0.01, float("nan"), 0.04])
    assert np.isnan(adjusted[1])
    assert_close(adjusted[[0, 2]], [0.02, 0.04])
    assert_close(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1, never decreasing along the order


def test_a_metric_verdict_needs_the_holm_p_and_the_interval_on_one_side():
    from xai_eval.stats import BETTER, SAME, WORSE, corrected_verdict

    above, below, across = ({"gain_low": lo, "gain_high": hi}
                            for lo, hi in ((0.1, 0.3), (-0.3, -0.1), (-0.1, 0.3)))
    assert corrected_verdict(above, 0.03) == BETTER and corrected_verdict(below, 0.03) == WORSE
    assert corrected_verdict(above, 0.06) == SAME  # significant alone, not after Holm
    assert corrected_verdict(across, 0.001) == SAME
    assert corrected_verdict(above, float("nan")) == SAME


def synthetic_scores(n: int = 60) -> dict:
    """Per-sample scores in the shape ``score_methods`` returns them: integrated-gradients as on
    the demo run (deletion 0.35 vs random 0.61, insertion 0.81 vs 0.61, better on ROAD MoRF,
    worse on ROAD LeRF), grad-cam better on all four but failing the randomisation check,
    saliency better on deletion only, and infidelity the same for every method as for random
    (differences of +-1e-3 alternating: a Wilcoxon p of 1)."""
    rng = np.random.default_rng(0)

    def around(mean: float) -> np.ndarray:
        return mean + 0.1 * rng.standard_normal(n)

    random = {"deletion_auc": around(0.608), "insertion_auc": around(0.609),
              "road_morf_auc": around(0.5), "road_lerf_auc": around(0.5),
              "infidelity": 0.019 + 0.003 * rng.standard_normal(n)}
    flip = np.where(np.arange(n) % 2 == 0, 1e-3, -1e-3)
    per_sample = {
        "integrated-gradients": {"deletion_auc": around(0.349), "insertion_auc": around(0.810),
                                 "road_morf_auc": around(0.3), "road_lerf_auc": around(0.3)},
        "grad-cam": {"deletion_auc": around(0.3), "insertion_auc": around(0.8),
                     "road_morf_auc": around(0.3), "road_lerf_auc": around(0.7)},
        "saliency": {"deletion_auc": around(0.45), "insertion_auc": random["insertion_auc"] + flip,
                     "road_morf_auc": random["road_morf_auc"] - flip,
                     "road_lerf_auc": random["road_lerf_auc"] + flip},
        "random": random}
    for name in ("integrated-gradients", "grad-cam", "saliency"):
        per_sample[name]["infidelity"] = random["infidelity"] + flip
    directions = {"deletion_auc": False, "insertion_auc": True, "road_morf_auc": False,
                  "road_lerf_auc": True, "infidelity": False}
    rows = {m: {"method": m, "samples": n} for m in per_sample}
    rows["grad-cam"]["randomisation"] = "fail"
    rows["integrated-gradients"]["randomisation"] = rows["saliency"]["randomisation"] = "pass"
    return {"rows": rows, "per_sample": per_sample, "directions": directions,
            "versus_random": list(directions), "covered": {m: np.arange(n) for m in per_sample}}


def test_a_clear_win_on_most_metrics_reads_as_a_win_and_an_uninformative_metric_is_not_counted():
    from xai_eval.runner import verdict_table
    from xai_eval.stats import BETTER, SAME, UNINFORMATIVE, WORSE

    table = verdict_table(synthetic_scores(), 60, seed=0, n_boot=500)
    rows = {r["method"]: r for r in table}
    ig = rows["integrated-gradients"]
    assert [ig[f"{k}_vs_random"] for k in ("deletion_auc", "insertion_auc", "road_morf_auc",
                                          "road_lerf_auc")] == [BETTER, BETTER, BETTER, WORSE]
    assert ig["verdict"] == BETTER and (ig["better"], ig["worse"]) == (3, 1)
    # infidelity separates no method from random: marked, and left out of the "of 4"
    for name in ("integrated-gradients", "grad-cam", "saliency"):
        assert rows[name]["infidelity_vs_random"] == UNINFORMATIVE
    assert "infidelity_vs_random" not in rows["random"]
    assert ig["summary"] == ("better on 3 of 4 metrics (deletion, insertion, ROAD MoRF), "
                             "worse on ROAD LeRF")
    assert rows["saliency"]["summary"] == "better on 1 of 4 metrics (deletion)"
    assert rows["saliency"]["road_lerf_auc_vs_random"] == SAME
    cam = rows["grad-cam"]
    assert cam["summary"] == ("better on all 4 metrics; fails the randomisation check (ranked "
                              "after the methods that pass it)")
    # passing the sanity check first, then better minus worse; the baseline last
    assert [r["method"] for r in table] == ["integrated-gradients", "saliency", "grad-cam",
                                            "random"]
    assert list(table[0])[:3] == ["verdict", "method", "summary"]
    # the p-values are adjusted over the five metrics compared: never below the raw ones
    for key in synthetic_scores()["versus_random"]:
        assert ig[f"{key}_p_holm"] >= ig[f"{key}_p"]


def test_the_summary_counts_the_informative_metrics_and_weighs_better_against_worse():
    from xai_eval.stats import BETTER, SAME, WORSE, summary

    assert summary({"deletion": WORSE, "insertion": SAME, "ROAD MoRF": WORSE}) == (
        WORSE, "worse on 2 of 3 metrics (deletion, ROAD MoRF)")
    assert summary({"deletion": BETTER, "insertion": WORSE}) == (
        SAME, "better on 1 of 2 metrics (deletion), worse on insertion")
    assert summary({"deletion": SAME, "insertion": SAME}) == (
        SAME, "not distinguishable on any of 2 metrics")
    assert summary({"deletion": BETTER}, "pass") == (BETTER, "better on 1 metric")
    assert summary({}) == (SAME, "no informative metric")


def test_the_cli_table_shows_each_metric_verdict_and_direction():
    from xai_eval.commands import summary_table
    from xai_eval.runner import verdict_table

    scored = synthetic_scores()
    text = summary_table(verdict_table(scored, 60, seed=0, n_boot=500), scored["directions"])
    header, ig_line = text.splitlines()[:2]
    assert "deletion_auc (lower better)" in header and "insertion_auc (higher better)" in header
    assert "infidelity (lower better, uninformative)" in header
    assert "integrated-gradients" in ig_line and "better on 3 of 4 metrics" in ig_line
    assert ig_line.count(" better") >= 3 and " worse" in ig_line
    assert "_p" not in header


def test_interval_contains_the_estimate_and_shrinks_with_more_samples():
    from xai_eval.stats import bootstrap_indices, mean_interval

    values = np.random.default_rng(0).normal(0.5, 0.2, 2000)
    widths = []
    for n in (20, 200, 2000):
        mean, low, high = mean_interval(values[:n], bootstrap_indices(n, 1000, 0))
        assert low <= mean <= high and mean == pytest.approx(values[:n].mean())
        widths.append(high - low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]
    # about 95% coverage: the true mean 0.5 lies inside nearly every interval of 50 draws
    rng = np.random.default_rng(1)
    hits = sum(low <= 0.5 <= high for _, low, high in
               (mean_interval(rng.normal(0.5, 0.2, 50), bootstrap_indices(50, 500, k))
                for k in range(100)))
    assert 85 <= hits <= 100
    # undefined values (the correlation of a constant map) are left out, quietly: a resample of
    # only those is no resample
    values = np.array([0.2, np.nan, np.nan, 0.4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, low, high = mean_interval(values, bootstrap_indices(4, 500, 0))
    assert mean == pytest.approx(0.3) and 0.2 - 1e-12 <= low <= mean <= high <= 0.4 + 1e-12


def test_road_imputation_reproduces_a_ramp_and_solves_the_linear_system():
    from xai_eval.perturbation import linear_impute

    T = 40
    ramp = np.tile(np.linspace(-1, 3, T, dtype=np.float32)[None, :, None], (3, 1, 2))
    removed = np.zeros_like(ramp, dtype=bool)
    removed[0, 5:30, 0] = True                 # a long gap
    removed[1, 2:-2:2, 1] = True               # every other step, and some runs of two
    removed[1, 3:-2:6, 1] = True
    removed[2, 10:12, :] = True
    removed[2, :3, 1] = True                   # the start: copies its first kept neighbour
    fallback = torch.zeros(1, 1, 2)
    filled = linear_impute(torch.from_numpy(ramp), torch.from_numpy(removed), fallback).numpy()
    interior = removed.copy()
    interior[2, :3, 1] = False
    assert_close(filled[interior], ramp[interior])
    assert_close(filled[2, :3, 1], np.full(3, ramp[2, 3, 1]))
    assert np.array_equal(filled[~removed], ramp[~removed])
    noisy = np.random.default_rng(0).standard_normal((4, T, 2)).astype(np.float32)
    gone = np.random.default_rng(1).random(noisy.shape) < 0.6
    gone[3, :, 1] = True                       # nothing kept: the fallback
    fast = linear_impute(torch.from_numpy(noisy), torch.from_numpy(gone), fallback).numpy()
    assert_close(fast, linear_impute_sparse(noisy, gone, np.zeros(2)))


def test_road_ranks_the_oracle_above_random_both_ways():
    from xai_eval.perturbation import RoadLerfMetric, RoadMorfMetric

    model, X = window_model(), window_inputs(20)
    truth = np.zeros_like(X)
    truth[:, 8:16, 0] = X[:, 8:16, 0] ** 2
    e = oracle_explanation(model, X, truth)
    morf = RoadMorfMetric().evaluate(model, e, background=np.zeros((4, 32, 2)))
    lerf = RoadLerfMetric().evaluate(model, e, background=np.zeros((4, 32, 2)))
    assert morf["road_morf_auc"] < morf["road_morf_auc_random"]
    assert lerf["road_lerf_auc"] > lerf["road_lerf_auc_random"]


def test_same_seed_same_numbers_other_seed_inside_the_intervals(synthetic_run, test_plugin):
    base = ["evaluate", "--run", str(synthetic_run), "--method", "test-grad", "--force",
            "--metric", "deletion", "--metric", "road-morf"]  # the whole test split
    tables = []
    for seed in ("0", "0", "1"):
        result = CliRunner().invoke(cli, base + ["--seed", seed])
        assert result.exit_code == 0, result.output
        header = next(line.split() for line in result.output.splitlines() if "method" in line.split())
        assert header[0] == "verdict"
        tables.append(pd.read_csv(synthetic_run / "evaluation.csv").set_index("method"))
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)  # the same computation
    first, other = tables[0], tables[2]
    for method in first.index:
        for key in ("deletion_auc", "road_morf_auc"):
            low, high = first.loc[method, f"{key}_low"], first.loc[method, f"{key}_high"]
            assert low <= first.loc[method, key] <= high
            assert low <= other.loc[method, key] <= high


def test_infidelity_of_several_explanations_equals_captums_on_the_same_perturbations():
    """One forward pass over the perturbations serves every explanation; each value is captum's
    infidelity(normalize=True) given the same noise."""
    from captum.metrics import infidelity

    from xai_eval.captum_metrics import InfidelityMetric

    torch.manual_seed(0)
    model = wrap_model(SmallCNN(2, 32, 2), n_classes=2, n_features=2, seq_len=32)
    X = window_inputs(5)
    rng = np.random.default_rng(1)
    maps = [rng.standard_normal(X.shape).astype(np.float32) for _ in range(3)]
    explanations = [oracle_explanation(model, X, a) for a in maps]
    metric, options = InfidelityMetric(), {"n_perturb_samples": 7, "seed": 3, "batch_size": 8}
    results = metric.evaluate_many(model, explanations, **options)
    x = torch.from_numpy(X)
    opts = {**metric.defaults, **options}
    noise, _ = metric.perturbations(model, x, opts)
    for e, (scores, curve) in zip(explanations, results):
        expected = infidelity(model.module, lambda inputs: (noise, inputs - noise), x,
                              torch.from_numpy(e.attributions), target=torch.from_numpy(e.targets),
                              n_perturb_samples=7, max_examples_per_batch=5 * 7, normalize=True)
        assert_close(curve["per_sample"]["infidelity"], expected.numpy())
        assert_close(scores["infidelity"], float(expected.mean()),
                     scale=float(expected.abs().max()))
    alone = metric.evaluate_curves(model, explanations[1], **options)[1]["per_sample"]["infidelity"]
    assert_close(alone, results[1][1]["per_sample"]["infidelity"])


def test_sensitivity_max_is_zero_for_input_independent_maps_and_grows_with_the_radius(test_plugin):
    from xai_eval.captum_metrics import SensitivityMaxMetric

    model, X = window_model(), window_inputs(6)
    e = oracle_explanation(model, X, np.ones_like(X), method="test-grad")
    class Ones(BaseExplainer):
        name = "ones"
        defaults: dict = {}

        def attribute(self, model, inputs, target, **opts):
            return torch.ones_like(inputs), {}

    constant = SensitivityMaxMetric().evaluate(model, e, explainer=Ones())
    assert constant["sensitivity_max"] == 0.0  # the same map under every perturbation
    small = SensitivityMaxMetric().evaluate(model, e, radius=0.01)["sensitivity_max"]
    large = SensitivityMaxMetric().evaluate(model, e, radius=0.2)["sensitivity_max"]
    assert 0 < small < large


def test_spearman_rows_matches_scipy_with_ties_padding_and_constant_rows():
    from scipy.stats import spearmanr

    from xaicore.application import spearman_rows

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (6, 20)).astype(float)  # many ties
    b = a + rng.normal(0, 2, a.shape)
    b[2, -5:] = np.nan  # padding on one side only: those cells are left out on both
    a[3] = 1.0  # constant row
    rho = spearman_rows(a, b)
    for i in range(6):
        keep = ~(np.isnan(a[i]) | np.isnan(b[i]))
        expected = np.nan if i == 3 else spearmanr(a[i, keep], b[i, keep])[0]
        np.testing.assert_allclose(rho[i], expected, rtol=1e-12, equal_nan=True)  # float64


def test_metrics_run_by_default_on_the_kinds_they_fit_and_skipped_ones_say_why(test_plugin):
    from xai_eval.runner import choose_metrics

    model = window_model()
    chosen, skipped = choose_metrics((), {"background": None}, model)
    assert {"deletion", "insertion", "road-morf", "infidelity", "randomisation"} <= set(chosen)
    # on series by name only: the default set (and the demo's verdicts) stay as they were
    assert not {"comprehensiveness", "sufficiency", "sensitivity-max"} & set(chosen)
    assert set(skipped) == {"aup", "aur"} and "needs mask" in skipped["aup"]
    assert choose_metrics(["comprehensiveness"], {}, model) == (["comprehensiveness"], {})
    with pytest.raises(XaiError, match="metric aup needs mask"):
        choose_metrics(["aup"], {}, model)
