"""Image models: the Vision Transformer and its attention (per layer and head, rollout) checked
against weights recomputed from hooked projections and a numpy rollout; Grad-CAM's refusal of a
1x1 map, Grad-CAM++ and CAM against their formulas, Grad-CAM on the ResNet-18 against captum;
users' own image networks through ``xai import``."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from image_runs import train_digits
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.data.dataset import Dataset, DataSplit
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.plugins import registry
from xaicore.runs.training import build_model

TINY_VIT = {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32, "patch_size": 4}


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits", "scale": 2})


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """image-vit, two layers of two heads over 4x4 patches of the 16x16 digits, four epochs."""
    params = [a for k, v in TINY_VIT.items() for a in ("--param", f"{k}={v}")]
    return train_digits(tmp_path_factory, "image-vit", "--lr", "0.005", *params, epochs=4)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    return train_digits(tmp_path_factory, epochs=2)


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    return train_digits(tmp_path_factory, "image-resnet18", epochs=1)


def bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[batch, h, w]`` to ``[batch, H, W]`` by bilinear interpolation at half-pixel centres
    (source coordinate ``(i + 0.5) * h / H - 0.5``, clamped at the edges)."""
    def axis(size, out):
        src = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, None)
        low = np.minimum(np.floor(src).astype(int), size - 1)
        return low, np.minimum(low + 1, size - 1), src - low

    r0, r1, fr = axis(maps.shape[1], height)
    c0, c1, fc = axis(maps.shape[2], width)
    rows = maps[:, r0] * (1 - fr)[None, :, None] + maps[:, r1] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc


def hooked(model, layer, X, targets):
    """The layer's output and the gradient of each sample's target logit with respect to it, by
    a forward hook and autograd, float64."""
    captured = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model.module(torch.from_numpy(X))
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits[torch.arange(len(X)), torch.as_tensor(targets)].sum(),
                                   captured[0])
    return captured[0].detach().double().numpy(), grads.double().numpy()


# --- the Vision Transformer and attention on images -------------------------------------------

def recomputed_attention(model, X):
    """Every layer's ``[batch, heads, query, key]`` softmax(q k^T / sqrt(d)) from its qkv
    projection's output, captured by forward hooks on the same modules."""
    outputs = []
    hooks = [layer.attention.qkv.register_forward_hook(lambda _m, _i, out: outputs.append(out))
             for layer in model.network.layers]
    try:
        with torch.no_grad():
            model.module(torch.from_numpy(X))
    finally:
        for hook in hooks:
            hook.remove()
    heads = model.network.params["heads"]
    weights = []
    for qkv in outputs:
        B, T, D3 = qkv.shape
        q, k, _ = qkv.double().reshape(B, T, 3, heads, D3 // 3 // heads).permute(2, 0, 3, 1, 4)
        weights.append(torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(D3 // 3 // heads), -1).numpy())
    return weights


def numpy_rollout(layers):
    """Abnar & Zuidema 2020: per layer the heads' mean plus the identity, rows renormalised,
    multiplied from the first layer to the last."""
    result = None
    for weights in layers:
        mixed = weights.mean(1) + np.eye(weights.shape[-1])
        mixed = mixed / mixed.sum(-1, keepdims=True)
        result = mixed if result is None else mixed @ result
    return result


def patches_to_pixels(values, grid, patch):
    """``[batch, patch]`` row-major to ``[batch, H*W]``: each pixel its patch's value."""
    return np.stack([np.kron(v.reshape(grid), np.ones((patch, patch))).ravel() for v in values])


def test_the_vit_trains_through_the_cli_and_reloads_with_its_attention(vit_run, digits):
    metrics = json.loads((vit_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.3  # four epochs of a tiny ViT; chance is 0.1
    model = xaicore.load_run(vit_run)
    assert model.modality == "images" and model.network.token_grid == (4, 4)
    model.logits(digits.test.X[:3])
    weights = model.attention_weights()
    assert [tuple(w.shape) for w in weights] == [(3, 2, 17, 17)] * 2  # 1 CLS + 16 patches
    assert_close(torch.stack(weights).sum(-1).numpy(), np.ones((2, 3, 2, 17)))


def test_cls_attention_per_layer_and_head_equals_the_hooked_weights(vit_run, digits):
    model = xaicore.load_run(vit_run)
    X = digits.test.X[:5]
    e = xaicore.explain(model, X, method="attention")
    recomputed = recomputed_attention(model, X)
    assert e.extras["cls_attention"].shape == (5, 2, 2, 16) and e.extras["token_grid"] == [4, 4]
    for i, weights in enumerate(recomputed):
        assert_close(e.extras[f"attention_layer{i}"], weights)
        assert_close(e.extras["cls_attention"][:, i], weights[:, :, 0, 1:])
    assert e.extras["aggregation"] == "rollout" and e.extras["class_independent"]


def test_attention_rollout_at_the_pixels_equals_the_formula(vit_run, digits):
    model = xaicore.load_run(vit_run)
    X = digits.test.X[:5]
    e = xaicore.explain(model, X, method="attention")
    rollout = numpy_rollout(recomputed_attention(model, X))
    assert_close(e.extras["rollout"], rollout)
    assert_close(e.attributions[..., 0], patches_to_pixels(rollout[:, 0, 1:], (4, 4), 4))
    assert e.attributions.shape == X.shape


@pytest.mark.parametrize("layer, head", [(0, None), (-1, None), (1, 0), (0, 1)])
def test_one_layer_or_one_head_of_the_cls_attention_at_the_pixels(vit_run, digits, layer, head):
    """layer= (and head=) explain by that layer's head mean (or that head) of the CLS row,
    recomputed from the hooked query-key products."""
    model = xaicore.load_run(vit_run)
    X = digits.test.X[:4]
    e = xaicore.explain(model, X, method="attention", layer=layer, head=head)
    weights = recomputed_attention(model, X)[layer]
    expected = weights.mean(1) if head is None else weights[:, head]
    assert_close(e.attributions[..., 0], patches_to_pixels(expected[:, 0, 1:], (4, 4), 4))
    index = layer % len(e.extras["cls_attention"][0])
    assert e.extras["aggregation"] == (f"head mean of layer {index}" if head is None
                                       else f"head {head} of layer {index}")


@pytest.mark.parametrize("options, message", [
    ({"layer": 2}, r"layer 2 does not exist; the model has 2 attention layers \(0 to 1"),
    ({"layer": 0, "head": 2}, r"head 2 does not exist; layer 0 has 2 heads \(0 to 1\)"),
    ({"head": 0}, "head picks a head of one layer; give layer too"),
])
def test_a_layer_or_head_the_model_lacks_is_refused(vit_run, digits, options, message):
    model = xaicore.load_run(vit_run)
    with pytest.raises(XaiError, match=message) as error:
        xaicore.explain(model, digits.test.X[:2], method="attention", **options)
    assert "\n" not in str(error.value)


def test_one_attention_layer_is_its_head_mean_and_one_patch_is_refused(digits):
    cls = registry.get_model("image-vit")
    model = build_model(digits, "image-vit", cls, {**TINY_VIT, "depth": 1, "patch_size": 8})
    X = digits.test.X[:3]
    e = xaicore.explain(model, X, method="attention")
    (weights,) = recomputed_attention(model, X)
    assert e.extras["aggregation"] == "head mean of layer 0"
    assert_close(e.attributions[..., 0], patches_to_pixels(weights.mean(1)[:, 0, 1:], (2, 2), 8))
    whole = build_model(digits, "image-vit", cls, {**TINY_VIT, "patch_size": 16})
    with pytest.raises(XaiError, match="attends over one patch of the image") as error:
        xaicore.explain(whole, X, method="attention")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("params, message", [
    ({"patch_size": 5}, r"patch_size 5 must divide the images' height and width \(16x16"),
    ({"dim": 10, "heads": 4}, r"heads \(4\) must divide dim \(10\)"),
])
def test_vits_that_cannot_be_built_are_one_line_errors(digits, params, message):
    with pytest.raises(XaiError, match=message):
        build_model(digits, "image-vit", registry.get_model("image-vit"), params)


# --- Grad-CAM, Grad-CAM++ and CAM on images ---------------------------------------------------

def test_a_1x1_gradcam_map_is_refused_naming_the_earlier_layers(tmp_path):
    """The ResNet-18 halves the 8x8 digits three times: its last Conv2d map is 1x1."""
    run = tmp_path / "run"
    result = xai("train", "--dataset", "digits", "--data", "scale=1", "--model", "image-resnet18",
                 "--param", "channels=2", "--epochs", "1", "--out", run, "--quiet")
    assert result.exit_code == 0, result.output
    result = xai("explain", "--run", run, "--method", "gradcam", "--samples", "0:4")
    assert result.exit_code == 1
    assert "layer 'layer4.1.conv2' gives a 1x1 map for these 8x8 images" in result.output
    assert "one constant over the image; pass layer= an earlier Conv2d layer (conv1, " in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (run / "explanations").exists() or not any((run / "explanations").iterdir())
    model = xaicore.load_run(run)
    earlier = xaicore.explain(model, load_dataset({"name": "digits", "scale": 1}).test.X[:2],
                              method="gradcam", layer="layer3.1.conv2")
    assert earlier.extras["layer_heatmap"].shape == (2, 2, 2)


def test_an_image_cnn_on_4x4_images_has_a_1x1_map():
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 16, 1), dtype=np.float32), np.arange(40) % 2
    data = Dataset("tiny", DataSplit(X, y), DataSplit(X[:8], y[:8]), ["a", "b"], ["grey"],
                   {"height": 4, "width": 4})
    model = build_model(data, "image-cnn", registry.get_model("image-cnn"), {"channels": 2})
    with pytest.raises(XaiError, match=r"gradcam\+\+: layer 'conv3' gives a 1x1 map for these 4x4 "
                                       r"images.*layer= an earlier Conv2d layer \(conv1, conv2\)"):
        xaicore.explain(model, X[:2], method="gradcam++")


def test_gradcam_plus_plus_equals_the_formula_of_chattopadhay(cnn_run, digits):
    """alpha = g^2 / (2 g^2 + sum_ij(A) g^3) (0 where g = 0), w_k = sum_ij alpha relu(g),
    cam = relu(sum_k w_k A_k), upsampled bilinearly: float64 numpy on the hooked layer."""
    model = xaicore.load_run(cnn_run)
    X = digits.test.X[:8]
    ours = xaicore.explain(model, X, method="gradcam++")
    A, g = hooked(model, model.layer("conv3"), X, ours.targets)
    g2, g3 = g ** 2, g ** 3
    denominator = 2 * g2 + A.sum((2, 3), keepdims=True) * g3
    alpha = np.where(g != 0, g2 / np.where(denominator != 0, denominator, 1), 0)
    weights = (alpha * np.maximum(g, 0)).sum((2, 3))
    cam = np.maximum((weights[:, :, None, None] * A).sum(1), 0)
    assert_close(ours.extras["channel_weights"], weights)
    assert_close(ours.attributions[..., 0], bilinear(cam, 16, 16).reshape(8, 256))


def test_cam_is_the_channel_reduction_of_the_layer_upsampled(cnn_run, digits):
    model = xaicore.load_run(cnn_run)
    X = digits.test.X[:6]
    A, _ = hooked(model, model.layer("conv3"), X, np.zeros(6, int))
    for reduction, reduce in (("mean", A.mean(1)), ("max", A.max(1)),
                              ("mean_max", (A.mean(1) + A.max(1)) / 2)):
        ours = xaicore.explain(model, X, method="cam", reduction=reduction)
        assert_close(ours.attributions[..., 0], bilinear(np.maximum(reduce, 0), 16, 16).reshape(6, 256),
                     err_msg=reduction)


def test_gradcam_before_global_average_pooling_is_the_class_activation_map(resnet_run, digits):
    """Zhou et al. 2016: at the map global average pooling reads into the linear head, CAM_c =
    sum_k W[c, k] A_k, and Grad-CAM's channel weights are W[c, k] / (h w)."""
    model = xaicore.load_run(resnet_run)
    X = digits.test.X[:6]
    ours = xaicore.explain(model, X, method="gradcam", layer="layer4.1")
    A, _ = hooked(model, model.layer("layer4.1"), X, ours.targets)
    W = model.network.fc.weight.detach().double().numpy()[ours.targets]
    h, w = A.shape[2:]
    assert_close(ours.extras["channel_weights"], W / (h * w))
    assert_close(ours.extras["layer_heatmap"] * h * w, np.einsum("bk,bkij->bij", W, A))


def test_gradcam_on_the_resnet18_equals_captum_upsampled_bilinearly(resnet_run, digits):
    from captum.attr import LayerAttribution, LayerGradCam

    model = xaicore.load_run(resnet_run)
    X = digits.test.X[:8]
    ours = xaicore.explain(model, X, method="gradcam")
    assert ours.extras["layer"] == "layer4.1.conv2" and ours.extras["layer_heatmap"].shape == (8, 2, 2)

    def on_images(images):
        return model.module(images.permute(0, 2, 3, 1).reshape(len(images), 256, 1))

    images = torch.from_numpy(X).reshape(8, 16, 16, 1).permute(0, 3, 1, 2)
    maps = LayerGradCam(on_images, model.layer("layer4.1.conv2")).attribute(
        images, target=torch.as_tensor(ours.targets), relu_attributions=True)
    theirs = LayerAttribution.interpolate(maps, (16, 16), "bilinear").reshape(8, 256)
    assert_close(ours.attributions[..., 0], theirs.detach())


# --- users' own image networks through xai import ---------------------------------------------

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """Two Conv2d on the image averaged over 4x4 blocks, and a Conv2d on their global average
        (a 1x1 map): [batch, 1, H, W]."""

        def __init__(self, channels=8, n_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classify = nn.Conv2d(channels, n_classes, 1)

        def forward(self, x):
            h = torch.relu(self.conv2(torch.relu(self.conv1(nn.functional.avg_pool2d(x, 4)))))
            return self.classify(self.pool(h)).flatten(1)


    class ChannelsLast(Net):
        """The same network taking [batch, H, W, 1] and returning (logits, its map)."""

        def forward(self, x):
            return super().forward(x.permute(0, 3, 1, 2)), x
''')

PACKAGE = {
    "vision/__init__.py": "",
    "vision/models/__init__.py": "from .small import small_net\n",
    "vision/models/small.py": textwrap.dedent('''
        from ..layers import Net


        def small_net(*, weights=None, num_classes=10):
            """A builder function, as torchvision.models.resnet18."""
            return Net(8, num_classes)
    '''),
}


@pytest.fixture(scope="module")
def own_image_model(tmp_path_factory):
    """``Net`` trained by hand for a few steps on 600 of the 32x32 digits, its weights saved."""
    root = tmp_path_factory.mktemp("own-images")
    (root / "imagenet.py").write_text(NET)
    namespace: dict = {}
    exec(compile(NET, str(root / "imagenet.py"), "exec"), namespace)
    data = load_dataset("digits")
    torch.manual_seed(0)
    net = namespace["Net"]()
    optimizer = torch.optim.Adam(net.parameters(), 0.02)
    X = torch.from_numpy(data.train.X[:600]).reshape(-1, 32, 32, 1).permute(0, 3, 1, 2)
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(X), torch.from_numpy(data.train.y[:600])).backward()
        optimizer.step()
    torch.save(net.state_dict(), root / "net.pt")
    net.eval()
    return root, net, data


def test_an_imported_image_network_explains_evaluates_and_reports(own_image_model, tmp_path):
    from captum.attr import LayerAttribution, LayerGradCam

    root, net, data = own_image_model
    run = tmp_path / "run"
    result = xai("import", "--module", root / "imagenet.py:Net", "--weights", root / "net.pt",
                 "--data", "digits", "--out", run)
    assert result.exit_code == 0, result.output
    test = torch.from_numpy(data.test.X).reshape(-1, 32, 32, 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        accuracy = float((net(test).argmax(1).numpy() == data.test.y).mean())
    assert accuracy > 0.3 and f"test accuracy {accuracy:.4f}" in result.output
    model = xaicore.load_run(run)
    # the kind is the data's; Grad-CAM's layer the last Conv2d whose map is larger than 1x1
    assert model.modality == "images" and model.image_size == (32, 32)
    assert model.gradcam_layer_name == "conv2" and model.normalisation is None
    assert xai("explain", "--run", run, "--method", "gradcam", "--samples", "0:6").exit_code == 0
    e = Explanation.load(run / "explanations" / "gradcam.npz")
    maps = LayerGradCam(net, net.conv2).attribute(test[:6], target=torch.from_numpy(e.targets),
                                                   relu_attributions=True)
    theirs = LayerAttribution.interpolate(maps, (32, 32), "bilinear").reshape(6, 1024)
    assert_close(e.attributions[..., 0], theirs.detach())
    result = xai("evaluate", "--run", run, "--method", "gradcam", "--method", "saliency",
                 "--metric", "deletion", "--samples", "8", "--workers", "1", "--bootstrap", "100")
    assert result.exit_code == 0, result.output
    assert xai("report", "--run", run).exit_code == 0


def test_a_channels_last_network_returning_a_tuple_gives_the_same_predictions(own_image_model,
                                                                              tmp_path):
    root, net, data = own_image_model
    result = xai("import", "--module", root / "imagenet.py:ChannelsLast", "--weights",
                 root / "net.pt", "--data", "digits", "--kind", "images", "--layout", "NHWC",
                 "--output", "0", "--gradcam-layer", "conv1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    model = xaicore.load_run(tmp_path / "run")
    test = torch.from_numpy(data.test.X[:16]).reshape(-1, 32, 32, 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert_close(model.logits(data.test.X[:16]), net(test).numpy())
    assert xaicore.explain(model, data.test.X[:2], method="gradcam").extras["layer"] == "conv1"


def test_a_builder_function_of_a_package_is_imported_by_its_module_name(own_image_model,
                                                                        tmp_path, monkeypatch):
    """As ``--module torchvision.models:resnet18``: a function of a package module whose relative
    imports need the package."""
    root, net, data = own_image_model
    for name, text in PACKAGE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "vision/layers.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    result = xai("import", "--module", "vision.models:small_net", "--params", '{"num_classes": 10}',
                 "--weights", root / "net.pt", "--data", "digits", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    for name in [n for n in sys.modules if n == "vision" or n.startswith("vision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.chdir(root)  # the run reloads from any folder: the package is found by its file
    model = xaicore.load_run(tmp_path / "run")
    assert "vision.models" in sys.modules
    test = torch.from_numpy(data.test.X[:8]).reshape(-1, 32, 32, 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert_close(model.logits(data.test.X[:8]), net(test).numpy())


@pytest.mark.parametrize("extra, message", [
    (["--layout", "NCT"], "--layout must be one of NCHW [batch, channel, height, width]"),
    (["--gradcam-layer", "conv9"], "has no layer 'conv9'; its Conv2d layers are: conv1, conv2, classify"),
    (["--data", "GunPoint", "--kind", "images"], "needs images of one height and width"),
    (["--kind", "tokens"], "tokens models cannot be imported with --module"),
])
def test_bad_image_imports_are_one_line_errors_that_write_nothing(own_image_model, tmp_path, extra,
                                                                  message):
    root, _, _ = own_image_model
    base = {"--module": root / "imagenet.py:Net", "--weights": root / "net.pt", "--data": "digits",
            "--out": tmp_path / "run"}
    args = [a for k, v in base.items() if k not in extra for a in (k, v)]
    result = xai("import", *args, *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_deeplift_on_the_resnet_sums_to_the_logit_difference(resnet_run, digits):
    """Every ReLU of the ResNet is its own module and it has no max-pool (small stem), so
    captum's rescale rule keeps completeness: the attributions sum to f(x) - f(black)."""
    model = xaicore.load_run(resnet_run)
    X = digits.test.X[:4]
    e = xaicore.explain(model, X, method="deeplift", baseline="zero")
    rows = np.arange(len(X))
    difference = model.logits(X)[rows, e.targets] - model.logits(np.zeros_like(X))[rows, e.targets]
    assert_close(e.attributions.astype(np.float64).sum((1, 2)), difference,
                 scale=float(np.abs(difference).max()))


def test_an_image_folder_is_imported_with_its_size_rule(own_image_model, tmp_path):
    """`--data FOLDER --data size=32`: the folder's images of two sizes read by the rule the
    kind's refusal names, which the run keeps for its inputs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root, _, _ = own_image_model
    digits = load_digits()
    folder = tmp_path / "digits"
    for c in range(10):
        (folder / str(c)).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == c][:4]):
            pixels = (image * 255 / 16).round().astype(np.uint8)
            scale = 4 if i % 2 else 3  # 32x32 and 24x24
            Image.fromarray(pixels.repeat(scale, 0).repeat(scale, 1)).save(folder / str(c) / f"{i}.png")
    common = ("import", "--module", root / "imagenet.py:Net", "--weights", root / "net.pt",
              "--kind", "images", "--data", folder)
    refused = xai(*common, "--out", tmp_path / "refused")
    assert refused.exit_code != 0 and "give --data size=HxW" in refused.output
    assert not (tmp_path / "refused").exists()
    result = xai(*common, "--data", "size=32", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    model = xaicore.load_run(tmp_path / "run")
    assert model.image_size == (32, 32) and model.image_reading["size"] == [32, 32]
    assert "one dataset" in xai(*common, "--data", "digits", "--out", tmp_path / "two").output
