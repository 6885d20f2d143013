"""Images as the third kind of input: the kind and its checks, scikit-learn's digits, a small CNN
trained through the CLI, Grad-CAM on its last Conv2d checked against captum, and integrated
gradients at the pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from image_runs import train_digits
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.plugins import registry


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """image-cnn trained for a few epochs on the digits at 16x16 (scale 2), small and quick."""
    return train_digits(tmp_path_factory)


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits", "scale": 2})


def test_images_are_a_registered_kind_with_their_dataset_and_model():
    kind = registry.get_modality("images")
    assert kind.axes == ("sample", "pixel", "channel") and not kind.masks_padding
    assert kind.baselines == ("zero", "mean", "blurred") and kind.substrates == ("mean", "blurred")
    assert "digits" in registry.names("datasets") and "image-cnn" in registry.names("models")


def test_digits_are_upsampled_by_repetition_and_split_per_class():
    data = load_dataset("digits")
    assert data.info == {"height": 32, "width": 32} and data.feature_names == ["grey"]
    assert (len(data.train), len(data.test)) == (1347, 450) and data.train.X.shape[1:] == (1024, 1)
    image = data.train.X[0, :, 0].reshape(32, 32)
    assert (image == image[::4, ::4].repeat(4, 0).repeat(4, 1)).all()  # nearest x4: 4x4 blocks
    assert 0 <= data.train.X.min() and data.train.X.max() <= 1
    shares = [np.bincount(split.y, minlength=10) / len(split) for split in (data.train, data.test)]
    assert np.abs(shares[0] - shares[1]).max() < 0.01  # stratified
    again = load_dataset({"name": "digits", "seed": 0})
    assert (again.test.y == data.test.y).all()
    assert not (load_dataset({"name": "digits", "seed": 1}).test.y == data.test.y).all()


def test_a_cnn_trained_through_the_cli_reloads_with_its_size_and_statistics(image_run, digits):
    metrics = json.loads((image_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.6  # 4 epochs of a tiny CNN; the default run reaches 0.98
    model = xaicore.load_run(image_run)
    assert model.modality == "images" and model.image_size == (16, 16)
    assert_close(model.normalisation.mean.numpy(), digits.train.X.mean(axis=(0, 1)))
    probs = model.predict_proba(digits.test.X[:64])
    assert (probs.argmax(1) == digits.test.y[:64]).mean() >= 0.6


def test_every_layout_of_the_same_images_gives_the_same_array(image_run, digits):
    model = xaicore.load_run(image_run)
    flat = digits.test.X[:3]
    grid = flat.reshape(3, 16, 16)
    for layout in (grid[:, None], grid[..., None], grid, torch.from_numpy(grid[:, None])):
        assert (model.check_inputs(layout) == flat).all()


@pytest.mark.parametrize("inputs, message", [
    (np.zeros((2, 1, 8, 8)), r"must be 1-channel 16x16 images \[n, 1, 16, 16\].*got shape \(2, 1, 8, 8\)"),
    (np.zeros((2, 3, 16, 16)), r"got shape \(2, 3, 16, 16\)"),
    (np.zeros((2, 16, 16, 3)), r"got shape \(2, 16, 16, 3\)"),
    (np.zeros((0, 1, 16, 16)), "hold no images"),
    (np.full((2, 16, 16), np.nan), "image 0 has a NaN or infinite pixel"),
    ("a picture", "must be"),
])
def test_bad_image_inputs_are_one_line_errors(image_run, inputs, message):
    model = xaicore.load_run(image_run)
    with pytest.raises(XaiError, match=message) as error:
        model.check_inputs(inputs)
    assert "\n" not in str(error.value)


def test_gradcam_equals_captum_layer_gradcam_upsampled_bilinearly(image_run, digits):
    """The same Conv2d layer, ReLU on the map and bilinear upsampling: captum's LayerGradCam and
    LayerAttribution.interpolate give the same attributions, broadcast over the channel."""
    from captum.attr import LayerAttribution, LayerGradCam

    model = xaicore.load_run(image_run)
    X = digits.test.X[:12]
    ours = xaicore.explain(model, X, method="gradcam")
    assert ours.attributions.shape == (12, 256, 1) and ours.extras["layer"] == "conv3"

    def on_images(images):
        return model.module(images.permute(0, 2, 3, 1).reshape(len(images), 256, 1))

    images = torch.from_numpy(X).reshape(12, 16, 16, 1).permute(0, 3, 1, 2)
    maps = LayerGradCam(on_images, model.layer("conv3")).attribute(
        images, target=torch.as_tensor(ours.targets), relu_attributions=True)
    theirs = LayerAttribution.interpolate(maps, (16, 16), "bilinear").reshape(12, 256)
    assert_close(ours.attributions[..., 0], theirs)
    assert ours.extras["layer_heatmap"].shape == (12, 4, 4)


def test_gradcam_refuses_a_layer_that_is_no_image_map(image_run, digits):
    model = xaicore.load_run(image_run)
    with pytest.raises(XaiError, match=r"outputs \(3, 10\), not \[batch, channel, height, width\]"):
        xaicore.explain(model, digits.test.X[:3], method="gradcam", layer="head")


@pytest.mark.parametrize("baseline", ["zero", "blurred"])
def test_integrated_gradients_at_the_pixels_is_complete(image_run, digits, baseline):
    model = xaicore.load_run(image_run)
    X = digits.test.X[:6]
    e = xaicore.explain(model, X, method="integrated-gradients", baseline=baseline)
    assert e.attributions.shape == X.shape
    kind = registry.get_modality("images")
    reference = kind.baseline(baseline, model, torch.from_numpy(X)).numpy()
    logits, base = model.logits(X), model.logits(reference)
    rows = np.arange(len(X))
    difference = logits[rows, e.targets] - base[rows, e.targets]
    assert (np.abs(e.attributions.sum((1, 2)) - difference) <= 0.01 * np.abs(difference) + 1e-5).all()


def test_the_blurred_baseline_and_substrates_keep_the_images_shape(image_run, digits):
    model = xaicore.load_run(image_run)
    kind = registry.get_modality("images")
    flat = np.full((2, 256, 1), 0.5, np.float32)
    assert_close(kind.baseline("blurred", model, torch.from_numpy(flat)).numpy(), flat)  # constant
    blurred = kind.substrate("blurred", model, digits.test.X[:2])
    assert blurred.shape == (2, 256, 1) and blurred.std() < digits.test.X[:2].std()
    mean = kind.substrate("mean", model, digits.test.X[:2])
    assert_close(mean, np.broadcast_to(model.normalisation.mean.numpy(), (2, 256, 1)))
    with pytest.raises(XaiError, match="substrate must be one of mean, blurred for images"):
        kind.substrate("smooth", model, digits.test.X[:2])


def test_deeplift_reports_its_completeness_gap_on_the_image_cnn(image_run, digits):
    """captum's max-pool rule does not keep DeepLIFT's summation to delta (the completeness gap
    is not 0 on this CNN); the convergence_delta extra is that gap, sum - (f(x) - f(black))."""
    model = xaicore.load_run(image_run)
    X = digits.test.X[:4]
    e = xaicore.explain(model, X, method="deeplift", baseline="zero")
    rows = np.arange(len(X))
    difference = model.logits(X)[rows, e.targets] - model.logits(np.zeros_like(X))[rows, e.targets]
    gap = e.attributions.astype(np.float64).sum((1, 2)) - difference
    assert_close(e.extras["convergence_delta"], gap, scale=float(np.abs(difference).max()))


def test_deeplift_refuses_a_network_that_reuses_a_nonlinearity(image_run):
    """A ReLU module called twice in one forward (captum's DeepLift would fail in its hooks) is a
    one-line refusal before anything runs, and --method all skips deeplift saying why."""
    model = xaicore.load_run(image_run)
    network = model.network
    network.relu2 = network.relu1  # the same module at both uses
    with pytest.raises(XaiError, match=r"calls relu1 more than once in a forward pass") as error:
        xaicore.explain(model, np.zeros((2, 256, 1), np.float32), method="deeplift")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("channels", [1, 3])
def test_networks_get_images_in_nchw_memory_layout(channels):
    """The permuted [B, H*W, C] pixels are copied to [B, C, H, W] strides, also for one channel
    (where .contiguous() keeps the channels-last strides: convolutions then take oneDNN's
    channels-last kernels, one of whose CPU backward passes crashes on a strided 1x1 Conv2d)."""
    from xai_image.modules import ImageModule

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x.stride())
            return x.flatten(1)[:, :2]

    module = ImageModule(torch.nn.Identity(), Probe(), 8, 6)
    module(torch.rand(2, 48, channels))
    assert seen == [(channels * 48, 48, 6, 1)]


def test_temporal_saliency_rescaling_refuses_images(image_run, digits):
    model = xaicore.load_run(image_run)
    with pytest.raises(XaiError, match="input has two spatial axes, not a time axis") as error:
        xaicore.explain(model, digits.test.X[:2], method="tsr:saliency")
    assert "\n" not in str(error.value)


def test_a_baseline_image_is_taken_in_the_layouts_inputs_are(image_run, digits):
    """Integrated gradients from the user's own baseline image: [C, H, W] or [H, W, C] shared,
    [n, C, H, W] per image, the same as the flattened [H*W, C]; complete against it."""
    model = xaicore.load_run(image_run)
    X = digits.test.X[:3]
    flat = np.full((256, 1), 0.25, np.float32)
    flat[:128] = 0.75
    reference = xaicore.explain(model, X, method="integrated-gradients", baseline=flat).attributions
    image = flat.reshape(16, 16, 1)
    for baseline in (image.transpose(2, 0, 1), image, np.repeat(image.transpose(2, 0, 1)[None], 3, 0)):
        e = xaicore.explain(model, X, method="integrated-gradients", baseline=baseline)
        assert_close(e.attributions, reference)
    rows = np.arange(3)
    difference = model.logits(X)[rows, e.targets] - model.logits(np.repeat(flat[None], 3, 0))[rows, e.targets]
    assert (np.abs(e.attributions.sum((1, 2)) - difference) <= 0.01 * np.abs(difference) + 1e-5).all()
    with pytest.raises(XaiError, match=r"must be \[time, feature\]"):
        xaicore.explain(model, X, method="integrated-gradients", baseline=np.zeros((1, 8, 8)))


def test_a_network_in_the_notebook_is_wrapped_as_an_image_model(image_run, digits):
    """wrap_model(kind="images") adopts a [B, C, H, W] network as xai import does: the same
    logits, Grad-CAM on its last Conv2d equal to captum's LayerGradCam on the same layer."""
    from captum.attr import LayerAttribution, LayerGradCam

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(16, 10)).eval()
    model = xaicore.wrap_model(net, kind="images", facts={"height": 16, "width": 16},
                               n_classes=10, n_features=1)
    X = digits.test.X[:4]
    images = torch.from_numpy(X).reshape(4, 16, 16, 1).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        assert_close(model.logits(X), net(images).numpy())
    e = xaicore.explain(model, X, method="gradcam")
    assert e.extras["layer"] == "0" and e.modality == "images"
    maps = LayerGradCam(net, net[0]).attribute(images, target=torch.as_tensor(e.targets),
                                               relu_attributions=True)
    assert_close(e.attributions[..., 0],
                 LayerAttribution.interpolate(maps, (16, 16), "bilinear").reshape(4, 256).detach())
    with pytest.raises(XaiError, match="layout must be one of NCHW"):
        xaicore.wrap_model(net, kind="images", facts={"height": 16, "width": 16}, n_classes=10,
                           n_features=1, layout="NTF")
