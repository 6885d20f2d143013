"""Occlusion windows over time and features, feature ablation and the noise tunnel, each against
captum on the same windows, masks, baselines and noise; and each through the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from conftest import assert_evaluated_and_reported
from nets_explainers import TinyCNN, inputs, loaded
from test_shap import HybridNet, data, wrap
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.methods import result_name


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def baseline_of(kind: str, x: torch.Tensor, background: np.ndarray) -> torch.Tensor:
    """The zero or mean (mean train series) baseline, written directly."""
    if kind == "zero":
        return torch.zeros_like(x)
    return torch.from_numpy(background).mean(0, keepdim=True).expand_as(x)


@pytest.mark.parametrize("baseline, window, stride, feature_window, feature_stride", [
    ("zero", 5, 2, 2, 1), ("mean", 4, 4, 3, 2), ("zero", 7, 3, 2, 2), ("mean", 40, 3, 5, 1),
    ("zero", 6, 6, 4, 4)])
def test_window_occlusion_over_time_and_features_equals_captum_occlusion(
        baseline, window, stride, feature_window, feature_stride):
    """Windows of 23 steps x 4 features that divide neither axis (the last ones cut at the ends),
    one longer than the series and one wider than the features (cut to them)."""
    from captum.attr import Occlusion

    model = wrap(HybridNet, n_features=4, seq_len=23)
    X, background = data(3, 23, 4), data(20, 23, 4, seed=1)
    e = xaicore.explain(model, X, method="window-occlusion", window=window, stride=stride,
                        feature_window=feature_window, feature_stride=feature_stride,
                        baseline=baseline, background=background)
    x = torch.from_numpy(X)
    theirs = Occlusion(model.module).attribute(
        x, sliding_window_shapes=(min(window, 23), min(feature_window, 4)),
        strides=(stride, feature_stride), baselines=baseline_of(baseline, x, background),
        target=torch.from_numpy(e.targets)).numpy()
    assert_close(e.attributions, theirs, scale=float(np.abs(theirs).max()))
    along_features = math.ceil((4 - min(feature_window, 4)) / feature_stride) + 1
    assert e.extras["windows"] == (math.ceil((23 - min(window, 23)) / stride) + 1) * along_features


def test_feature_windows_are_checked():
    model, X = wrap(HybridNet, n_features=4, seq_len=12), data(2, 12, 4)
    with pytest.raises(XaiError, match="stride 3 is larger than the window \\(2 features\\)"):
        xaicore.explain(model, X, method="window-occlusion", window=4, stride=2,
                        feature_window=2, feature_stride=3)
    with pytest.raises(XaiError, match="option 'feature_window' must be in \\[1, 1000000\\], not 0"):
        xaicore.explain(model, X, method="window-occlusion", feature_window=0)


def captum_ablation(model, x, base, target, mask):
    from captum.attr import FeatureAblation

    return FeatureAblation(model.module).attribute(
        x, baselines=base, target=target, feature_mask=mask[None].expand_as(x),
        perturbations_per_eval=7).numpy()


@pytest.mark.parametrize("groups, segments, baseline", [
    (None, None, "zero"), ("0,2;1", 5, "mean"), ("f0;f1,f2", None, "zero"), (None, 7, "mean"),
    ("2;0,1", 1, "zero"), ("0,1,2", 23, "mean")])
def test_feature_ablation_equals_captum_feature_ablation_on_the_same_mask(groups, segments, baseline):
    """The mask is written here from the documented rule (segment of step t: t * segments // T;
    cells numbered segment-major), 7 segments of 23 steps divide nothing."""
    model = wrap(HybridNet, n_features=3, seq_len=23)
    X, background = data(4, 23, 3), data(20, 23, 3, seed=1)
    e = xaicore.explain(model, X, method="feature-ablation", groups=groups, segments=segments,
                        baseline=baseline, background=background)
    x = torch.from_numpy(X)
    feature_group = {None: [0, 1, 2], "0,2;1": [0, 1, 0], "f0;f1,f2": [0, 1, 1], "2;0,1": [1, 1, 0],
                     "0,1,2": [0, 0, 0]}[groups]
    n_groups = max(feature_group) + 1
    cuts = 23 if segments is None else segments
    mask = torch.tensor([[t * cuts // 23 * n_groups + g for g in feature_group] for t in range(23)])
    theirs = captum_ablation(model, x, baseline_of(baseline, x, background),
                             torch.from_numpy(e.targets), mask)
    assert_close(e.attributions, theirs, scale=float(np.abs(theirs).max()))
    assert e.extras["groups"] == cuts * n_groups


def test_feature_ablation_with_your_own_baseline_shared_or_per_sample():
    model = wrap(HybridNet, n_features=2, seq_len=16)
    X = data(3, 16)
    rng = np.random.default_rng(4)
    mask = torch.tensor([[t * 4 // 16 * 2 + f for f in range(2)] for t in range(16)])
    for own in (rng.normal(size=(16, 2)).astype(np.float32),
                rng.normal(size=(3, 16, 2)).astype(np.float32)):
        e = xaicore.explain(model, X, method="feature-ablation", segments=4, baseline=own)
        base = torch.from_numpy(own).expand(3, 16, 2)
        theirs = captum_ablation(model, torch.from_numpy(X), base, torch.from_numpy(e.targets), mask)
        assert_close(e.attributions, theirs, scale=float(np.abs(theirs).max()))


def test_feature_ablation_of_a_linear_model_is_weight_times_difference_summed_over_the_group():
    """An independent oracle: a linear model's drop when cells go to zero is the sum of their
    ``w * x``, which every cell of the group carries."""
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10 * 2, 3))
    model = xaicore.wrap_model(linear, class_names=["a", "b", "c"], feature_names=["x", "y"])
    X = np.random.default_rng(0).normal(size=(4, 10, 2)).astype(np.float32)
    e = xaicore.explain(model, X, method="feature-ablation", groups="x,y", segments=2, target=1)
    contribution = X * linear[1].weight.detach().numpy()[1].reshape(10, 2)
    halves = np.stack([contribution[:, :5].sum((1, 2)), contribution[:, 5:].sum((1, 2))], 1)
    expected = np.repeat(halves, 5, axis=1)[:, :, None].repeat(2, axis=2)
    assert_close(e.attributions, expected, scale=float(np.abs(expected).max()))


@pytest.mark.parametrize("options, message", [
    ({"groups": "0;0,1"}, "groups names feature '0' twice"),
    ({"groups": "0"}, "groups leaves out feature\\(s\\) f1"),
    ({"groups": "0;speed"}, "groups names feature 'speed', which is neither a feature name"),
    ({"segments": 13}, "segments 13 is more than the series' 12 time steps"),
    ({"baseline": "blurry"}, "unknown baseline 'blurry'"),
])
def test_feature_ablation_names_bad_options(options, message):
    model, X = wrap(HybridNet, n_features=2, seq_len=12), data(2, 12)
    with pytest.raises(XaiError, match=message):
        xaicore.explain(model, X, method="feature-ablation", **options)


def replay_noise(monkeypatch, seed: int, copies: int, x: torch.Tensor) -> None:
    """captum's NoiseTunnel draws ``torch.normal(0, std)`` for the inputs repeated sample by
    sample (``repeat_interleave``): hand it our draws (one copy of the batch at a time, from the
    seeded generator) in its order, so both explain the same noisy copies."""
    from xai_captum.explainers import normal_copies

    ours = normal_copies(torch.Generator().manual_seed(seed), copies, x)  # [copy, sample, ...]
    sample_major = ours.transpose(0, 1).reshape(-1, *x.shape[1:])
    real = torch.normal

    def normal(mean, std, *args, **kwargs):
        if isinstance(std, torch.Tensor) and std.shape == sample_major.shape:
            return mean + std * sample_major
        return real(mean, std, *args, **kwargs)

    monkeypatch.setattr(torch, "normal", normal)


TUNNELLED = [
    ("saliency", {}, "Saliency", {}),
    ("saliency", {"abs": False}, "Saliency", {"abs": False}),
    ("input-x-gradient", {}, "InputXGradient", {}),
    ("integrated-gradients", {"n_steps": 16, "integration_method": "gausslegendre"},
     "IntegratedGradients", {"n_steps": 16, "method": "gausslegendre"}),
    ("deeplift", {}, "DeepLift", {}),
]


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("method, options, theirs, their_options", TUNNELLED)
def test_noise_tunnel_equals_captums_noise_tunnel_given_the_same_noise(
        monkeypatch, nt_type, method, options, theirs, their_options):
    import captum.attr

    model, X = loaded(TinyCNN, seq_len=20), inputs(3, seq_len=20)
    e = xaicore.explain(model, X, method=f"noise-tunnel:{method}", nt_type=nt_type, nt_samples=6,
                        nt_stdevs=0.3, nt_seed=7, **options)
    x = torch.from_numpy(X)
    replay_noise(monkeypatch, 7, 6, x)
    inner = getattr(captum.attr, theirs)(model.module)
    extra = {"baselines": torch.zeros_like(x)} if method in ("integrated-gradients", "deeplift") else {}
    expected = captum.attr.NoiseTunnel(inner).attribute(
        x, nt_type=nt_type, nt_samples=6, stdevs=0.3, target=torch.from_numpy(e.targets),
        **extra, **their_options).detach().numpy()
    assert_close(e.attributions, expected, scale=float(np.abs(expected).max()))


def test_noise_tunnel_draws_in_passes_as_in_one_and_scales_noise_per_sample(monkeypatch):
    """Copies grouped into passes of any size draw the same noise; without nt_stdevs the noise std
    is nt_noise_level times each sample's per-feature std (the extra noise_std)."""
    import xai_captum.tunnel as tunnel

    model, X = loaded(TinyCNN, seq_len=20), inputs(4, seq_len=20)
    one = xaicore.explain(model, X, method="noise-tunnel:saliency", nt_samples=5, nt_type="vargrad")
    monkeypatch.setattr(tunnel, "pass_rows", lambda device, values: 8)  # 2 copies a pass
    passes = xaicore.explain(model, X, method="noise-tunnel:saliency", nt_samples=5,
                             nt_type="vargrad")
    assert_close(passes.attributions, one.attributions)
    assert_close(one.extras["noise_std"], 0.15 * X.std(1, ddof=1, keepdims=True))
    other = xaicore.explain(model, X, method="noise-tunnel:saliency", nt_samples=5, nt_type="vargrad",
                            nt_seed=1)
    assert not np.allclose(other.attributions, one.attributions)
    assert (one.attributions >= -1e-6 * np.abs(one.attributions).max()).all()  # a variance


def test_noise_tunnel_around_gradient_shap_and_with_a_per_sample_baseline():
    """gradient-shap's own draws come from its seed; a per-sample baseline goes with each sample's
    copies: with zero noise every copy is the input itself, so the tunnel's mean is the method."""
    model, X = loaded(TinyCNN, seq_len=20), inputs(3, seq_len=20)
    background = inputs(10, seq_len=20, seed=3)
    shap = xaicore.explain(model, X, method="noise-tunnel:gradient-shap", nt_samples=3,
                           background=background, n_samples=4)
    assert shap.attributions.shape == X.shape and np.isfinite(shap.attributions).all()
    own = np.random.default_rng(2).normal(size=X.shape).astype(np.float32)
    quiet = xaicore.explain(model, X, method="noise-tunnel:integrated-gradients", nt_samples=2,
                            nt_stdevs=0.0, baseline=own, n_steps=8, integration_method="gausslegendre")
    plain = xaicore.explain(model, X, method="integrated-gradients", baseline=own, n_steps=8,
                            integration_method="gausslegendre")
    assert_close(quiet.attributions, plain.attributions, scale=float(np.abs(plain.attributions).max()))


def test_noise_tunnel_refuses_what_it_cannot_wrap():
    model, X = loaded(TinyCNN, seq_len=20), inputs(2, seq_len=20)
    for method, message in (("noise-tunnel", "use it as noise-tunnel:<method>"),
                            ("noise-tunnel:window-occlusion", "wraps a gradient method"),
                            ("noise-tunnel:smoothgrad", "smoothgrad is a noise tunnel already")):
        with pytest.raises(XaiError, match=message):
            xaicore.explain(model, X, method=method)
    with pytest.raises(XaiError, match="unknown nt_type 'median'"):
        xaicore.explain(model, X, method="noise-tunnel:saliency", nt_type="median")
    with pytest.raises(XaiError, match="has no option 'noise'"):
        xaicore.explain(model, X, method="noise-tunnel:saliency", noise=0.1)


@pytest.fixture(scope="module")
def fcn_run(tmp_path_factory):
    """A small fcn trained briefly on GunPoint."""
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.training import train

    run = tmp_path_factory.mktemp("ablation") / "gp"
    train(dataset_spec("GunPoint"), "fcn", run, epochs=3, seed=0, progress=False)
    return run


METHODS = ("feature-ablation", "noise-tunnel:saliency", "window-occlusion")
OPTIONS = ("feature-ablation.segments=10", "noise-tunnel:saliency.nt_type=smoothgrad_sq",
           "noise-tunnel:saliency.nt_samples=4", "window-occlusion.window=15")


def test_cli_explains_streams_evaluates_and_reports_the_new_methods(fcn_run, tmp_path):
    listing = xai("list")
    assert listing.exit_code == 0
    assert "feature-ablation" in listing.output and "noise-tunnel" in listing.output
    options = [arg for option in OPTIONS for arg in ("--option", option)]
    methods = [arg for method in METHODS for arg in ("--method", method)]
    result = xai("explain", "--run", fcn_run, *methods, *options, "--samples", "0:6", "--no-figures")
    assert result.exit_code == 0, result.output
    folder = fcn_run / "explanations"
    stored = {m: xaicore.load_explanation(folder / f"{result_name(m, 'predicted')}.npz")
              for m in METHODS}
    model = xaicore.load_run(fcn_run)
    X = stored["feature-ablation"].inputs
    direct = xaicore.explain(model, X, method="feature-ablation", segments=10)
    assert_close(stored["feature-ablation"].attributions, direct.attributions,
                 scale=float(np.abs(direct.attributions).max()))
    assert stored["noise-tunnel:saliency"].options["nt_type"] == "smoothgrad_sq"

    np.save(tmp_path / "big.npy", X)
    streamed = xai("explain", "--run", fcn_run, "--input", tmp_path / "big.npy", *methods, *options,
                   "--out", tmp_path / "streamed")
    assert streamed.exit_code == 0, streamed.output
    for method in METHODS:
        e = xaicore.load_explanation(tmp_path / "streamed" / f"{result_name(method, 'predicted')}.zarr")
        assert_close(e.attributions[:], stored[method].attributions,
                     scale=float(np.abs(stored[method].attributions).max()))

    assert_evaluated_and_reported(fcn_run, METHODS)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    from image_runs import train_digits

    return xaicore.load_run(train_digits(tmp_path_factory, epochs=1))


def test_noise_tunnel_on_images_equals_captums_and_series_options_are_refused(image_model,
                                                                              monkeypatch):
    """Images: the tunnel around saliency equals captum's NoiseTunnel(Saliency) on [N, C, H, W]
    given the same noise (the digits have one channel, so our [n, H*W, 1] draws and captum's
    [n, 1, H, W] ones are the same numbers in the same order); feature windows and feature
    ablation are for series only."""
    import captum.attr

    from test_image_metrics import flat, images, on_images
    from xaicore.data.loading import load_dataset

    X = load_dataset({"name": "digits", "scale": 2}).test.X[:3]
    e = xaicore.explain(image_model, X, method="noise-tunnel:saliency", nt_type="vargrad",
                        nt_samples=4, nt_stdevs=0.2, nt_seed=3, abs=False)
    replay_noise(monkeypatch, 3, 4, images(X))
    expected = captum.attr.NoiseTunnel(captum.attr.Saliency(on_images(image_model))).attribute(
        images(X), nt_type="vargrad", nt_samples=4, stdevs=0.2, target=torch.from_numpy(e.targets),
        abs=False)
    assert_close(e.attributions, flat(expected), scale=float(np.abs(flat(expected)).max()))
    with pytest.raises(XaiError, match="feature_window and feature_stride group the features of a "
                                       "series; images are occluded in squares"):
        xaicore.explain(image_model, X, method="window-occlusion", feature_window=2)
    with pytest.raises(XaiError, match="feature-ablation cannot explain .*time segments x feature "
                                       "groups of a series"):
        xaicore.explain(image_model, X, method="feature-ablation")


def test_texts_are_refused_by_the_tunnel_and_by_feature_ablation(tmp_path):
    """Noise on token ids is no text, and a text has no feature groups: both say so before
    anything is computed, and --method all leaves feature-ablation out with that reason."""
    from test_text import train_text_run

    run = train_text_run(tmp_path)
    model = xaicore.load_run(run)
    for method, reason in (("noise-tunnel:saliency", "noise on a text's token ids is no text"),
                           ("feature-ablation", "time segments x feature groups of a series")):
        with pytest.raises(XaiError, match=f"{method} cannot explain .*{reason}"):
            xaicore.explain(model, ["a joyful film"], method=method)
    result = xai("explain", "--run", run, "--method", "all", "--samples", "0:2", "--no-figures")
    assert result.exit_code == 0, result.output
    assert "skipping feature-ablation (cannot explain model" in result.output
