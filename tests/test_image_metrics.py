"""Faithfulness on images: ROAD's noisy linear imputation over the eight neighbours of a pixel
(its linear system, a ramp, the border, whole removed blocks), ROAD, deletion, insertion, infidelity
and the randomisation check on image runs, and the gradient family on image-cnn and image-resnet18
equal to captum's on the same module with [N, C, H, W] inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import xaicore
from image_runs import train_digits
from tolerances import assert_close, assert_identical, is_close
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.plugins import registry

SIDE = 16  # the digits at scale 2

#: ROAD's neighbour weights (Rong et al. 2022): direct 1/6, diagonal 1/12
WEIGHTS = {(dy, dx): (1 / 6 if dy == 0 or dx == 0 else 1 / 12)
           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    return train_digits(tmp_path_factory, epochs=3)


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    return train_digits(tmp_path_factory, "image-resnet18", epochs=2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits", "scale": 2})


@pytest.fixture(scope="module", params=["image-cnn", "image-resnet18"])
def model(request):
    run = request.getfixturevalue("cnn_run" if request.param == "image-cnn" else "resnet_run")
    return xaicore.load_run(run)


def neighbour_mean(image: np.ndarray, r: int, c: int) -> float:
    """The weighted mean of pixel (r, c)'s neighbours inside ``image``, the weights renormalised."""
    height, width = image.shape
    inside = {(dy, dx): w for (dy, dx), w in WEIGHTS.items()
              if 0 <= r + dy < height and 0 <= c + dx < width}
    return sum(w * image[r + dy, c + dx] for (dy, dx), w in inside.items()) / sum(inside.values())


def impute(model, images: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The kind's imputation of ``removed`` pixels of ``[n, H, W]`` one-channel images."""
    kind = registry.get_modality("images")
    n = len(images)
    x = torch.from_numpy(images.reshape(n, -1, 1).astype(np.float32))
    gone = torch.from_numpy(removed.reshape(n, -1, 1))
    fallback = torch.full((1, 1, 1), -7.0)
    return kind.impute(model, x, gone, fallback).numpy().reshape(images.shape)


def test_imputed_pixels_solve_roads_linear_system_border_and_blocks_included(cnn_run):
    """Every removed pixel equals the weighted mean of its neighbours (solved jointly, so
    removed neighbours count with their imputed values); kept pixels do not move."""
    model = xaicore.load_run(cnn_run)
    rng = np.random.default_rng(0)
    images = rng.random((4, SIDE, SIDE)).astype(np.float32)
    removed = rng.random(images.shape) < 0.5
    removed[1, 0, :] = True  # a whole border row
    removed[2, :6, :6] = True  # a block in a corner
    removed[3, 4:12, 3:13] = True  # a block inside
    filled = impute(model, images, removed)
    for i, r, c in zip(*np.nonzero(removed)):
        assert_close(filled[i, r, c], neighbour_mean(filled[i].astype(np.float64), r, c),
                     scale=1.0, err_msg=f"image {i} pixel ({r}, {c})")
    assert_identical(filled[~removed], images[~removed])
    assert not is_close(filled[removed], images[removed])  # the removed values are gone


def test_a_linear_ramp_is_reproduced_inside_and_the_border_renormalises(cnn_run):
    model = xaicore.load_run(cnn_run)
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    ramp = (0.05 * rows - 0.03 * cols + 0.4).astype(np.float32)[None]
    inside = np.zeros(ramp.shape, bool)
    inside[0, 3:12, 2:10] = True
    inside[0, 13, 1::3] = True
    assert_close(impute(model, ramp, inside), ramp)
    corner = np.zeros(ramp.shape, bool)
    corner[0, 0, 0] = True  # only its three neighbours inside the image, weights 1/6, 1/6, 1/12
    expected = (ramp[0, 0, 1] / 6 + ramp[0, 1, 0] / 6 + ramp[0, 1, 1] / 12) / (5 / 12)
    assert_close(impute(model, ramp, corner)[0, 0, 0], expected)


def test_channels_are_imputed_apart_and_a_channel_with_nothing_kept_takes_the_fallback():
    from xai_image.imputation import impute_pixels

    rng = np.random.default_rng(1)
    pixels = rng.random((2, 6 * 5, 3)).astype(np.float32)
    removed = rng.random(pixels.shape) < 0.6
    removed[1, :, 2] = True
    fallback = np.array([0.1, 0.2, 0.3], np.float32)
    together = impute_pixels(pixels, removed, 6, 5, fallback)
    for c in range(3):
        alone = impute_pixels(pixels[:, :, c:c + 1], removed[:, :, c:c + 1], 6, 5, fallback[c:c + 1])
        assert_close(together[:, :, c:c + 1], alone)
    assert (together[1, :, 2] == np.float32(0.3)).all()
    assert_identical(together[~removed], pixels[~removed])


def test_road_and_the_noise_metrics_apply_to_images(cnn_run, digits):
    from xai_eval.runner import choose_metrics

    model = xaicore.load_run(cnn_run)
    chosen, skipped = choose_metrics((), {"background": digits.train.X, "seed": 0}, model)
    assert {"deletion", "insertion", "road-morf", "road-lerf", "infidelity", "randomisation"} <= set(chosen)
    assert set(skipped) == {"aup", "aur"}  # ground-truth masks: synthetic data only
    assert registry.get_metric("sensitivity-max").check(model) is None


@pytest.mark.parametrize("metric_name", ["road-morf", "road-lerf"])
def test_road_on_images_removes_by_rank_and_imputes_in_the_plane(cnn_run, digits, metric_name):
    """Noise 0: each point of the curve is the mean target probability of the images with the
    top (MoRF) or bottom (LeRF) ranked pixels imputed from their eight neighbours."""
    model = xaicore.load_run(cnn_run)
    X = digits.test.X[:6]
    e = xaicore.explain(model, X, method="saliency", abs=False)
    metric = registry.get_metric(metric_name)
    scores, curve = metric.evaluate_curves(model, e, noise=0.0, step_fraction=0.25,
                                           random_baseline=False)
    n_pixels = SIDE * SIDE
    assert_close(curve["fraction"], [0, 0.25, 0.5, 0.75, 1])
    scores_by_pixel = e.attributions[:, :, 0] * (-1 if metric_name == "road-lerf" else 1)
    order = np.argsort(-scores_by_pixel, axis=1, kind="stable")
    mean = model.normalisation.mean.numpy().reshape(1, 1, 1)
    expected = []
    for k in (0, 64, 128, 192):
        removed = np.zeros((6, n_pixels), bool)
        np.put_along_axis(removed, order[:, :k], True, axis=1)
        images = impute(model, X[:, :, 0].reshape(6, SIDE, SIDE), removed.reshape(6, SIDE, SIDE))
        probs = model.predict_proba(images.reshape(6, n_pixels, 1))
        expected.append(probs[np.arange(6), e.targets].mean())
    everything = model.predict_proba(np.broadcast_to(mean, X.shape).astype(np.float32))
    expected.append(everything[np.arange(6), e.targets].mean())
    assert_close(curve["curve"], expected, scale=1.0)
    assert_close(scores[f"{metric_name.replace('-', '_')}_auc"],
                 np.trapezoid(expected, curve["fraction"]), scale=1.0)


def test_deletion_steps_through_fractions_of_the_pixels(cnn_run, digits):
    model = xaicore.load_run(cnn_run)
    e = xaicore.explain(model, digits.test.X[:4], method="saliency")
    for name in ("deletion", "insertion"):
        for substrate in ("mean", "blurred"):
            _, curve = registry.get_metric(name).evaluate_curves(model, e, substrate=substrate)
            steps = np.diff(curve["fraction"])
            assert len(curve["fraction"]) == 11 and curve["fraction"][-1] == 1
            assert (steps > 0.08).all() and (steps <= 0.1 + 1 / (SIDE * SIDE)).all()  # ~26 pixels


def test_infidelity_on_images_equals_captums_on_the_same_perturbations(cnn_run, digits):
    from captum.metrics import infidelity

    from xai_eval.captum_metrics import InfidelityMetric

    model = xaicore.load_run(cnn_run)
    X = digits.test.X[:5]
    explanations = [xaicore.explain(model, X, method=m) for m in ("saliency", "input-x-gradient")]
    metric, options = InfidelityMetric(), {"n_perturb_samples": 4, "seed": 2}
    results = metric.evaluate_many(model, explanations, **options)
    noise, _ = metric.perturbations(model, torch.from_numpy(X), {**metric.defaults, **options})
    nchw = noise.reshape(-1, SIDE, SIDE, 1).permute(0, 3, 1, 2)
    for e, (_, curve) in zip(explanations, results):
        expected = infidelity(on_images(model), lambda inputs: (nchw, inputs - nchw), images(X),
                              images(e.attributions), target=torch.from_numpy(e.targets),
                              n_perturb_samples=4, max_examples_per_batch=20, normalize=True)
        assert_close(curve["per_sample"]["infidelity"], expected.numpy())


def test_evaluate_on_an_image_run_gives_intervals_and_verdicts(cnn_run):
    from xai_eval.stats import BASELINE, BETTER, SAME, UNINFORMATIVE, WORSE

    result = xai("evaluate", "--run", cnn_run, "--samples", "8", "--method", "saliency",
                 "--method", "random", "--metric", "deletion", "--metric", "road-morf", "--metric",
                 "road-lerf", "--metric", "infidelity", "--metric", "randomisation", "--workers", "1",
                 "--force")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(cnn_run / "evaluation.csv").set_index("method")
    for key in ("deletion_auc", "road_morf_auc", "road_lerf_auc", "infidelity"):
        assert table.loc["saliency", f"{key}_low"] <= table.loc["saliency", key] <= \
            table.loc["saliency", f"{key}_high"]
        assert table.loc["saliency", f"{key}_vs_random"] in (BETTER, WORSE, SAME, UNINFORMATIVE)
    assert table.loc["saliency", "randomisation"] in ("pass", "fail", "undecided")
    assert table.loc["random", "verdict"] == BASELINE
    curves = json.loads((cnn_run / "evaluation" / "curves.json").read_text())
    assert len(curves["road-morf"]["saliency"]["curve"]) == 11


def test_randomisation_runs_on_both_networks_with_ssim_over_the_image_plane(model, digits):
    e = xaicore.explain(model, digits.test.X[:4], method="saliency")
    scores, curve = registry.get_metric("randomisation").evaluate_curves(model, e, samples=4,
                                                                         max_steps=3)
    assert len(curve["layers"]) == 3 and curve["layers"][-1] == "conv1"  # down to the stem
    assert np.isfinite(curve["correlation"]).all()
    assert scores["randomisation"] in ("pass", "fail", "undecided")
    assert np.isfinite(scores["randomisation_ssim_final"])


def ssim_2d(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004, eq. 13, over every 7x7 window of two [0, 1] maps, population moments."""
    values = []
    for r in range(x.shape[0] - 6):
        for c in range(x.shape[1] - 6):
            a, b = x[r:r + 7, c:c + 7].ravel(), y[r:r + 7, c:c + 7].ravel()
            cov = ((a - a.mean()) * (b - b.mean())).mean()
            values.append((2 * a.mean() * b.mean() + 1e-4) * (2 * cov + 9e-4)
                          / ((a.mean() ** 2 + b.mean() ** 2 + 1e-4) * (a.var() + b.var() + 9e-4)))
    return float(np.mean(values))


def test_ssim_of_image_maps_is_over_the_plane_per_channel():
    from xai_eval.similarity import ssim_rows

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3, 9 * 10, 2))
    ours = ssim_rows(a, b, (9, 10))
    for i in range(3):
        x, y = np.abs(a[i]) / np.abs(a[i]).max(), np.abs(b[i]) / np.abs(b[i]).max()
        expected = np.mean([ssim_2d(x[:, c].reshape(9, 10), y[:, c].reshape(9, 10)) for c in range(2)])
        assert_close(ours[i], expected)


def on_images(model):
    """The model as a function of ``[N, C, H, W]`` images (what captum is given), through xai's
    own module: both then run the network's convolutions on the same memory layout (another
    layout rounds differently, and where max-pooling meets near-ties such rounding sends a
    gradient to another pixel)."""
    def forward(batch: torch.Tensor) -> torch.Tensor:
        pixels = batch.permute(0, 2, 3, 1).reshape(len(batch), SIDE * SIDE, -1)
        return model.module(pixels.clone(memory_format=torch.contiguous_format))
    return forward


def images(flat: np.ndarray) -> torch.Tensor:
    """Flattened ``[n, H*W, C]`` pixels as ``[n, C, H, W]``."""
    return torch.from_numpy(np.ascontiguousarray(flat)).reshape(len(flat), SIDE, SIDE, -1) \
        .permute(0, 3, 1, 2).contiguous()


def flat(batch: torch.Tensor) -> np.ndarray:
    return batch.detach().permute(0, 2, 3, 1).reshape(len(batch), SIDE * SIDE, -1).numpy()


@pytest.mark.parametrize("method, theirs", [("saliency", "Saliency"),
                                            ("input-x-gradient", "InputXGradient")])
def test_gradients_at_the_pixels_equal_captums(model, digits, method, theirs):
    import captum.attr

    X = digits.test.X[:6]
    e = xaicore.explain(model, X, method=method)
    options = {"abs": True} if method == "saliency" else {}
    expected = getattr(captum.attr, theirs)(on_images(model)).attribute(
        images(X), target=torch.from_numpy(e.targets), **options)
    assert_close(e.attributions, flat(expected))


@pytest.mark.parametrize("baseline, rule", [("zero", "gausslegendre"),
                                            ("blurred", "riemann_trapezoid")])
def test_integrated_gradients_equal_captums_at_the_same_steps(model, digits, baseline, rule):
    from captum.attr import IntegratedGradients

    X = digits.test.X[:4]
    e = xaicore.explain(model, X, method="integrated-gradients", baseline=baseline, n_steps=24,
                        integration_method=rule)
    reference = registry.get_modality("images").baseline(baseline, model, torch.from_numpy(X))
    expected = IntegratedGradients(on_images(model)).attribute(
        images(X), baselines=images(reference.numpy()), target=torch.from_numpy(e.targets),
        n_steps=24, method=rule)
    assert_close(e.attributions, flat(expected))


def test_integrated_gradients_with_automatic_steps_are_complete(model, digits):
    X = digits.test.X[:6]
    e = xaicore.explain(model, X, method="integrated-gradients")
    logits = model.logits(X)[np.arange(6), e.targets]
    difference = logits - model.logits(np.zeros_like(X))[np.arange(6), e.targets]
    gap = e.attributions.sum((1, 2)) - difference
    assert (np.abs(gap) <= 0.01 * np.abs(difference) + 1e-6 * (np.abs(logits) + 1)).all()
    assert set(np.asarray(e.extras["n_steps"]).tolist()) <= {33, 65, 129, 257, 513, 1025}


def test_smoothgrad_equals_captums_noise_tunnel_with_the_same_seed(model, digits):
    """One image at a time (captum's noise std is one number, ours each image's own std):
    the same seed draws the same noise, so NoiseTunnel(Saliency) gives the same map. The std is
    ours to the bit (0.15 times the image's std in float32): one ulp more noise moves a ReLU of
    the ResNet across its kink and the gradients with it."""
    from captum.attr import NoiseTunnel, Saliency

    X = digits.test.X[:3]
    for i in range(3):
        e = xaicore.explain(model, X[i:i + 1], method="smoothgrad", n_samples=8, seed=5)
        torch.manual_seed(5)
        expected = NoiseTunnel(Saliency(on_images(model))).attribute(
            images(X[i:i + 1]), nt_type="smoothgrad", nt_samples=8,
            stdevs=float((0.15 * torch.from_numpy(X[i:i + 1]).std(1))[0, 0]),
            target=torch.from_numpy(e.targets), abs=False)
        assert_close(e.attributions, np.abs(flat(expected)))


def test_gradient_shap_is_the_mean_of_captums_gradients_at_its_drawn_points(model, digits):
    """The draws replayed from the same seed (captum's GradientShap draws from numpy's global
    state, which no seed of ours reaches): each draw's ``(x - b) * grad F(b + a (x + noise - b))``
    with captum's Saliency on [N, C, H, W], averaged."""
    from captum.attr import Saliency

    from xai_captum.explainers import baseline_draws

    X, background = digits.test.X[:3], digits.train.X[:20]
    e = xaicore.explain(model, X, method="gradient-shap", background=background, n_samples=6,
                        stdevs=0.1, seed=4)
    x = torch.from_numpy(X)
    base, alpha, noise = baseline_draws(torch.Generator().manual_seed(4), 6, x,
                                        torch.from_numpy(background))
    saliency = Saliency(on_images(model))
    target = torch.from_numpy(e.targets)
    total = np.zeros(X.shape)
    for k in range(6):
        diff = x + 0.1 * noise[k] - base[k]
        point = base[k] + alpha[k, :, None, None] * diff
        grads = saliency.attribute(images(point.numpy()), target=target, abs=False)
        total += diff.numpy() * flat(grads)
    assert_close(e.attributions, total / 6)
