"""Grad-CAM, Grad-CAM++ and CAM: agreement with captum, per-sample targets, options, errors."""

import re

import numpy as np
import pytest
import torch

from nets_explainers import TinyCNN, TinyMLP, inputs, loaded, small_hybrid
from tolerances import assert_close, assert_identical
from xaicore.errors import XaiError
from xaicore.explaining.api import explain
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

T = 40


@pytest.fixture(scope="module")
def hybrid() -> LoadedModel:
    return small_hybrid(T, mean=[0.1, -0.2], std=[1.0, 2.0])


def captum_gradcam(model: LoadedModel, layer: str, X: np.ndarray, targets, relu: bool) -> np.ndarray:
    from captum.attr import LayerAttribution, LayerGradCam

    attr = LayerGradCam(model.module, model.layer(layer)).attribute(
        torch.from_numpy(X), target=torch.as_tensor(targets), relu_attributions=relu)
    return LayerAttribution.interpolate(attr, (X.shape[1],), "linear")[:, 0].detach().numpy()


@pytest.mark.parametrize("relu", [True, False])
def test_gradcam_equals_captum_layer_gradcam_plus_interpolation(hybrid, relu):
    X, targets = inputs(5, T), np.array([0, 1, 2, 1, 0])
    e = explain(hybrid, X, method="gradcam", target=targets, relu=relu)
    assert e.extras["layer"] == "cnn.4"  # the hybrid's declared layer
    reference = captum_gradcam(hybrid, "cnn.4", X, targets, relu)
    assert np.abs(reference).max() > 0
    assert_close(e.attributions[:, :, 0], reference)
    assert_identical(e.attributions[:, :, 0], e.attributions[:, :, 1])  # one map, copied


def test_layer_option_and_per_sample_targets_on_a_cnn():
    model = loaded(TinyCNN, n_features=2, seq_len=T)
    X = inputs(4, T)
    for target in ([0, 1, 2, 0], 2):
        targets = np.broadcast_to(target, (4,))
        e = explain(model, X, method="gradcam", layer="conv1", target=target, relu=False)
        assert_close(e.attributions[:, :, 0],
                     captum_gradcam(model, "conv1", X, targets, relu=False))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "cam"])
def test_batched_result_equals_per_sample_results(hybrid, method):
    X = inputs(4, T)
    batched = explain(hybrid, X, method=method, target=1).attributions
    single = np.concatenate([explain(hybrid, X[i:i + 1], method=method, target=1).attributions
                             for i in range(len(X))])
    assert_close(batched, single)


def test_gradcam_plus_plus_weights_positive_gradients_only():
    """With ReLU activations >= 0, every Grad-CAM++ channel weight is >= 0 (alpha * relu(grad))."""
    model = loaded(TinyCNN, n_features=2, seq_len=T)
    e = explain(model, inputs(4, T), method="gradcam++", layer="act2", target=[0, 1, 2, 1])
    assert (e.extras["channel_weights"] >= 0).all() and (e.attributions >= 0).all()
    assert e.extras["channel_weights"].max() > 0


@pytest.mark.parametrize("reduction", ["mean", "median", "max", "mean_max"])
def test_cam_reduces_the_layer_activations_over_channels(hybrid, reduction):
    X = inputs(3, T)
    captured = []
    handle = hybrid.layer("cnn.4").register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        hybrid.module(torch.from_numpy(X))
    handle.remove()
    acts = captured[0]
    expected = {"mean": acts.mean(1), "median": acts.median(1).values, "max": acts.amax(1),
                "mean_max": (acts.mean(1) + acts.amax(1)) / 2}[reduction]
    e = explain(hybrid, X, method="cam", reduction=reduction, relu=False)
    assert_close(e.extras["layer_heatmap"], expected)
    upsampled = torch.nn.functional.interpolate(expected[:, None], size=T, mode="linear")[:, 0]
    assert_close(e.attributions[:, :, 1], upsampled)


def test_normalisation_options(hybrid):
    X = inputs(4, T)
    peak = explain(hybrid, X, method="gradcam", normalize="max").attributions
    assert_close(np.abs(peak).max(axis=(1, 2)), 1.0)
    spread = explain(hybrid, X, method="gradcam", relu=False, normalize="minmax").attributions
    assert_close(spread.min(axis=(1, 2)), 0.0, scale=1.0)  # normalised maps: of scale 1
    assert_close(spread.max(axis=(1, 2)), 1.0)


def test_clear_errors(hybrid):
    X = inputs(2, T)
    with pytest.raises(XaiError, match="gradcam cannot explain model 'TinyMLP'.*no Conv1d"):
        explain(loaded(TinyMLP, n_features=2, seq_len=T), X, method="gradcam")
    with pytest.raises(XaiError, match="no layer 'cnn.9'.*Conv1d layers are: cnn.0, cnn.4"):
        explain(hybrid, X, method="gradcam", layer="cnn.9")
    with pytest.raises(XaiError, match="layer 'fc'.*not \\[batch, channel, time\\]"):
        explain(hybrid, X, method="gradcam", layer="fc")
    with pytest.raises(XaiError, match="normalize must be one of none, max, minmax"):
        explain(hybrid, X, method="gradcam", normalize="z")
    with pytest.raises(XaiError, match="reduction must be one of mean, median, max, mean_max"):
        explain(hybrid, X, method="cam", reduction="sum")
    with pytest.raises(XaiError, match="gradcam has no option 'reduction'"):
        explain(hybrid, X, method="gradcam", reduction="mean")
    with pytest.raises(XaiError, match="class index 3 is out of range"):
        explain(hybrid, X, method="gradcam", target=3)


def test_builtin_models_without_a_declared_layer_are_refused():
    net = registry.get_model("transformer")(2, T, 3)
    transformer = LoadedModel(net, name="transformer", class_names=["a", "b", "c"],
                              feature_names=["x", "y"], seq_len=T)
    for method in ("gradcam", "gradcam++", "cam"):
        with pytest.raises(XaiError, match=f"{re.escape(method)} cannot explain model "
                                           "'transformer'.*declares no Grad-CAM layer"):
            explain(transformer, inputs(2, T), method=method)


def test_a_layer_that_leaves_one_time_step_is_named_not_returned_as_a_constant():
    """A layer with one time step left (16-value CSV rows read as [n, 1, 16] with a
    convolution over the 16 values, or a kernel as long as the series) would give one constant
    per sample: Grad-CAM says so and suggests the layout."""
    import xaicore

    class Collapsing(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 4, 16)  # 16 steps in, 1 step out
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):  # [batch, time, feature]
            return self.fc(torch.relu(self.conv(x.transpose(1, 2))).mean(2))

    model = xaicore.wrap_model(Collapsing(), n_classes=2, n_features=1, gradcam_layer="conv")
    X = np.random.default_rng(0).normal(size=(3, 16, 1)).astype(np.float32)
    for method in ("gradcam", "gradcam++", "cam"):
        with pytest.raises(XaiError, match=r"one time step for these 16-step series.*\[n, 16, 1\]"):
            xaicore.explain(model, X, method=method)
    assert xaicore.explain(model, X, method="saliency").attributions.shape == (3, 16, 1)
