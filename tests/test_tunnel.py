"""``time-forward:<method>`` (tint's TimeForwardTunnel) against tint's definition written out
(``oracles.time_forward``: captum's methods on each prefix), on a small LSTM that predicts at every
step and on cnn-lstm-attention (from its fourth step); batches, variable lengths, wrapped
wrappers, refusals, and ``xai list --options`` of wrapped names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import xaicore
from oracles import time_forward
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.models.loaded import LoadedModel
from xaicore.plugins.registry import get_model


class StepLSTM(nn.Module):
    """A one-way LSTM whose head reads the last hidden state: a prediction after every step."""

    per_step = 1

    def __init__(self, n_features: int = 2, n_classes: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, 8, batch_first=True)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        return self.fc(h[:, -1])


def lstm_model():
    torch.manual_seed(0)
    return xaicore.wrap_model(StepLSTM(), n_classes=3, n_features=2, name="step-lstm")


def series(n: int = 5, steps: int = 7, features: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, steps, features)).astype(np.float32)


def hybrid_model():
    """cnn-lstm-attention (untrained, seeded): it declares per_step = 4."""
    torch.manual_seed(1)
    network = get_model("cnn-lstm-attention")(2, 12, 3, cnn_channels=4, lstm_hidden_size=4,
                                              lstm_num_layers=1, num_heads=2)
    return LoadedModel(network, name="cnn-lstm-attention", class_names=["a", "b", "c"],
                       feature_names=["x", "y"], seq_len=12)


def captum_method(name: str, module: nn.Module):
    """``attribute(prefix, target)`` of captum's own method (not xai's) for the oracle."""
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    if name == "saliency":
        return lambda x, c: Saliency(module).attribute(x, target=c, abs=False).detach()
    if name == "input-x-gradient":
        return lambda x, c: InputXGradient(module).attribute(x, target=c).detach()
    return lambda x, c: IntegratedGradients(module).attribute(
        x, baselines=torch.zeros_like(x), target=c, n_steps=16, method="gausslegendre").detach()


OPTIONS = {"saliency": {"abs": False}, "input-x-gradient": {},
           "integrated-gradients": {"baseline": "zero", "n_steps": 16,
                                    "integration_method": "gausslegendre"}}


@pytest.mark.parametrize("method", sorted(OPTIONS))
@pytest.mark.parametrize("tf_target", ["fixed", "step"])
def test_time_forward_is_tints_definition_on_a_step_lstm(method, tf_target):
    model = lstm_model()
    X = series()
    target = torch.tensor([0, 1, 2, 0, 1])
    e = xaicore.explain(model, X, method=f"time-forward:{method}", target=target.numpy(),
                        tf_target=tf_target, tf_prefixes=True, **OPTIONS[method])
    expected, prefixes, targets = time_forward(captum_method(method, model.module), model.module,
                                               torch.from_numpy(X),
                                               target if tf_target == "fixed" else None)
    scale = float(np.abs(prefixes).max())
    assert_close(e.attributions, expected, scale=scale)
    assert_close(e.extras["prefix_attributions"], prefixes, scale=scale)
    # the same argmax of the same logits picks each step's class
    np.testing.assert_array_equal(e.extras["step_target"], targets)
    np.testing.assert_array_equal(e.targets, target.numpy())
    if tf_target == "step":
        assert (targets != targets[:, -1:]).any(), "the classes should change along the prefixes"


def test_the_map_is_the_diagonal_of_the_prefix_maps_and_causal():
    """Each step's value is its own prefix's (the diagonal of prefix_attributions) and a prefix
    map is zero after the prefix: a prediction reads nothing later."""
    e = xaicore.explain(lstm_model(), series(), method="time-forward:saliency", tf_prefixes=True)
    prefixes = e.extras["prefix_attributions"]
    steps = prefixes.shape[1]
    # the map is copied out of the prefix maps, value for value
    np.testing.assert_array_equal(e.attributions, prefixes[:, np.arange(steps), np.arange(steps)])
    later = np.triu(np.ones((steps, steps), dtype=bool), 1)
    assert (prefixes[:, later] == 0).all()
    assert (np.abs(prefixes[:, ~later]) > 0).mean() > 0.9


def test_a_sample_alone_gives_what_it_gives_in_a_batch():
    model, X = lstm_model(), series(6)
    batch = xaicore.explain(model, X, method="time-forward:input-x-gradient")
    for i in (0, 4):
        alone = xaicore.explain(model, X[i:i + 1], method="time-forward:input-x-gradient")
        assert_close(alone.attributions[0], batch.attributions[i],
                     scale=float(np.abs(batch.attributions).max()))


def test_cnn_lstm_attention_predicts_from_its_fourth_step():
    model = hybrid_model()
    assert model.per_step == 4
    X = series(4, 12)
    e = xaicore.explain(model, X, method="time-forward:saliency", abs=False)
    expected, _, targets = time_forward(captum_method("saliency", model.module), model.module,
                                        torch.from_numpy(X), torch.from_numpy(e.targets), first=4)
    assert_close(e.attributions, expected, scale=float(np.abs(expected).max()))
    assert (e.attributions[:, :3] == 0).all() and e.extras["first_step"] == 3
    np.testing.assert_array_equal(e.extras["step_target"], targets)
    assert np.isnan(e.extras["step_probability"][:, :3]).all()
    assert ((e.extras["step_probability"][:, 3:] > 0) & (e.extras["step_probability"][:, 3:] < 1)).all()


def test_variable_length_series_are_explained_at_their_own_length():
    model, X = hybrid_model(), series(3, 12)
    padded = X.copy()
    padded[1, 8:] = np.nan
    e = xaicore.explain(model, padded, method="time-forward:saliency")
    alone = xaicore.explain(model, X[1:2, :8], method="time-forward:saliency")
    assert_close(e.attributions[1, :8], alone.attributions[0, :8],
                 scale=float(np.nanmax(np.abs(alone.attributions))))
    assert np.isnan(e.attributions[1, 8:]).all()
    full = xaicore.explain(model, X[:1], method="time-forward:saliency")
    assert_close(e.attributions[0], full.attributions[0], scale=float(np.abs(full.attributions).max()))


def test_it_wraps_a_wrapped_method_and_carries_the_standard_errors_of_shap():
    model, X = lstm_model(), series(2, 5)
    tunnel = xaicore.explain(model, X, method="time-forward:noise-tunnel:saliency", nt_samples=3,
                             target=np.array([0, 1]))
    for t in (0, 4):
        prefix = xaicore.explain(model, X[:, :t + 1], method="noise-tunnel:saliency", nt_samples=3,
                                 target=np.array([0, 1]))
        assert_close(tunnel.attributions[:, t], prefix.attributions[:, t],
                     scale=float(np.abs(prefix.attributions).max()))
    shap = xaicore.explain(model, X, method="time-forward:shap", background=series(8, 5, seed=1),
                           target=np.array([0, 1]))
    last = xaicore.explain(model, X, method="shap", background=series(8, 5, seed=1),
                           target=np.array([0, 1]))
    assert shap.extras["standard_error"].shape == X.shape
    # the last step's prefix is the whole series: the same computation
    np.testing.assert_array_equal(shap.extras["standard_error"][:, -1], last.extras["standard_error"][:, -1])
    np.testing.assert_array_equal(shap.attributions[:, -1], last.attributions[:, -1])


def test_models_that_predict_from_whole_series_only_are_refused_in_one_line():
    torch.manual_seed(0)
    fcn = xaicore.wrap_model(get_model("fcn")(2, 7, 3), n_classes=3, n_features=2, name="fcn")
    assert fcn.per_step is None
    refused = r"time-forward:saliency cannot explain model 'fcn': .*per_step"
    with pytest.raises(XaiError, match=refused) as err:
        xaicore.explain(fcn, series(), method="time-forward:saliency")
    assert "\n" not in str(err.value)
    late = StepLSTM()
    late.per_step = 4  # type: ignore[assignment]
    with pytest.raises(XaiError, match="predicts from 4 steps on; these series have 3"):
        xaicore.explain(xaicore.wrap_model(late, n_classes=3, n_features=2), series(2, 3),
                        method="time-forward:saliency")
    with pytest.raises(XaiError, match="use it as time-forward:<method>"):
        xaicore.explain(lstm_model(), series(), method="time-forward")
    with pytest.raises(XaiError, match="not the wrapper 'noise-tunnel' alone"):
        xaicore.explain(lstm_model(), series(), method="time-forward:noise-tunnel")
    with pytest.raises(XaiError, match="unknown tf_target 'last'; it must be one of fixed, step"):
        xaicore.explain(lstm_model(), series(), method="time-forward:saliency", tf_target="last")
    network = StepLSTM()
    network.per_step = 0  # type: ignore[assignment]
    with pytest.raises(XaiError, match="per_step must be the fewest time steps"):
        xaicore.wrap_model(network, n_classes=3, n_features=2)


@pytest.mark.parametrize("name, own, inner", [
    ("noise-tunnel:saliency", "nt_samples", "abs"),
    ("time-forward:integrated-gradients", "tf_target", "n_steps"),
    ("time-forward:noise-tunnel:saliency", "tf_prefixes", "nt_type"),
])
def test_xai_list_options_shows_a_wrapped_methods_options_and_the_wrappers(name, own, inner):
    shown = CliRunner().invoke(cli, ["list", "--options", name])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"explainer {name}:")
    assert f"  {own} (" in shown.output and f"  {inner} (" in shown.output
    listed = CliRunner().invoke(cli, ["list", "--options", name, "--json"])
    assert listed.exit_code == 0, listed.output
    names = {option["name"] for option in json.loads(listed.output)[0]["options"]}
    assert {own, inner} <= names


def test_xai_list_options_of_a_wrapped_unknown_method_is_one_line():
    shown = CliRunner().invoke(cli, ["list", "--options", "time-forward:salincy"])
    assert shown.exit_code != 0
    assert "salincy" in shown.output and len(shown.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory):
    """A small cnn-lstm-attention trained briefly on GunPoint (it predicts from 4 steps on)."""
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.training import train

    run = tmp_path_factory.mktemp("tunnel") / "gp"
    train(dataset_spec("GunPoint"), "cnn-lstm-attention", run, epochs=2, seed=0, progress=False,
          params={"cnn_channels": 4, "lstm_hidden_size": 4, "lstm_num_layers": 1, "num_heads": 2})
    return run


def test_cli_explains_streams_evaluates_and_reports_time_forward(hybrid_run, tmp_path):
    from conftest import assert_evaluated_and_reported
    from xaicore.explaining.methods import result_name

    method = "time-forward:input-x-gradient"
    result = CliRunner().invoke(cli, ["explain", "--run", str(hybrid_run), "--method", method,
                                      "--samples", "0:3", "--no-figures"])
    assert result.exit_code == 0, result.output
    name = result_name(method, "predicted")
    stored = xaicore.load_explanation(hybrid_run / "explanations" / f"{name}.npz")
    model = xaicore.load_run(hybrid_run)
    direct = xaicore.explain(model, stored.inputs, method=method)
    scale = float(np.abs(direct.attributions).max())
    assert_close(stored.attributions, direct.attributions, scale=scale)
    np.save(tmp_path / "three.npy", stored.inputs)
    streamed = CliRunner().invoke(cli, ["explain", "--run", str(hybrid_run), "--input",
                                        str(tmp_path / "three.npy"), "--method", method,
                                        "--out", str(tmp_path / "streamed")])
    assert streamed.exit_code == 0, streamed.output
    store = xaicore.load_explanation(tmp_path / "streamed" / f"{name}.zarr")
    assert_close(store.attributions[:], direct.attributions, scale=scale)
    assert_evaluated_and_reported(hybrid_run, (method,), "--workers", "1")
    listing = CliRunner().invoke(cli, ["list", "--json"])
    described = {row["name"]: row["description"] for row in json.loads(listing.output)["explainers"]}
    assert "predict at every step" in described["time-forward"]


def test_the_ray_engine_gives_what_the_local_engine_gives(hybrid_run, tmp_path):
    ray = pytest.importorskip("ray")
    from xaicore.data.loading import load_dataset
    from xaicore.explaining.methods import result_name

    np.save(tmp_path / "input.npy", load_dataset({"name": "GunPoint"}).test.X[:5])  # 3 batches
    method = "time-forward:saliency"
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
            result = CliRunner().invoke(cli, ["explain", "--run", str(hybrid_run), "--input",
                                              str(tmp_path / "input.npy"), "--method", method,
                                              "--batch-size", "2", "--engine", engine, "--out",
                                              str(tmp_path / engine), *extra])
            assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    name = f"{result_name(method, 'predicted')}.zarr"
    a = xaicore.load_explanation(tmp_path / "local" / name).load()
    b = xaicore.load_explanation(tmp_path / "ray" / name).load()
    assert_close(b.attributions, a.attributions, rtol=1e-4)  # other processes and batch splits
    np.testing.assert_array_equal(b.extras["step_target"], a.extras["step_target"])
