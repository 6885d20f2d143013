"""Variable-length series end to end: padded loading, masked models, explainers and metrics that
leave the padding out, and a CLI round trip on an npz with a ``lengths`` array."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import xaicore
from tolerances import assert_close, assert_identical, tolerance
from xaicore.cli import cli
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.store import load_explanation
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

MODELS = ["cnn-lstm-attention", "inception-time", "fcn", "resnet", "transformer"]
T, F = 40, 2
LENGTHS = [40, 33, 17, 9, 33]


def built(name: str, n_features: int = F, seq_len: int = T, n_classes: int = 3) -> LoadedModel:
    """A freshly built model whose BatchNorm statistics were moved by a few training batches."""
    torch.manual_seed(0)
    net = registry.get_model(name)(n_features, seq_len, n_classes)
    model = LoadedModel(net, name=name, class_names=[str(c) for c in range(n_classes)],
                        feature_names=[f"f{i}" for i in range(n_features)], seq_len=seq_len,
                        mean=np.full(n_features, 0.3), std=np.full(n_features, 1.5))
    model.module.train()
    with torch.no_grad():
        for _ in range(3):
            model.module(torch.randn(8, seq_len, n_features) * 2)
    model.module.eval()
    return model


def padded(X: np.ndarray, lengths: list[int]) -> np.ndarray:
    out = X.copy()
    for i, length in enumerate(lengths):
        out[i, length:] = np.nan
    return out


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return np.random.default_rng(0).normal(1.0, 2.0, size=(len(LENGTHS), T, F)).astype(np.float32)


@pytest.mark.parametrize("name", MODELS)
def test_a_padded_sample_gives_the_logits_of_the_sample_alone(name, series):
    model = built(name)
    with torch.no_grad():
        batch = model.module(torch.from_numpy(padded(series, LENGTHS)))
        alone = torch.cat([model.module(torch.from_numpy(series[i:i + 1, :length]))
                           for i, length in enumerate(LENGTHS)])
        # what is in the padding does not matter
        noisy = series.copy()
        noisy[:, :, :] = np.where(np.arange(T)[None, :, None] < np.array(LENGTHS)[:, None, None],
                                  series, 1e3)
        zero_filled = model.module(torch.from_numpy(padded(noisy, LENGTHS)))
    assert_close(batch, alone)
    assert_close(zero_filled, alone)


@pytest.mark.parametrize("name", ["cnn-lstm-attention", "inception-time", "fcn", "resnet"])
def test_training_statistics_come_from_valid_steps(name, series):
    """In train mode a padded batch gives the logits and BatchNorm running statistics of the
    same batch unpadded (here every sample is 17 steps long, padded to 40)."""
    outputs, stats = [], []
    for X in (padded(series, [17] * len(series)), series[:, :17]):
        model = built(name)
        model.module.train()
        outputs.append(model.module(torch.from_numpy(X)).detach().numpy())
        stats.append([b.detach().numpy().copy() for k, b in model.module.named_buffers()
                      if k.endswith(("running_mean", "running_var"))])
    assert_close(outputs[0], outputs[1])
    for a, b in zip(*stats):
        assert_close(a, b)


def test_gradients_never_reach_the_padding(series):
    model = built("cnn-lstm-attention")
    x = torch.from_numpy(padded(series, LENGTHS)).requires_grad_(True)
    model.module(x)[:, 0].sum().backward()
    valid = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    grads = x.grad.numpy()
    assert np.isfinite(grads).all() and (grads[~valid] == 0).all() and (grads[valid] != 0).any()


class NoMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(F, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(1))


def test_a_model_that_cannot_mask_padding_is_refused_in_one_line(series):
    model = LoadedModel(NoMask(), name="no-mask", class_names=["a", "b"], feature_names=["x", "y"],
                        seq_len=T, mean=np.zeros(F), std=np.ones(F))
    with pytest.raises(XaiError, match=r"sample 1 ends in NaN padding after 33 of 40 steps.*"
                                       r"cannot mask padding") as info:
        model.logits(padded(series, LENGTHS))
    assert "\n" not in str(info.value)
    with pytest.raises(XaiError, match="cannot mask padding"):
        model.module(torch.from_numpy(padded(series, LENGTHS)))


def test_nan_inside_a_series_is_a_one_line_error_naming_the_sample(tmp_path):
    X = np.random.default_rng(1).normal(size=(8, 10, 2))
    X[5, 7:] = np.nan  # padding: fine
    X[3, 4, 1] = np.nan  # inside sample 3's valid part
    np.savez(tmp_path / "bad.npz", X=X, y=np.arange(8) % 2)
    with pytest.raises(XaiError, match=r"sample 3, time step 4, feature 1") as info:
        load_dataset(dataset_spec(tmp_path / "bad.npz"))
    assert "\n" not in str(info.value)
    X[3, 4, 1] = 0.0
    X[6, 9, 0] = np.nan  # NaN in one feature only of a last step: not padding
    np.savez(tmp_path / "bad.npz", X=X, y=np.arange(8) % 2)
    with pytest.raises(XaiError, match=r"sample 6, time step 9, feature 0"):
        load_dataset(dataset_spec(tmp_path / "bad.npz"))


def test_npz_lengths_and_csv_trailing_cells_are_padding(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 9, 2))
    lengths = np.array([9, 4, 7, 2, 9, 5, 6, 3, 8, 9, 1, 5])
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(12) % 2, lengths=lengths)
    ds = load_dataset(dataset_spec(tmp_path / "d.npz", test_size=0.5))
    both = np.concatenate([ds.train.lengths, ds.test.lengths])
    assert sorted(both.tolist()) == sorted(lengths.tolist()) and ds.variable_length
    (tmp_path / "d.csv").write_text("t0,t1,t2,t3,label\n1,2,3,4,a\n1,2,,,b\n5,NaN,nan,,a\n"
                                    "2,2,2,,b\n")
    ds = load_dataset(dataset_spec(tmp_path / "d.csv", test_size=0.5))
    assert sorted(np.concatenate([ds.train.lengths, ds.test.lengths]).tolist()) == [1, 2, 3, 4]
    (tmp_path / "mid.csv").write_text("t0,t1,t2,label\n1,,3,a\n1,2,3,b\n")
    with pytest.raises(XaiError, match="empty cell at row 2, column 't1'"):
        load_dataset(dataset_spec(tmp_path / "mid.csv"))


EXPLAINERS = ["integrated-gradients", "saliency", "input-x-gradient", "smoothgrad",
              "gradient-shap", "deeplift", "gradcam", "gradcam++", "cam", "dcam", "shap",
              "attention", "window-occlusion"]


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    bg = np.random.default_rng(3).normal(1.0, 2.0, size=(12, T, F)).astype(np.float32)
    return padded(bg, [40, 30, 25, 40, 12, 36, 40, 40, 20, 33, 40, 38])


@pytest.mark.parametrize("method", EXPLAINERS)
def test_explainers_leave_padding_nan_and_keep_lengths(method, series, background, tmp_path):
    model = built("fcn" if method in ("deeplift", "cam", "gradcam", "gradcam++", "dcam")
                  else "transformer" if method == "attention" else "cnn-lstm-attention")
    explainer = registry.get_explainer(method)
    options = {"background": background} if "background" in explainer.requires else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        e = xaicore.explain(model, padded(series, LENGTHS), method=method, **options)
    valid = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    assert e.lengths.tolist() == LENGTHS
    assert np.isnan(e.attributions[~valid]).all() and np.isfinite(e.attributions[valid]).all()
    assert np.isnan(e.inputs[~valid]).all()
    # aggregates are over valid steps only: the mean over time of sample 3 uses its 9 steps (of
    # a map shared by the features, over time and features: it has no per-feature importance)
    over, axes = (("time", "feature"), (0, 1)) if e.time_only else ("time", 0)
    assert_close(e.aggregate(over, "abs_mean")[3], np.abs(e.attributions[3, :9]).mean(axes))
    again = Explanation.load(e.save(tmp_path / "e.npz"))
    assert again.lengths.tolist() == LENGTHS
    assert len(e.to_dataframe()) == sum(LENGTHS) * F


def test_integrated_gradients_is_complete_on_the_valid_steps(series):
    """sum of attributions over valid steps = F(x) - F(baseline), both logits taken through the
    masked forward pass of the padded batch (the attributions were computed per length)."""
    model = built("cnn-lstm-attention")
    X = padded(series, LENGTHS)
    e = xaicore.explain(model, X, method="integrated-gradients", n_steps=256)
    baseline = np.where(np.isnan(X), np.nan, 0.0).astype(np.float32)
    logits, zero = (model.logits(a) for a in (X, baseline))
    rows = np.arange(len(X))
    expected = logits[rows, e.targets] - zero[rows, e.targets]
    # completeness within the quadrature's 1%, per sample
    gap = np.abs(np.nansum(e.attributions.astype(np.float64), axis=(1, 2)) - expected)
    assert (gap <= 0.01 * np.abs(expected) + tolerance(expected)).all(), gap / expected


def test_a_users_baseline_is_cut_with_each_series_and_keeps_completeness(series):
    """A user's baseline, one per sample with NaN in the padding or one series shared by every
    sample, is cut to each length: completeness against its logits through the masked forward."""
    model = built("cnn-lstm-attention")
    X = padded(series, LENGTHS)
    shared = np.random.default_rng(4).normal(-4.0, 1.0, size=(T, F)).astype(np.float32)
    per_sample = padded(np.repeat(shared[None], len(X), axis=0), LENGTHS)
    e = xaicore.explain(model, X, method="integrated-gradients", n_steps=256, baseline=per_sample)
    logits, base = (model.logits(a) for a in (X, per_sample))
    rows = np.arange(len(X))
    expected = logits[rows, e.targets] - base[rows, e.targets]
    assert np.abs(expected).min() > 1e-3  # the check below is not vacuous (an untrained model)
    gap = np.abs(np.nansum(e.attributions.astype(np.float64), axis=(1, 2)) - expected)
    assert (gap <= 0.01 * np.abs(expected) + tolerance(expected)).all(), gap / expected
    assert (np.isnan(e.attributions) == np.isnan(X)).all()
    again = xaicore.explain(model, X, method="integrated-gradients", n_steps=256, baseline=shared)
    # the shared series cut to each length is the per-sample baseline's valid part: the same
    # computation
    assert_identical(again.attributions, e.attributions)


def test_saliency_is_the_gradient_of_the_masked_forward_pass(series):
    model = built("resnet")
    X = padded(series, LENGTHS)
    e = xaicore.explain(model, X, method="saliency", abs=False)
    x = torch.from_numpy(X).requires_grad_(True)
    model.module(x).gather(1, torch.from_numpy(e.targets)[:, None]).sum().backward()
    valid = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    assert_close(e.attributions[valid], x.grad.numpy()[valid])


def test_shap_segments_lie_within_each_length_and_add_up(series, background):
    model = built("fcn")
    e = xaicore.explain(model, padded(series, LENGTHS), method="shap", background=background,
                        n_segments=4)
    bounds = e.extras["segment_bounds"]
    assert {int(k): v[-1] for k, v in bounds.items()} == {n: n for n in set(LENGTHS)}
    # additive by construction: float32 error of the logits' scale
    outputs = e.extras["model_output"]
    assert_close(np.nansum(e.attributions, axis=(1, 2)) + e.extras["base_value"], outputs,
                 scale=float(np.abs(outputs).max()))


def test_metrics_change_only_valid_cells(series):
    from xai_eval.captum_metrics import InfidelityMetric
    from xai_eval.perturbation import DeletionMetric, InsertionMetric, RoadMorfMetric, cell_ranks

    model = built("fcn")
    X = padded(series, LENGTHS)
    e = xaicore.explain(model, X, method="saliency")
    ranks = cell_ranks(e.attributions)
    valid = np.arange(T)[None, :, None] < np.array(LENGTHS)[:, None, None]
    for i, length in enumerate(LENGTHS):  # padding ranks after every valid cell
        assert ranks[i][~valid[i].repeat(F, 1)].min(initial=length * F) >= length * F
    for metric in (DeletionMetric(), InsertionMetric(), RoadMorfMetric(), InfidelityMetric()):
        scores = metric.evaluate(model, e)
        assert all(np.isfinite(v) for v in scores.values()), (metric.name, scores)


def test_cli_round_trip_on_an_npz_with_lengths(tmp_path):
    rng = np.random.default_rng(4)
    n, steps = 48, 30
    y = np.arange(n) % 2
    lengths = rng.integers(10, steps + 1, size=n)
    X = rng.normal(0, 0.3, size=(n, steps, 2))
    for i in range(n):  # class 1 has a bump just before its own end
        X[i, lengths[i] - 6:lengths[i] - 2, 0] += 2.0 * y[i]
    X[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0  # not NaN: lengths say where it ends
    np.savez(tmp_path / "vl.npz", X=X, y=y, lengths=lengths)
    run = tmp_path / "run"

    def xai(*args):
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result

    xai("train", "--dataset", tmp_path / "vl.npz", "--model", "fcn", "--out", run,
        "--epochs", "15", "--param", "filters=[16,32,16]")
    xai("explain", "--run", run, "--method", "integrated-gradients", "--method", "gradcam",
        "--method", "shap", "--samples", "0:6")
    xai("evaluate", "--run", run, "--method", "integrated-gradients", "--method", "gradcam",
        "--samples", "6", "--metric", "deletion", "--metric", "insertion")
    xai("report", "--run", run)
    test = load_dataset(dataset_spec(tmp_path / "vl.npz")).test
    assert (test.lengths < steps).any()
    for method in ("integrated-gradients", "gradcam", "shap"):
        e = Explanation.load(run / "explanations" / f"{method}.npz")
        own = test.lengths[:6]
        assert e.lengths.tolist() == own.tolist()
        valid = np.arange(steps)[None, :] < own[:, None]
        assert np.isnan(e.attributions[~valid]).all() and np.isfinite(e.attributions[valid]).all()
    table = pd.read_csv(run / "evaluation.csv").set_index("method")
    assert np.isfinite(table[["deletion_auc", "insertion_auc"]].to_numpy()).all()
    assert (run / "report.html").stat().st_size > 10_000
    # streamed (NaN-padded .npy, batches of 4, shortest series first, so a later batch's
    # time-shaped extras are wider than the first's): the maps and extras of the in-memory call
    order = np.argsort(test.lengths[:10], kind="stable")
    X = test.X[:10][order]
    np.save(tmp_path / "padded.npy", X)
    xai("explain", "--run", run, "--input", tmp_path / "padded.npy", "--method",
        "integrated-gradients", "--method", "gradcam", "--batch-size", "4", "--out",
        tmp_path / "streamed")
    for method in ("integrated-gradients", "gradcam"):
        streamed = load_explanation(tmp_path / "streamed" / f"{method}.zarr").load()
        direct = xaicore.explain(xaicore.load_run(run), X, method=method)
        assert streamed.lengths.tolist() == test.lengths[:10][order].tolist()
        assert_close(streamed.attributions, direct.attributions, equal_nan=True)
        for key, value in direct.extras.items():
            if isinstance(value, np.ndarray):
                assert_close(streamed.extras[key], value, equal_nan=True, err_msg=key)
