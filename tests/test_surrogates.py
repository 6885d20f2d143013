"""``kernel-shap`` and ``lime`` over the players of shap: a linear model's known values, exact and
sampled KernelSHAP against the Shapley formula and the exact ``shap`` algorithm, both against
captum's ``KernelShap`` and ``Lime`` given the same coalitions, a closed-form weighted ridge oracle,
seeds, refusals, texts and images, and the CLI (explain, evaluate, list) on a GunPoint run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from conftest import assert_evaluated_and_reported
from test_shap import FirstHalf, HybridNet, Linear, brute_force_shapley, data, wrap
from tolerances import assert_close, is_close
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.methods import result_name

METHODS = ("kernel-shap", "lime")


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def per_segment(attributions: np.ndarray, bounds: list[int]) -> np.ndarray:
    """Attributions summed over each segment's steps: ``[sample, segment * feature]`` numbered as
    shap's players (player ``f * segments + s``)."""
    sums = np.stack([attributions[:, a:b].sum(1) for a, b in zip(bounds[:-1], bounds[1:])], 1)
    return sums.transpose(0, 2, 1).reshape(len(attributions), -1).astype(np.float64)


def linear_contributions(model, X: np.ndarray, base: np.ndarray, target: int,
                         bounds: list[int]) -> np.ndarray:
    """A linear model's Shapley values (and its LIME coefficients without penalty): each segment's
    ``sum w (x - base)``, the weights read off the network (normalisation std 2)."""
    w = model.network.fc.weight[target].detach().double().numpy().reshape(X.shape[1:]) / 2.0
    return per_segment(w * (X - base), bounds)


@pytest.mark.parametrize("absent", ["mean", "zero"])
def test_kernel_shap_of_a_linear_model_is_the_closed_form_from_few_coalitions(absent):
    """16 players, 40 drawn coalitions (not every one of the 65534): an additive game is fitted
    exactly by any coalitions that determine it."""
    model, X, background = wrap(Linear, n_features=2, seq_len=16), data(3, 16), data(8, 16, seed=1)
    e = xaicore.explain(model, X, method="kernel-shap", background=background, n_segments=8,
                        n_samples=40, absent=absent, target=2)
    assert not e.extras["exact"].any()
    base = background.mean(0) if absent == "mean" else np.zeros(X.shape[1:])
    expected = linear_contributions(model, X, base, 2, e.extras["segment_bounds"])
    assert_close(per_segment(e.attributions, e.extras["segment_bounds"]), expected)
    assert_close(e.attributions[:, 0], e.attributions[:, 1])  # a segment's steps share its value


def test_kernel_shap_of_a_linear_model_equals_captums_kernel_shap():
    """captum draws its own coalitions; on an additive game both give the closed form."""
    from captum.attr import KernelShap

    model, X, background = wrap(Linear, n_features=2, seq_len=16), data(3, 16), data(8, 16, seed=1)
    e = xaicore.explain(model, X, method="kernel-shap", background=background, n_segments=4,
                        n_samples=60, target=1)
    x = torch.from_numpy(X)
    mask = torch.tensor([[f * 4 + t * 4 // 16 for f in range(2)] for t in range(16)])
    theirs = KernelShap(model.module).attribute(
        x, baselines=torch.from_numpy(background.mean(0, keepdims=True)).expand_as(x), target=1,
        feature_mask=mask[None].expand_as(x), n_samples=200).numpy()
    # captum gives every cell its segment's whole value; ours spread evenly over the 4 steps
    assert_close(per_segment(e.attributions, e.extras["segment_bounds"]),
                 per_segment(theirs, e.extras["segment_bounds"]) / 4, rtol=1e-4)


def test_kernel_shap_with_every_coalition_is_the_shapley_value_of_the_same_game():
    """10 players, 1022 coalitions within n_samples: exact, against the textbook formula and
    against shap's exact algorithm on the same game (its background one series, the baseline)."""
    model, X, background = wrap(FirstHalf, n_features=1, seq_len=10), data(3, 10, 1), \
        data(9, 10, 1, seed=1)
    e = xaicore.explain(model, X, method="kernel-shap", background=background, n_samples=1022,
                        target=1)
    assert e.extras["exact"].all() and e.extras["segment_bounds"] == list(range(11))
    base = background.mean(0, keepdims=True)
    formula = np.stack([brute_force_shapley(model, X[i], base, 1, list(range(11))) for i in range(3)])
    assert_close(e.attributions[..., 0], formula, scale=float(np.abs(formula).max()))
    shap = xaicore.explain(model, X, method="shap", background=base, algorithm="exact", target=1)
    assert_close(e.attributions, shap.attributions, scale=float(np.abs(formula).max()))
    assert e.extras["additivity_error"].max() < 1e-5 * np.abs(e.extras["model_output"]).max()


def test_sampled_kernel_shap_approaches_the_exact_values():
    """12 players (4094 coalitions) of a non-linear model: the error against the formula falls as
    the drawn coalitions grow, and every draw sums exactly to f(x) - f(reference)."""
    model, X, background = wrap(FirstHalf, n_features=1, seq_len=12), data(4, 12, 1), \
        data(9, 12, 1, seed=1)
    base = background.mean(0, keepdims=True)
    exact = np.stack([brute_force_shapley(model, X[i], base, 1, list(range(13))) for i in range(4)])
    errors = []
    for n_samples in (32, 4000):
        e = xaicore.explain(model, X, method="kernel-shap", background=background,
                            n_samples=n_samples, target=1)
        assert not e.extras["exact"].any()
        gap = e.extras["model_output"].astype(np.float64) - e.extras["base_value"]
        assert_close(e.attributions.astype(np.float64).sum((1, 2)), gap, scale=float(np.abs(gap).max()))
        errors.append(np.linalg.norm(e.attributions[..., 0] - exact, axis=1)
                      / np.linalg.norm(exact, axis=1))
    assert errors[1].mean() < errors[0].mean() / 2
    assert errors[1].max() < 0.02  # a sampled estimate: within 2% (L2) of the exact values


def replay(monkeypatch, draws: torch.Tensor) -> None:
    """captum's KernelShap coalition generator made to yield its all-present and empty coalitions
    (as its own does) then our ``draws``."""
    from captum.attr import KernelShap

    def generator(self, original_inp, **kwargs):
        m = draws.shape[1]
        for row in (torch.ones(m), torch.zeros(m), *draws):
            yield row[None].long()

    monkeypatch.setattr(KernelShap, "kernel_shap_perturb_generator", generator)


def test_kernel_shap_equals_captums_kernel_shap_given_the_same_coalitions(monkeypatch):
    """A non-linear model, 8 players, 60 coalitions drawn by us and fed to captum (after its
    all-present and empty ones). captum imposes efficiency by weighting those two 10^6 times the
    others, we impose it exactly: equal within that approximation."""
    from captum.attr import KernelShap

    from xai_shap.surrogates import kernel_coalitions

    model, X, background = wrap(HybridNet, n_features=2, seq_len=12), data(3, 12), \
        data(8, 12, seed=1)
    e = xaicore.explain(model, X, method="kernel-shap", background=background, n_segments=4,
                        n_samples=60, seed=3)
    draws = kernel_coalitions(8, 60, 1, 3)[0][0]  # every sample draws from a generator seeded 3
    replay(monkeypatch, draws)
    x = torch.from_numpy(X)
    mask = torch.tensor([[f * 4 + t * 4 // 12 for f in range(2)] for t in range(12)])
    base = torch.from_numpy(background.mean(0, keepdims=True))
    bounds = e.extras["segment_bounds"]
    for i in range(3):
        theirs = KernelShap(model.module).attribute(
            x[i:i + 1], baselines=base, target=int(e.targets[i]), feature_mask=mask[None],
            n_samples=62).numpy()
        ours = per_segment(e.attributions[i:i + 1], bounds)
        assert_close(ours, per_segment(theirs, bounds) / 3, rtol=1e-3)  # segments of 3 steps


def lime_kernel(distance: str, width: float):
    """The similarity written for captum's Lime: LIME's exponential kernel of the distance of the
    interpretable (binary) sample to the all-present one."""
    def similarity(original, perturbed, interpretable, **kwargs):
        z = interpretable.double()[0]
        ones = torch.ones_like(z)
        d = 1 - torch.nn.functional.cosine_similarity(z, ones, dim=0) if distance == "cosine" \
            else torch.linalg.norm(z - ones)
        return torch.exp(-d ** 2 / (2 * width ** 2))
    return similarity


@pytest.mark.parametrize("distance, width, alpha", [("cosine", 0.25, 1.0), ("euclidean", 2.0, 0.1),
                                                    ("cosine", 0.5, 0.0)])
def test_lime_equals_captums_lime_given_the_same_samples_and_kernel(distance, width, alpha):
    """Our coalitions fed to captum's Lime through its perturb_func (LIME's first sample is the
    input itself), the kernel as a similarity_func, scikit-learn's Ridge (LIME's surrogate)."""
    from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnRidge
    from captum.attr import Lime

    from xai_shap.surrogates import lime_coalitions

    model, X, background = wrap(HybridNet, n_features=2, seq_len=12), data(3, 12), \
        data(8, 12, seed=1)
    e = xaicore.explain(model, X, method="lime", background=background, n_segments=3,
                        n_samples=80, distance=distance, kernel_width=width, alpha=alpha, seed=5)
    draws = iter(())
    x = torch.from_numpy(X)
    mask = torch.tensor([[f * 3 + t * 3 // 12 for f in range(2)] for t in range(12)])
    base = torch.from_numpy(background.mean(0, keepdims=True))
    bounds = e.extras["segment_bounds"]
    surrogate = SkLearnRidge(alpha=alpha) if alpha else SkLearnLinearRegression()
    lime = Lime(model.module, interpretable_model=surrogate,
                similarity_func=lime_kernel(distance, width),
                perturb_func=lambda original, **kwargs: next(draws)[None].long())
    for i in range(3):
        draws = iter(lime_coalitions(6, 80, 1, 5)[0])
        theirs = lime.attribute(x[i:i + 1], baselines=base, target=int(e.targets[i]),
                                feature_mask=mask[None], n_samples=80).numpy()
        ours = per_segment(e.attributions[i:i + 1], bounds)
        assert_close(ours, per_segment(theirs, bounds) / 4, rtol=1e-4)  # float32 in sklearn


def test_lime_is_the_closed_form_weighted_ridge_and_a_linear_models_weights():
    """The coefficients against weighted least squares written as one augmented lstsq (the model
    evaluated here on inputs built from the coalitions); a linear model's coefficients without
    penalty are its segment contributions and the intercept is f(reference)."""
    from xai_shap.surrogates import lime_coalitions

    model, X, background = wrap(HybridNet, n_features=2, seq_len=12), data(2, 12), \
        data(8, 12, seed=1)
    e = xaicore.explain(model, X, method="lime", background=background, n_segments=2,
                        n_samples=50, alpha=0.5, seed=2)
    z = lime_coalitions(4, 50, 1, 2)[0].numpy()
    present = z[:, np.array([[f * 2 + t * 2 // 12 for f in range(2)] for t in range(12)])]
    base = background.mean(0)
    d = 1 - np.sqrt(z.sum(1)) / 2  # cosine distance to the all-present of 4 players
    w = np.exp(-d ** 2 / (2 * 0.25 ** 2))
    for i in range(2):
        y = model.logits(np.where(present, X[i], base).astype(np.float32))[:, int(e.targets[i])]
        design = np.concatenate([np.sqrt(w)[:, None] * np.c_[np.ones(50), z],
                                 np.c_[np.zeros((4, 1)), np.sqrt(0.5) * np.eye(4)]])
        coef = np.linalg.lstsq(design, np.r_[np.sqrt(w) * y, np.zeros(4)], rcond=None)[0]
        assert_close(per_segment(e.attributions[i:i + 1], e.extras["segment_bounds"])[0], coef[1:],
                     scale=float(np.abs(coef[1:]).max()))
        assert_close(e.extras["intercept"][i], coef[0])

    linear, Xl, bl = wrap(Linear, n_features=2, seq_len=16), data(3, 16), data(8, 16, seed=1)
    e = xaicore.explain(linear, Xl, method="lime", background=bl, n_segments=4, alpha=0.0, target=0)
    expected = linear_contributions(linear, Xl, bl.mean(0), 0, e.extras["segment_bounds"])
    assert_close(per_segment(e.attributions, e.extras["segment_bounds"]), expected)
    assert_close(e.extras["intercept"], e.extras["base_value"])
    assert_close(e.extras["score"], np.ones(3))


def model_defaults(method: str) -> dict:
    from xaicore.plugins import registry

    return dict(registry.get_explainer(method).defaults)


@pytest.mark.parametrize("method", METHODS)
def test_seeded_and_a_sample_alone_as_in_a_batch(method, monkeypatch):
    import xai_shap.surrogates as surrogates

    model, X, background = wrap(HybridNet, n_features=2, seq_len=12), data(4, 12), \
        data(8, 12, seed=1)
    options = {"background": background, "n_samples": 64, "n_segments": 6}
    one = xaicore.explain(model, X, method=method, **options)
    alone = xaicore.explain(model, X[2:3], method=method, target=int(one.targets[2]), **options)
    assert_close(alone.attributions, one.attributions[2:3], rtol=1e-4)  # other batch splits
    with monkeypatch.context() as patch:  # regressions solved one sample at a time
        patch.setattr(surrogates, "pass_budget", lambda device: 1)
        assert len(surrogates.groups(surrogates.build_game(
            model, torch.from_numpy(X), torch.from_numpy(one.targets), {
                **model_defaults(method), **options}, method), 64)) == 4
        apart = xaicore.explain(model, X, method=method, **options)
    assert_close(apart.attributions, one.attributions, rtol=1e-4)
    passes = xaicore.explain(model, X, method=method, batch_size=7, **options)  # 7 rows a pass
    assert_close(passes.attributions, one.attributions, rtol=1e-4)
    again = xaicore.explain(model, X, method=method, **options)
    assert_close(again.attributions, one.attributions)
    other = xaicore.explain(model, X, method=method, seed=1, **options)
    assert not is_close(other.attributions, one.attributions)


@pytest.mark.parametrize("method, options, message", [
    ("kernel-shap", {"players": "words"}, "players is an option of texts and images"),
    ("lime", {"n_segments": 13}, "n_segments 13 is more than the series' 12 steps"),
    ("kernel-shap", {"absent": "mask"}, "option absent must be one of zero, mean, blurred, random"),
    ("lime", {"kernel_width": 0.0}, "option 'kernel_width' must be in"),
    ("lime", {"distance": "manhattan"}, "distance"),
    ("lime", {"n_samples": 1}, "option 'n_samples' must be in"),
    ("kernel-shap", {"n_samples": 3, "n_segments": 6}, "do not determine the values of 12 players"),
    ("lime", {"n_samples": 4, "n_segments": 6, "alpha": 0.0}, "raise n_samples or alpha"),
    ("kernel-shap", {"absent": "mean", "background": None}, "baseline 'mean'"),
])
def test_bad_options_are_refused_in_one_line(method, options, message):
    model, X = wrap(HybridNet, n_features=2, seq_len=12), data(2, 12)
    with pytest.raises(XaiError, match=message):
        xaicore.explain(model, X, method=method, **{"background": data(4, 12, seed=1), **options})


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    from test_text import train_text_run

    return xaicore.load_run(train_text_run(tmp_path_factory.mktemp("texts")))


def test_texts_over_words_kernel_shap_exact_equals_shap_and_lime_spreads_words(text_model):
    texts = ["a wonderful moving film", "dull", "a joyful warmly acted films"]
    e = xaicore.explain(text_model, texts, method="kernel-shap")
    shap = xaicore.explain(text_model, texts, method="shap", algorithm="exact")
    assert e.extras["exact"].all() and e.extras["players"] == "words"
    scale = float(np.nanmax(np.abs(shap.attributions)))
    assert_close(e.attributions, shap.attributions, scale=scale, equal_nan=True)
    assert_close(e.extras["word_values"], shap.extras["word_values"], scale=scale, equal_nan=True)
    lime = xaicore.explain(text_model, texts, method="lime", players="tokens", n_samples=200)
    special = np.isin(lime.inputs[..., 0], sorted(text_model.tokenizer.special_ids))
    assert (lime.attributions[..., 0][special] == 0).all()
    assert np.isfinite(lime.extras["word_values"][0, :4]).all()
    with pytest.raises(XaiError, match="n_segments cuts series into time segments"):
        xaicore.explain(text_model, texts, method="lime", n_segments=3)


@pytest.fixture(scope="module")
def image_model():
    """An untrained (seeded) CNN on 12x12 colour images of four noisy quadrants."""
    from xai_image.modality import image_model as make
    from xai_image.networks import ImageCNN

    torch.manual_seed(0)
    network = ImageCNN(3, 12, 12, 3, channels=4, dropout=0.0)
    model = make(network, 12, 12, name="colour-cnn", class_names=["a", "b", "c"],
                 feature_names=["red", "green", "blue"], mean=[0.4, 0.5, 0.6], std=[0.3, 0.25, 0.2],
                 hyperparameters={}, dataset="")
    rng = np.random.default_rng(0)
    quadrant = (np.arange(12)[:, None] >= 6) * 2 + (np.arange(12)[None, :] >= 6)
    images = rng.uniform(0, 1, (3, 4, 3))[:, quadrant] + rng.normal(0, 0.02, (3, 12, 12, 3))
    return model, images.reshape(3, 144, 3).astype(np.float32)


@pytest.mark.parametrize("players, absent", [("patches", "mean"), ("superpixels", "blurred")])
def test_images_kernel_shap_exact_equals_shap_and_lime_runs(image_model, players, absent):
    model, images = image_model
    options = {"players": players, "absent": absent, "background": images,
               **({"patch": 6} if players == "patches" else {"n_segments": 8})}
    e = xaicore.explain(model, images, method="kernel-shap", **options)
    shap = xaicore.explain(model, images, method="shap", algorithm="exact", **options)
    assert e.extras["exact"].all()
    assert_close(e.attributions, shap.attributions, scale=float(np.abs(shap.attributions).max()))
    lime = xaicore.explain(model, images, method="lime", n_samples=100, **options)
    ids = lime.extras["player_ids"][0]
    first = lime.attributions[0, ids == 0]
    assert_close(first, np.full_like(first, first[0, 0]))  # spread evenly over pixels and channels


@pytest.fixture(scope="module")
def fcn_run(tmp_path_factory):
    """A small fcn trained briefly on GunPoint."""
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.training import train

    run = tmp_path_factory.mktemp("surrogates") / "gp"
    train(dataset_spec("GunPoint"), "fcn", run, epochs=3, seed=0, progress=False)
    return run


def test_cli_lists_explains_streams_evaluates_against_random_and_reports(fcn_run, tmp_path):
    import json

    listing = xai("list", "--json")
    assert listing.exit_code == 0
    described = {row["name"]: row["description"] for row in json.loads(listing.output)["explainers"]}
    for method in METHODS:  # what each can explain
        assert all(unit in described[method] for unit in ("time segments (series)", "words and "
                   "tokens (texts)", "superpixels and patches (images)")), described[method]
    methods = [arg for method in METHODS for arg in ("--method", method)]
    options = ("--option", "kernel-shap.n_samples=128", "--option", "lime.n_samples=128")
    result = xai("explain", "--run", fcn_run, *methods, *options, "--samples", "0:4", "--no-figures")
    assert result.exit_code == 0, result.output
    model = xaicore.load_run(fcn_run)
    from xaicore.data.loading import load_dataset
    from xaicore.models.checkpoints import load_checkpoint

    background = load_dataset(load_checkpoint(fcn_run / "checkpoint.pt")["dataset"]).train.X
    stored = {method: xaicore.load_explanation(fcn_run / "explanations" /
                                               f"{result_name(method, 'predicted')}.npz")
              for method in METHODS}
    X = stored["lime"].inputs
    np.save(tmp_path / "four.npy", X)  # the same samples streamed into stores
    streamed = xai("explain", "--run", fcn_run, "--input", tmp_path / "four.npy", *methods, *options,
                   "--out", tmp_path / "streamed")
    assert streamed.exit_code == 0, streamed.output
    for method in METHODS:
        direct = xaicore.explain(model, X, method=method, n_samples=128, background=background)
        scale = float(np.abs(direct.attributions).max())
        assert_close(stored[method].attributions, direct.attributions, scale=scale)
        store = xaicore.load_explanation(tmp_path / "streamed" / f"{result_name(method, 'predicted')}.zarr")
        assert_close(store.attributions[:], direct.attributions, scale=scale)
    assert_evaluated_and_reported(fcn_run, METHODS, "--workers", "1")


def test_the_ray_engine_gives_what_the_local_engine_gives(fcn_run, tmp_path):
    ray = pytest.importorskip("ray")
    from xaicore.data.loading import load_dataset

    np.save(tmp_path / "input.npy", load_dataset({"name": "GunPoint"}).test.X[:8])  # 3 batches
    methods = [arg for method in METHODS for arg in ("--method", method)]
    options = ("--option", "kernel-shap.n_samples=64", "--option", "lime.n_samples=64")
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
            result = xai("explain", "--run", fcn_run, "--input", tmp_path / "input.npy", *methods,
                         *options, "--batch-size", "3", "--engine", engine, "--out", tmp_path / engine,
                         *extra)
            assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    for method in METHODS:
        name = f"{result_name(method, 'predicted')}.zarr"
        a = xaicore.load_explanation(tmp_path / "local" / name).load()
        b = xaicore.load_explanation(tmp_path / "ray" / name).load()
        assert_close(b.attributions, a.attributions, rtol=1e-4)  # other processes and batch splits


def known_game():
    """12 players (4096 coalitions, so n_samples below draws) of a non-linear model, its
    Shapley values by the textbook formula and LIME's every-coalition fit."""
    from oracles import lime_every_coalition

    model, X, background = wrap(FirstHalf, n_features=1, seq_len=12), data(4, 12, 1), \
        data(9, 12, 1, seed=1)
    base = background.mean(0, keepdims=True)
    shapley = np.stack([brute_force_shapley(model, X[i], base, 1, list(range(13))) for i in range(4)])
    lime = np.stack([lime_every_coalition(model.module, X[i], base[0], 1, 0.25) for i in range(4)])
    return model, X, background, {"kernel-shap": shapley, "lime": lime}


SE_OPTIONS = {"kernel-shap": {}, "lime": {"alpha": 0.0}}


@pytest.mark.parametrize("method", METHODS)
def test_standard_errors_shrink_as_one_over_root_n_and_cover_the_known_values(method):
    """The sandwich standard errors halve when the coalitions are four times as many, and the
    sampled values lie within a few of them of the values every coalition gives."""
    model, X, background, known = known_game()
    errors, se = {}, {}
    for n_samples in (300, 1200):
        e = xaicore.explain(model, X, method=method, background=background, n_samples=n_samples,
                            target=1, **SE_OPTIONS[method])
        se[n_samples] = e.extras["standard_error"][..., 0].astype(np.float64)
        errors[n_samples] = e.attributions[..., 0].astype(np.float64) - known[method]
        assert se[n_samples].shape == X.shape[:2] and (se[n_samples] > 0).all()
        relative = np.linalg.norm(se[n_samples], axis=1) / np.linalg.norm(e.attributions[..., 0], axis=1)
        assert_close(e.extras["relative_standard_error"], relative)
        z = np.abs(errors[n_samples]) / se[n_samples]
        assert (z < 2).mean() > 0.85 and z.max() < 4.5, z
    ratio = np.median(se[300] / se[1200])
    assert 1.7 < ratio < 2.3, ratio  # sqrt(1200 / 300) = 2
    assert np.abs(errors[1200]).mean() < np.abs(errors[300]).mean()


@pytest.mark.parametrize("method", METHODS)
def test_standard_errors_match_the_spread_of_values_over_seeds(method):
    """Over 24 seeds (independent coalitions), the values' standard deviation is what one draw's
    standard error says it is."""
    model, X, background, _ = known_game()
    draws = [xaicore.explain(model, X, method=method, background=background, n_samples=300,
                             target=1, seed=seed, **SE_OPTIONS[method]) for seed in range(24)]
    spread = np.std([e.attributions[..., 0] for e in draws], axis=0, ddof=1)
    said = np.mean([e.extras["standard_error"][..., 0] for e in draws], axis=0)
    ratio = np.median(spread / said)
    assert 0.8 < ratio < 1.25, ratio


def test_exact_kernel_shap_and_a_linear_models_lime_have_no_standard_error():
    model, X, background = wrap(Linear, n_features=1, seq_len=8), data(3, 8, 1), data(9, 8, 1, seed=1)
    exact = xaicore.explain(model, X, method="kernel-shap", background=background, n_samples=254)
    assert exact.extras["exact"].all()
    # no coalitions were drawn: the error is set to zero, not estimated
    assert (exact.extras["standard_error"] == 0).all()
    lime = xaicore.explain(model, X, method="lime", background=background, n_samples=200, alpha=0.0)
    scale = float(np.abs(lime.attributions).max())
    assert_close(lime.extras["standard_error"], np.zeros(X.shape), scale=scale)  # no residuals
