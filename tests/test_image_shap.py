"""SHAP and occlusion over the players of images (SLIC superpixels, grid patches): the kind's
players, exact values against the Shapley formula written as orders of the players, sampled
estimates within their standard errors, batches, the grid fallback without scikit-image, and
window-occlusion against captum's Occlusion on [N, C, H, W]."""

from __future__ import annotations

import itertools
import math
import sys
from types import SimpleNamespace

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

SIDE = 16  # digits at scale 2


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """image-cnn trained for a few epochs on the 16x16 digits, small and quick."""
    return train_digits(tmp_path_factory, epochs=3)


@pytest.fixture(scope="module")
def model(image_run):
    return xaicore.load_run(image_run)


@pytest.fixture(scope="module")
def X():
    return load_dataset({"name": "digits", "scale": 2}).test.X[:6]


@pytest.fixture(scope="module")
def colour():
    """An untrained three-channel CNN on 12x12 images (weights seeded) and structured images:
    four quadrants of different colours with a little noise."""
    from xai_image.modality import image_model
    from xai_image.networks import ImageCNN

    torch.manual_seed(0)
    network = ImageCNN(3, 12, 12, 3, channels=4, dropout=0.0)
    rng = np.random.default_rng(0)
    for module in network.modules():  # running statistics away from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    net = image_model(network, 12, 12, name="colour-cnn", class_names=["a", "b", "c"],
                      feature_names=["red", "green", "blue"], mean=[0.4, 0.5, 0.6],
                      std=[0.3, 0.25, 0.2], hyperparameters={}, dataset="")
    quadrant = (np.arange(12)[:, None] >= 6) * 2 + (np.arange(12)[None, :] >= 6)
    colours = rng.uniform(0, 1, (3, 4, 3))
    images = colours[:, quadrant] + rng.normal(0, 0.02, (3, 12, 12, 3))
    return net, images.reshape(3, 144, 3).astype(np.float32)


def target_logits(model, X: np.ndarray, target: np.ndarray) -> np.ndarray:
    return model.logits(X).astype(np.float64)[np.arange(len(X)), target]


def shapley_by_permutations(model, x: np.ndarray, reference: np.ndarray, ids: np.ndarray,
                            target: int) -> np.ndarray:
    """Each player's mean marginal contribution over every order of the players: the pixels of
    absent players (all their channels) taken from ``reference``, written directly."""
    m = int(ids.max()) + 1
    coalitions = [frozenset(c) for size in range(m + 1) for c in itertools.combinations(range(m), size)]
    images = np.stack([np.where(np.isin(ids, sorted(c))[:, None], x, reference) for c in coalitions])
    value = dict(zip(coalitions, target_logits(model, images, np.full(len(images), target))))
    phi = np.zeros(m)
    for order in itertools.permutations(range(m)):
        before: frozenset[int] = frozenset()
        for player in order:
            phi[player] += value[before | {player}] - value[before]
            before = before | {player}
    return phi / math.factorial(m)


def per_player(e, i: int) -> np.ndarray:
    """Sample ``i``'s attributions summed over each player's pixels and channels."""
    ids = e.extras["player_ids"][i]
    return np.array([e.attributions[i, ids == p].sum() for p in range(int(e.extras["n_players"][i]))],
                    dtype=np.float64)


def test_images_declare_superpixels_and_patches_as_players(X):
    kind = registry.get_modality("images")
    assert list(kind.player_units) == ["superpixels", "patches"]
    model = SimpleNamespace(image_size=(SIDE, SIDE))
    unit, ids = kind.players(model, X[:2], "patches", patch=5)  # a 4x4 grid, the last cut to 1 px
    rows, columns = np.divmod(np.arange(SIDE * SIDE), SIDE)
    assert unit == "patches" and ids.shape == (2, SIDE * SIDE)
    assert (ids == (rows // 5) * 4 + columns // 5).all()
    unit, ids = kind.players(model, X[:2], None)
    assert unit == "superpixels" and (ids == kind.players(model, X[:2], None)[1]).all()  # deterministic
    from scipy.ndimage import label
    from skimage.segmentation import slic

    for image, image_ids in zip(X[:2], ids):
        grid = image_ids.reshape(SIDE, SIDE)
        assert set(np.unique(grid)) == set(range(grid.max() + 1))  # numbered from 0
        assert all(label(grid == p)[1] == 1 for p in range(grid.max() + 1))  # connected
        scaled = (image - image.min()) / np.ptp(image)
        theirs = slic(scaled.reshape(SIDE, SIDE).astype(np.float64), n_segments=16, compactness=0.1,
                      channel_axis=None, start_label=0)
        pairs = set(zip(grid.ravel().tolist(), theirs.ravel().tolist()))  # the same partition
        assert len(pairs) == len(np.unique(grid)) == len(np.unique(theirs))


def test_colour_images_are_segmented_in_cielab(colour):
    from skimage.segmentation import slic

    model, images = colour
    unit, ids = registry.get_modality("images").players(model, images, None, n_segments=4,
                                                        compactness=10.0)
    for image, image_ids in zip(images.reshape(3, 12, 12, 3), ids):
        scaled = (image - image.min()) / np.ptp(image)
        theirs = slic(scaled.astype(np.float64), n_segments=4, compactness=10.0, channel_axis=-1,
                      convert2lab=True, start_label=0)
        pairs = set(zip(image_ids.tolist(), theirs.ravel().tolist()))
        assert len(pairs) == len(np.unique(image_ids)) == len(np.unique(theirs))


@pytest.mark.parametrize("absent", ["mean", "blurred"])
def test_exact_values_of_four_patches_are_the_shapley_values(model, X, absent):
    e = xaicore.explain(model, X[:3], method="shap", players="patches", patch=8, absent=absent)
    assert e.extras["players"] == "patches" and e.extras["absent"] == absent
    assert e.extras["algorithm"] == "exact" and e.extras["n_players"].tolist() == [4, 4, 4]
    reference = registry.get_modality("images").substrate(absent, model, X[:3])
    if absent == "mean":  # the train split's grey level everywhere
        assert_close(reference, np.broadcast_to(model.normalisation.mean.numpy(), reference.shape))
    fx = target_logits(model, X[:3], e.targets)
    gap = fx - target_logits(model, reference, e.targets)
    assert_close(e.attributions.astype(np.float64).sum((1, 2)), gap, scale=float(np.abs(gap).max()))
    assert_close(e.extras["expected_value"], fx - gap, scale=float(np.abs(fx).max()))
    for i in range(3):
        oracle = shapley_by_permutations(model, X[i], reference[i], e.extras["player_ids"][i],
                                         int(e.targets[i]))
        assert_close(per_player(e, i), oracle, scale=float(np.abs(oracle).max()))
        for p in range(4):  # spread evenly over the patch's 64 pixels
            share = e.attributions[i, e.extras["player_ids"][i] == p, 0]
            assert_close(share, np.full(64, oracle[p] / 64), scale=float(np.abs(oracle).max()) / 64)
    assert (e.extras["standard_error"] == 0).all()


def test_exact_values_of_superpixels_of_colour_images_sum_over_channels(colour):
    model, images = colour
    e = xaicore.explain(model, images, method="shap", n_segments=4, compactness=10.0)
    assert e.extras["players"] == "superpixels" and e.extras["algorithm"] == "exact"
    reference = registry.get_modality("images").substrate("blurred", model, images)
    for i in range(3):
        oracle = shapley_by_permutations(model, images[i], reference[i], e.extras["player_ids"][i],
                                         int(e.targets[i]))
        assert_close(per_player(e, i), oracle, scale=float(np.abs(oracle).max()))
        assert_close(e.attributions[i, :, 0], e.attributions[i, :, 2])  # a pixel's channels alike


def test_sampled_values_approach_the_exact_ones_within_their_standard_errors(model, X):
    kind = registry.get_modality("images")
    options = next({"n_segments": n} for n in range(12, 30)
                   if kind.players(model, X[:1], None, n_segments=n)[1].max() + 1 == 12)
    exact = xaicore.explain(model, X[:1], method="shap", algorithm="exact", **options)
    truth = per_player(exact, 0)
    errors = []
    for n_pairs in (200, 3000):
        sampled = xaicore.explain(model, X[:1], method="shap", algorithm="sampled", n_pairs=n_pairs,
                                  seed=1, **options)
        assert sampled.extras["algorithm"] == "sampled"
        assert (sampled.extras["player_ids"] == exact.extras["player_ids"]).all()
        assert sampled.extras["additivity_error"].max() < 1e-4  # exact by construction
        values = per_player(sampled, 0)
        ids = sampled.extras["player_ids"][0]
        se = np.array([sampled.extras["standard_error"][0, ids == p].astype(np.float64).sum()
                       for p in range(12)])  # a player's error spread over its pixels as its value
        assert (se > 0).all()
        assert np.mean(((values - truth) / se) ** 2) < 4  # errors of the size their errors say
        errors.append(np.linalg.norm(values - truth) / np.linalg.norm(truth))
    assert errors[1] < 0.05 and errors[1] < errors[0]


@pytest.mark.parametrize("options", [{}, {"algorithm": "sampled", "n_pairs": 50},
                                     {"players": "patches"}])
def test_an_image_gets_the_same_values_alone_and_in_a_batch(model, X, options):
    """Images of other player counts beside it change nothing: each image's game is its own, its
    sampled pairs its own generator's."""
    batch = xaicore.explain(model, X, method="shap", **options)
    assert len(set(batch.extras["n_players"].tolist())) > 1 or options.get("players")
    for i in (0, 4):
        alone = xaicore.explain(model, X[i:i + 1], method="shap", **options)
        scale = float(np.abs(alone.attributions).max())
        assert_close(batch.attributions[i], alone.attributions[0], scale=scale)
        assert_close(batch.extras["standard_error"][i], alone.extras["standard_error"][0], scale=scale)
        assert (batch.extras["player_ids"][i] == alone.extras["player_ids"][0]).all()


def test_without_scikit_image_the_players_are_grid_patches(model, X, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    with pytest.warns(UserWarning, match="scikit-image is not installed.*grid patches"):
        fallback = xaicore.explain(model, X[:2], method="shap")
    assert fallback.extras["players"] == "patches" and fallback.extras["n_players"].tolist() == [16, 16]
    grid = xaicore.explain(model, X[:2], method="shap", players="patches")
    assert_close(fallback.attributions, grid.attributions)
    with pytest.raises(XaiError, match="players=superpixels needs scikit-image"):
        xaicore.explain(model, X[:2], method="shap", players="superpixels")
    with pytest.raises(XaiError, match="players=superpixels needs scikit-image"):
        xaicore.explain(model, X[:2], method="window-occlusion", unit="superpixels")


@pytest.mark.parametrize("window, stride, baseline", [(4, 2, "zero"), (6, 4, "mean"),
                                                      (5, 3, "blurred"), (8, 8, "zero")])
def test_window_occlusion_of_images_equals_captum_occlusion(model, X, window, stride, baseline):
    """Squares of window x window pixels every stride pixels (the last cut at the edge), all
    channels together: captum's Occlusion on [N, C, H, W] with windows (C, window, window)."""
    from captum.attr import Occlusion

    background = load_dataset({"name": "digits", "scale": 2}).train.X[:50]
    e = xaicore.explain(model, X, method="window-occlusion", window=window, stride=stride,
                        baseline=baseline, background=background)
    x = torch.from_numpy(X)
    base = registry.get_modality("images").baseline(baseline, model, x, background=background)
    if baseline == "mean":
        assert_close(base[0], background.mean(0))

    def on_images(images):
        return model.module(images.permute(0, 2, 3, 1).reshape(len(images), SIDE * SIDE, 1))

    def as_images(flat):
        return flat.reshape(len(flat), SIDE, SIDE, 1).permute(0, 3, 1, 2)

    theirs = Occlusion(on_images).attribute(
        as_images(x), sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
        baselines=as_images(base), target=torch.from_numpy(e.targets))
    theirs = theirs.permute(0, 2, 3, 1).reshape(len(X), SIDE * SIDE, 1).numpy()
    assert_close(e.attributions, theirs, scale=float(np.abs(theirs).max()))
    assert e.extras["windows"] == (math.ceil((SIDE - window) / stride) + 1) ** 2


@pytest.mark.parametrize("window, stride", [(4, 2), (5, 4)])
def test_window_occlusion_of_colour_images_equals_captum_occlusion(colour, window, stride):
    from captum.attr import Occlusion

    model, images = colour
    e = xaicore.explain(model, images, method="window-occlusion", window=window, stride=stride,
                        baseline="blurred")
    x = torch.from_numpy(images).reshape(3, 12, 12, 3).permute(0, 3, 1, 2)
    base = registry.get_modality("images").baseline("blurred", model, torch.from_numpy(images))

    def on_images(batch):
        return model.module(batch.permute(0, 2, 3, 1).reshape(len(batch), 144, 3))

    theirs = Occlusion(on_images).attribute(
        x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=base.reshape(3, 12, 12, 3).permute(0, 3, 1, 2), target=torch.from_numpy(e.targets))
    theirs = theirs.permute(0, 2, 3, 1).reshape(3, 144, 3).numpy()
    assert_close(e.attributions, theirs, scale=float(np.abs(theirs).max()))


def test_occlusion_of_superpixels_is_the_drop_of_each_spread_over_its_pixels(model, X):
    e = xaicore.explain(model, X[:2], method="window-occlusion", unit="superpixels", baseline="mean")
    assert e.extras["unit"] == "superpixels" and e.extras["baseline"] == "mean"
    reference = registry.get_modality("images").substrate("mean", model, X[:2])
    fx = target_logits(model, X[:2], e.targets)
    for i in range(2):
        ids = e.extras["player_ids"][i]
        for p in range(int(e.extras["n_players"][i])):
            gone = np.where((ids == p)[:, None], reference[i], X[i])[None]
            drop = fx[i] - target_logits(model, gone, e.targets[i:i + 1])[0]
            share = e.attributions[i, ids == p, 0]
            assert_close(share, np.full(len(share), drop / len(share)), scale=abs(fx[i]))


@pytest.mark.parametrize("method, options, message", [
    ("shap", {"players": "words"}, "option players must be one of superpixels, patches for images, "
                                   "not 'words'"),
    ("shap", {"players": "patches", "patch": 17}, "patch 17 is larger than the 16x16 images"),
    ("shap", {"players": "patches", "compactness": 1.0}, "compactness shapes images' superpixels; "
                                                         "the patches of images take patch"),
    ("shap", {"absent": "zero"}, "option absent must be one of mean, blurred for images"),
    ("shap", {"algorithm": "deep"}, "algorithm 'deep' is per time step of a series; images take"),
    ("window-occlusion", {"n_segments": 4}, "n_segments shapes the players of unit=superpixels"),
    ("window-occlusion", {"unit": "tokens"}, "option unit must be one of superpixels, patches"),
    ("window-occlusion", {"window": 3, "stride": 4}, "stride 4 is larger than the window "
                                                      r"\(3 pixels\)"),
    ("window-occlusion", {"unit": "patches", "baseline": "zero"},
     "option baseline must be one of mean, blurred for images"),
])
def test_bad_options_on_images_are_one_line_errors(model, X, method, options, message):
    with pytest.raises(XaiError, match=message) as error:
        xaicore.explain(model, X[:2], method=method, **options)
    assert "\n" not in str(error.value)


def test_series_refuse_the_options_of_image_players():
    from test_shap import HybridNet, data, wrap

    series = wrap(HybridNet, seq_len=12)
    with pytest.raises(XaiError, match="players and absent are options of texts and images"):
        xaicore.explain(series, data(2, 12), method="shap", background=data(6, 12, seed=1), patch=4)


def test_explain_cli_runs_shap_and_occlusion_on_images(image_run, model, X):
    out = image_run / "explanations"
    result = xai("explain", "--run", image_run, "--method", "shap", "--method", "window-occlusion",
                 "--option", "shap.players=patches", "--option", "window-occlusion.unit=superpixels",
                 "--samples", "0:3", "--force")
    assert result.exit_code == 0, result.output
    shap = xaicore.load_explanation(next(out.rglob("shap.npz")))
    assert shap.extras["players"] == "patches" and shap.extras["absent"] == "blurred"
    assert shap.extras["player_ids"].shape == (3, SIDE * SIDE)
    occlusion = xaicore.load_explanation(next(out.rglob("window-occlusion.npz")))
    assert occlusion.extras["unit"] == "superpixels"
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = xai("explain", "--run", image_run, "--method", "shap", "--option", "shap.players=words",
              "--samples", "0:3", "--force")
    assert bad.exit_code != 0 and "option players must be one of superpixels, patches" in bad.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
