"""extremal-mask and dynamask: deterministic under a seed, masks in [0, 1], high on the cells a
hand-built model reads and low elsewhere, bad options refused in one line, progress shown, and
both through the CLI (explain, streaming, evaluate, report)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import xaicore
from conftest import assert_evaluated_and_reported
from nets_explainers import TinyCNN, inputs, loaded
from tolerances import assert_close, assert_identical
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.methods import result_name
from xaicore.models.loaded import LoadedModel

T, F = 32, 3
KNOWN = (slice(10, 16), 1)  # the cells the hand-built model reads: steps 10-15 of feature 1
FAST = {"epochs": 30, "progress": False}


class KnownCells(nn.Module):
    """Two classes; the second's logit is twice the mean of the KNOWN cells, nothing else counts."""

    default_params: dict = {}
    gradcam_layer = None

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = x[:, KNOWN[0], KNOWN[1]].mean(1) * self.scale
        return torch.stack([torch.zeros_like(evidence), evidence], 1)


@pytest.fixture(scope="module")
def known() -> tuple[LoadedModel, np.ndarray, np.ndarray]:
    """The model, six noisy series whose KNOWN cells are raised by 2, and the KNOWN cells' mask."""
    model = LoadedModel(KnownCells(F, T, 2), name="known", class_names=["a", "b"],
                        feature_names=["x", "y", "z"], seq_len=T)
    X = (0.3 * np.random.default_rng(0).standard_normal((6, T, F))).astype(np.float32)
    X[:, KNOWN[0], KNOWN[1]] += 2
    truth = np.zeros((T, F), dtype=bool)
    truth[KNOWN] = True
    return model, X, truth


@pytest.mark.parametrize("method, options", [
    ("extremal-mask", {"lambda_1": 0.01}),  # every cell the probability needs kept
    ("dynamask", {"keep_percent": [10]}),  # 9.6 cells of 96: room for the 6 it needs
    ("dynamask", {}),  # the default areas: the smallest within tolerance is 10%
])
def test_the_mask_is_high_on_the_cells_the_model_reads_and_low_elsewhere(known, method, options):
    model, X, truth = known
    e = xaicore.explain(model, X, method=method, progress=False, **options)
    assert e.targets.tolist() == [1] * 6  # the second class, for every series
    inside, outside = e.attributions[:, truth], e.attributions[:, ~truth]
    assert inside.min() > 0.8, inside.min()
    assert outside.mean() < 0.1, outside.mean()
    if method == "dynamask":
        assert_identical(e.extras["keep_ratio"], np.full(6, 0.1, dtype=np.float32))  # as chosen


def test_extremal_masks_default_l1_weight_keeps_the_known_cells_far_above_the_others(known):
    """At tint's lambda_1 = 1 the L1 term may drop some of the six cells whose mean the model
    reads (keeping most of them preserves the probability nearly as well), yet they stay high
    beside every other cell."""
    model, X, truth = known
    e = xaicore.explain(model, X, method="extremal-mask", progress=False)
    assert e.attributions[:, truth].mean() > 10 * e.attributions[:, ~truth].mean()


@pytest.mark.parametrize("method, options", [
    ("extremal-mask", {}), ("dynamask", {}),
    ("dynamask", {"perturbation": "gaussian_blur", "sigma_max": 2.0, "keep_percent": [20, 40]})])
def test_masks_are_in_zero_one_and_the_same_seed_gives_the_same_masks(method, options):
    model, X = loaded(TinyCNN, n_features=F, seq_len=T), inputs(4, T, F)
    e = xaicore.explain(model, X, method=method, **FAST, **options)
    again = xaicore.explain(model, X, method=method, **FAST, **options)
    assert e.attributions.shape == X.shape
    assert e.attributions.min() >= 0 and e.attributions.max() <= 1
    assert_identical(e.attributions, again.attributions)  # the same computation, seeded
    assert np.ptp(e.attributions) > 0  # a map, not a constant


@pytest.mark.parametrize("method", ["extremal-mask", "dynamask"])
def test_the_masks_do_not_depend_on_the_units_of_the_data(method):
    """A model with a train normalisation explaining raw series learns the masks of the same
    network explaining the normalised series: the perturbation network and its |NN(x)| work in
    normalised units, and the fade to the mean is affine."""
    model = loaded(TinyCNN, n_features=F, seq_len=T)  # mean linspace(-0.5, 0.5), std linspace(1, 2)
    bare = LoadedModel(model.network, name="bare", class_names=model.class_names,
                       feature_names=model.feature_names, seq_len=T)
    X = inputs(4, T, F)
    Z = ((X - np.linspace(-0.5, 0.5, F)) / np.linspace(1.0, 2.0, F)).astype(np.float32)
    on_raw = xaicore.explain(model, X, method=method, progress=False)
    on_normalised = xaicore.explain(bare, Z, method=method, progress=False)
    assert_close(on_raw.attributions, on_normalised.attributions, scale=1.0)  # masks in [0, 1]


def test_extremal_masks_seed_draws_the_perturbation_network(known):
    model, X, _ = known
    one = xaicore.explain(model, X, method="extremal-mask", seed=1, **FAST)
    two = xaicore.explain(model, X, method="extremal-mask", seed=2, **FAST)
    assert np.abs(one.attributions - two.attributions).max() > 1e-4


def test_dynamasks_gaussian_blur_keeps_a_kept_cell_and_averages_a_dropped_one():
    """The blur of tint's gaussian_blur: mask 1 leaves a cell as it is; mask 0 replaces it by the
    normalised Gaussian average (width sigma_max) of its feature over time, written out here."""
    from xai_captum.masks import blur

    x = torch.as_tensor(inputs(2, 12, 2))
    kept = blur(x, torch.ones_like(x), 1.5)
    assert_close(kept.numpy(), x.numpy())
    dropped = blur(x, torch.zeros_like(x), 1.5).numpy()
    t = np.arange(12)
    weights = np.exp(-(t[:, None] - t[None, :]) ** 2 / (2 * (1.5 * (1 + 1e-7)) ** 2))
    expected = np.einsum("ts,nsf->ntf", weights / (weights.sum(1, keepdims=True) + 1e-7), x.numpy())
    assert_close(dropped, expected, scale=float(np.abs(x.numpy()).max()))


@pytest.mark.parametrize("method, options, message", [
    ("extremal-mask", {"epochs": 0}, "extremal-mask: option 'epochs' must be in"),
    ("extremal-mask", {"lambda_1": -1.0}, "option 'lambda_1' must be in"),
    ("extremal-mask", {"keep_percent": [10]}, "extremal-mask has no option 'keep_percent'"),
    ("dynamask", {"keep_percent": [0, 10]}, "option 'keep_percent' must be in"),
    ("dynamask", {"keep_percent": 10}, "option 'keep_percent' must be a list of integers"),
    ("dynamask", {"perturbation": "median"}, "unknown perturbation 'median'"),
    ("dynamask", {"seed": 1}, "dynamask has no option 'seed'"),
    ("dynamask", {"lr": "fast"}, "option 'lr' must be a finite number"),
])
def test_bad_options_are_one_line_errors(method, options, message):
    model, X = loaded(TinyCNN, n_features=F, seq_len=T), inputs(2, T, F)
    with pytest.raises(XaiError, match=message) as caught:
        xaicore.explain(model, X, method=method, **options)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("method", ["extremal-mask", "dynamask"])
def test_images_are_refused_saying_the_masks_are_for_series(method):
    """Images are read as [sample, pixel, channel]: the pixels have no time axis to fade, blur or
    run a GRU along."""
    from xaicore.data.dataset import Dataset, DataSplit
    from xaicore.plugins import registry
    from xaicore.runs.training import build_model

    X, y = np.random.default_rng(0).random((8, 16, 1), dtype=np.float32), np.arange(8) % 2
    data = Dataset("tiny", DataSplit(X, y), DataSplit(X[:4], y[:4]), ["a", "b"], ["grey"],
                   {"height": 4, "width": 4})
    model = build_model(data, "image-cnn", registry.get_model("image-cnn"), {"channels": 2})
    with pytest.raises(XaiError, match=f"{method} cannot explain .*a series' time steps and "
                                       f"features; texts .* and images .* are not supported"):
        xaicore.explain(model, X[:2], method=method)


def test_progress_of_the_epochs_is_shown_on_stderr(capsys):
    model, X = loaded(TinyCNN, n_features=F, seq_len=T), inputs(2, T, F)
    xaicore.explain(model, X, method="dynamask", epochs=20)
    assert "dynamask (2 series)" in capsys.readouterr().err
    xaicore.explain(model, X, method="dynamask", epochs=20, progress=False)
    assert "dynamask" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def fcn_run(tmp_path_factory):
    """A small fcn trained briefly on GunPoint."""
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.training import train

    run = tmp_path_factory.mktemp("masks") / "gp"
    train(dataset_spec("GunPoint"), "fcn", run, epochs=3, seed=0, progress=False)
    return run


METHODS = ("extremal-mask", "dynamask")
OPTIONS = ("extremal-mask.epochs=20", "dynamask.epochs=20", "dynamask.keep_percent=[10,30]")


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_lists_explains_streams_evaluates_and_reports_the_masks(fcn_run, tmp_path):
    listing = xai("list")
    assert listing.exit_code == 0
    assert all(f"{m} " in listing.output for m in METHODS) and "Series only" in listing.output
    options = [arg for option in OPTIONS for arg in ("--option", option)]
    methods = [arg for method in METHODS for arg in ("--method", method)]
    result = xai("explain", "--run", fcn_run, *methods, *options, "--samples", "0:6", "--no-figures")
    assert result.exit_code == 0, result.output
    folder = fcn_run / "explanations"
    stored = {m: xaicore.load_explanation(folder / f"{result_name(m, 'predicted')}.npz")
              for m in METHODS}
    model = xaicore.load_run(fcn_run)
    X = stored["dynamask"].inputs
    direct = xaicore.explain(model, X, method="dynamask", epochs=20, keep_percent=[10, 30],
                             progress=False)
    assert_close(stored["dynamask"].attributions, direct.attributions)
    assert stored["dynamask"].options["keep_percent"] == [10, 30]
    for e in stored.values():
        assert e.attributions.shape == X.shape and 0 <= e.attributions.min() <= e.attributions.max() <= 1

    np.save(tmp_path / "big.npy", X)  # six rows: one streamed batch, the batch explained above
    streamed = xai("explain", "--run", fcn_run, "--input", tmp_path / "big.npy", *methods, *options,
                   "--out", tmp_path / "streamed")
    assert streamed.exit_code == 0, streamed.output
    for method in METHODS:
        e = xaicore.load_explanation(tmp_path / "streamed" / f"{result_name(method, 'predicted')}.zarr")
        assert_close(e.attributions[:], stored[method].attributions)

    assert_evaluated_and_reported(fcn_run, METHODS)  # at the default epochs


def test_the_ray_engine_learns_the_masks_of_the_local_engine(fcn_run, tmp_path):
    """The same batches (4 rows) explained by Ray actors and by the local engine: the same masks."""
    ray = pytest.importorskip("ray")
    X = xaicore.load_dataset({"name": "GunPoint"}).test.X[:8]
    np.save(tmp_path / "input.npy", X)
    ray.shutdown()  # a Ray an earlier in-process command left running has other resources
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
            result = xai("explain", "--run", fcn_run, "--input", tmp_path / "input.npy",
                         "--method", "extremal-mask", "--method", "dynamask",
                         "--option", "extremal-mask.epochs=20", "--option", "dynamask.epochs=20",
                         "--batch-size", "4", "--engine", engine, "--out", tmp_path / engine, *extra)
            assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    for method in METHODS:
        local = xaicore.load_explanation(tmp_path / "local" / f"{method}.zarr").load()
        remote = xaicore.load_explanation(tmp_path / "ray" / f"{method}.zarr").load()
        assert_close(remote.attributions, local.attributions)  # the same batches, other processes
