"""Counterfactual explainers native-guide and comte (xai-counterfactual) and their evaluation.

Validity is checked by running the model on each returned counterfactual, not by reading the
result's flag; the nearest unlike neighbour and the windows are checked against direct searches
written here."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from tolerances import assert_close, assert_identical
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation

SPEC = {"name": "synthetic-one-channel", "n_train": 400, "n_test": 64, "seq_len": 40,
        "n_features": 4, "signal": 3.0, "seed": 0}


@pytest.fixture(scope="module")
def gunpoint(gunpoint_run):
    import xaicore
    from xaicore.data.loading import dataset_spec

    return xaicore.load_run(gunpoint_run), xaicore.load_dataset(dataset_spec("GunPoint"))


@pytest.fixture(scope="module")
def one_channel(tmp_path_factory):
    """fcn trained on synthetic-one-channel (4 features; only the middle one's sign is the class)."""
    import xaicore

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("counterfactual") / "run"
    metrics = xaicore.train(SPEC, "fcn", run, epochs=15, progress=False,
                            params={"filters": [16, 32, 16], "kernel_sizes": [7, 5, 3]})
    assert metrics["test_accuracy"] > 0.9
    return xaicore.load_run(run), xaicore.load_dataset(SPEC)


def counterfactuals(model, dataset, method, n=16, **options) -> Explanation:
    import xaicore

    return xaicore.explain(model, dataset.test.X[:n], method=method, background=dataset.train.X,
                           **options)


def assert_valid(model, e: Explanation) -> None:
    """The model run on each counterfactual predicts its target; the result's fields agree."""
    cf = e.extras["counterfactual"]
    predicted = model.logits(cf).argmax(1)
    assert (predicted == e.targets).all(), (predicted, e.targets)
    assert e.extras["valid"].all() and (e.extras["counterfactual_prediction"] == predicted).all()
    assert_close(e.extras["counterfactual_probability"], model.predict_proba(cf).max(1))
    assert e.kind == "counterfactual"
    assert_identical(e.extras["changed"], cf != e.inputs)  # the mask is defined as this comparison
    # the values are counterfactual - input, computed once in float32: the same subtraction
    assert_identical(e.attributions, cf - e.inputs)
    assert (e.attributions[~e.extras["changed"]] == 0).all()


def runs_of(mask: np.ndarray) -> int:
    """Contiguous runs of True in a vector."""
    return int(np.sum(mask & ~np.concatenate([[False], mask[:-1]])))


def nearest_target_series(model, dataset, X, targets) -> np.ndarray:
    """Direct search: for each sample, the nearest train series (Euclidean, float64) that the
    model predicts as the sample's target."""
    train = dataset.train.X.astype(np.float64)
    classes = model.logits(dataset.train.X).argmax(1)
    out = []
    for x, t in zip(X.astype(np.float64), targets):
        members = np.flatnonzero(classes == t)
        distances = [np.sqrt(((train[i] - x) ** 2).sum()) for i in members]
        out.append(dataset.train.X[members[int(np.argmin(distances))]])
    return np.stack(out)


# ---------- native-guide on a univariate series (GunPoint) ----------

def test_native_guide_reaches_the_most_likely_other_class_with_one_window_of_its_nearest_unlike_neighbour(
        gunpoint):
    model, dataset = gunpoint
    e = counterfactuals(model, dataset, "native-guide")
    assert_valid(model, e)
    probabilities = model.predict_proba(dataset.test.X[:16])
    assert (e.targets == np.argsort(probabilities, 1)[:, -2]).all()  # default: most likely other
    nun = nearest_target_series(model, dataset, e.inputs, e.targets)
    assert_identical(e.extras["nearest_unlike"], nun)  # a train series, copied
    start, stop = e.extras["window"].T
    for i in range(e.n_samples):
        changed = e.extras["changed"][i, :, 0]
        assert runs_of(changed) == 1  # one contiguous window
        assert changed[start[i]:stop[i]].all() and not changed[:start[i]].any() \
            and not changed[stop[i]:].any()
        inside = slice(start[i], stop[i])
        assert_identical(e.extras["counterfactual"][i, inside], nun[i, inside])  # copied values
    assert (stop - start < e.inputs.shape[1]).all()  # sparser than the whole neighbour


def test_native_guide_takes_the_window_gradcam_ranks_highest_and_no_narrower_one_would_do(gunpoint):
    """Each window has the largest sum of the NUN's Grad-CAM map among windows of its width, and
    the best window one step narrower does not reach the target (the widening stopped at the
    first width that does)."""
    import xaicore

    model, dataset = gunpoint
    e = counterfactuals(model, dataset, "native-guide", n=8)
    nun = e.extras["nearest_unlike"]
    cam = xaicore.explain(model, nun, method="gradcam", target=e.targets)
    weights = np.abs(cam.attributions.astype(np.float64)).sum(2)
    for i, (start, stop) in enumerate(e.extras["window"]):
        width = stop - start
        sums = [weights[i, s:s + width].sum() for s in range(e.inputs.shape[1] - width + 1)]
        assert_close(weights[i, start:stop].sum(), max(sums))
        if width > 1:
            narrower = [weights[i, s:s + width - 1].sum() for s in range(e.inputs.shape[1] - width + 2)]
            s = int(np.argmax(narrower))
            candidate = e.inputs[i].copy()
            candidate[s:s + width - 1] = nun[i, s:s + width - 1]
            assert model.logits(candidate[None]).argmax(1)[0] != e.targets[i]


def test_a_target_the_model_already_predicts_is_a_one_line_error(gunpoint):
    import xaicore

    model, dataset = gunpoint
    X = dataset.test.X[:4]
    predicted = model.logits(X).argmax(1)
    with pytest.raises(XaiError, match="already predicts the target class") as info:
        xaicore.explain(model, X, method="native-guide", target=int(predicted[0]),
                        background=dataset.train.X)
    assert "\n" not in str(info.value)


def test_comte_refuses_univariate_series(gunpoint):
    import xaicore

    model, dataset = gunpoint
    with pytest.raises(XaiError, match="univariate series has one"):
        xaicore.explain(model, dataset.test.X[:2], method="comte", background=dataset.train.X)


def test_native_guide_with_a_non_gradcam_importance_and_a_refused_one(gunpoint):
    model, dataset = gunpoint
    e = counterfactuals(model, dataset, "native-guide", n=4, importance="saliency")
    assert_valid(model, e)
    assert e.extras["importance"] == "saliency"
    with pytest.raises(XaiError, match="importance must be an attribution method"):
        counterfactuals(model, dataset, "native-guide", n=2, importance="comte")


# ---------- multivariate (synthetic-one-channel) ----------

def test_native_guide_on_multivariate_series_changes_one_window_of_all_or_ranked_features(one_channel):
    model, dataset = one_channel
    every = counterfactuals(model, dataset, "native-guide", n=24)
    ranked = counterfactuals(model, dataset, "native-guide", n=24, channels="ranked")
    for e in (every, ranked):
        assert_valid(model, e)
        start, stop = e.extras["window"].T
        steps = np.arange(e.inputs.shape[1])
        window = (steps >= start[:, None]) & (steps < stop[:, None])
        expected = window[:, :, None] & e.extras["features"][:, None, :]
        assert_identical(e.extras["changed"], expected)  # continuous values: every copied cell differs
    assert every.extras["features"].all()
    assert ranked.extras["changed"].sum() < every.extras["changed"].sum()
    # the ranked features' window is the all-feature one: only features are dropped from it
    assert_identical(ranked.extras["window"], every.extras["window"])


def test_comte_swaps_whole_channels_the_fewest_and_finds_the_one_that_carries_the_label(one_channel):
    model, dataset = one_channel
    e = counterfactuals(model, dataset, "comte", n=24)
    assert_valid(model, e)
    source = dataset.train.X[e.extras["distractor"]]
    channels = e.extras["channels"]
    for i in range(e.n_samples):
        for f in range(e.inputs.shape[2]):
            expected = source[i, :, f] if channels[i, f] else e.inputs[i, :, f]
            assert_identical(e.extras["counterfactual"][i, :, f], expected)  # whole channels, copied
    assert_identical(e.extras["changed"].any(1), channels)  # continuous values: a swap changes all
    exhaustive = counterfactuals(model, dataset, "comte", n=24, search="exhaustive")
    assert_valid(model, exhaustive)
    assert (exhaustive.extras["channels"].sum(1) <= channels.sum(1)).all()  # the fewest there are
    carrier = dataset.info["carrier"]
    only_carrier = channels[:, carrier] & (channels.sum(1) == 1)
    assert only_carrier.mean() > 0.9, channels.sum(0)
    # two classes: the greedy step's most probable channel fails only when every channel fails,
    # so where more than one was swapped, no single channel of the distractor reaches the target
    for i in np.flatnonzero(channels.sum(1) > 1):
        for f in range(e.inputs.shape[2]):
            single = e.inputs[i].copy()
            single[:, f] = source[i, :, f]
            assert model.logits(single[None]).argmax(1)[0] != e.targets[i]


def test_variable_length_series_get_counterfactuals_within_their_own_length(tmp_path):
    """Padded series are explained at their own lengths: each counterfactual is NaN exactly on
    the padding, changes nothing there, and reaches its target."""
    import xaicore

    rng = np.random.default_rng(4)
    n, steps = 60, 30
    lengths = rng.integers(10, steps + 1, size=n)
    y = np.arange(n) % 2
    X = rng.normal(0, 0.3, size=(n, steps, 2)) + y[:, None, None]
    X[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0
    np.savez(tmp_path / "vl.npz", X=X, y=y, lengths=lengths)
    metrics = xaicore.train(str(tmp_path / "vl.npz"), "fcn", tmp_path / "run", epochs=30,
                            progress=False, params={"filters": [8, 8, 8]})
    assert metrics["test_accuracy"] > 0.9
    model, dataset = xaicore.load_run(tmp_path / "run"), xaicore.load_dataset(str(tmp_path / "vl.npz"))
    for method in ("native-guide", "comte"):
        e = counterfactuals(model, dataset, method, n=8)
        padding = np.arange(steps)[None, :] >= e.lengths[:, None]
        assert len(set(e.lengths.tolist())) > 1
        cf = e.extras["counterfactual"]
        assert_identical(np.isnan(cf).any(2), padding)
        assert not e.extras["changed"][padding].any()
        assert (model.logits(cf).argmax(1) == e.targets).all()
        valid = ~padding
        assert_identical(e.extras["changed"][valid], cf[valid] != e.inputs[valid])  # as defined


class PairNet(torch.nn.Module):
    """Class 1 when ``0.6 m0 + m1 m2`` (``m``: each feature's mean over time) exceeds 0.9: channel 0
    alone raises it most, yet only channels 1 and 2 together reach it."""

    def forward(self, x):
        m = x.mean(1)
        score = 0.6 * m[:, 0] + m[:, 1] * m[:, 2]
        return torch.stack([torch.full_like(score, 0.9), score], 1)


def test_comte_exhaustive_search_finds_fewer_channels_where_greedy_selection_cannot():
    """Greedy forward selection takes channel 0 first (the largest gain) and then needs all three;
    the exhaustive search (CoMTE's brute force) finds the pair {1, 2}."""
    import xaicore

    model = xaicore.wrap_model(PairNet(), n_classes=2, n_features=3)
    x, distractor = np.zeros((1, 4, 3), np.float32), np.ones((1, 4, 3), np.float32)
    found = {}
    for search in ("greedy", "exhaustive"):
        e = xaicore.explain(model, x, method="comte", background=distractor, search=search)
        assert_valid(model, e)
        found[search] = e.extras["channels"][0].tolist()
    assert found == {"greedy": [True, True, True], "exhaustive": [False, True, True]}
    with pytest.raises(XaiError, match="at most 10 channels"):
        xaicore.explain(xaicore.wrap_model(PairNet(), n_classes=2, n_features=11),
                        np.zeros((1, 4, 11), np.float32), method="comte",
                        background=np.ones((1, 4, 11), np.float32), search="exhaustive")


def test_native_guide_refuses_a_model_gradcam_cannot_explain_unless_told_another_importance():
    import xaicore

    model = xaicore.wrap_model(PairNet(), n_classes=2, n_features=3)
    x, distractor = np.zeros((1, 4, 3), np.float32), np.ones((1, 4, 3), np.float32)
    with pytest.raises(XaiError, match="ranks windows by gradcam, which cannot explain") as info:
        xaicore.explain(model, x, method="native-guide", background=distractor)
    assert "importance=" in str(info.value) and "\n" not in str(info.value)
    e = xaicore.explain(model, x, method="native-guide", background=distractor,
                        importance="saliency")
    assert_valid(model, e)


# ---------- metrics ----------

def test_counterfactual_measures_on_a_hand_computed_example():
    from xai_eval.counterfactuals import plausibility, proximity, segments, sparsity

    x = np.zeros((1, 5, 2))
    cf = x.copy()
    cf[0, 1, 0], cf[0, 2, 0], cf[0, 4, 1] = 1.0, -2.0, 3.0
    scores = proximity(x, cf)
    assert_close(scores["l1"], [6.0])
    assert_close(scores["l2"], [np.sqrt(14.0)])
    assert_close(scores["linf"], [3.0])
    changed = cf != x
    assert_close(sparsity(changed), [0.7])  # 3 of 10 cells changed
    assert_close(segments(changed), [2.0])  # t 1-2 of feature 0, t 4 of feature 1
    split = changed.copy()
    split[0, 1, 0] = False
    split[0, 0, 0] = True
    assert_close(segments(split), [3.0])  # t 0 and t 2 of feature 0, t 4 of feature 1
    train = np.stack([cf[0] + 1.0, cf[0] + 0.5, cf[0]])  # classes 0, 1, 0
    assert_close(plausibility(cf, np.array([1]), train, np.array([0, 1, 0])), [np.sqrt(10 * 0.25)])
    assert_close(plausibility(cf, np.array([0]), train, np.array([0, 1, 0])), [0.0], scale=1.0)
    # padding (NaN after a series' length) is no cell: left out of every measure
    short_x, short_cf = x.copy(), cf.copy()
    short_x[0, 4], short_cf[0, 4] = np.nan, np.nan
    valid = ~np.isnan(short_x)
    assert_close(proximity(short_x, short_cf)["l1"], [3.0])
    assert_close(sparsity((short_cf != short_x) & valid, valid), [0.75])  # 2 of 8 valid cells
    assert_close(plausibility(short_cf, np.array([1]), train, np.array([0, 1, 0])), [np.sqrt(8 * 0.25)])


def test_local_outlier_factor_is_scikit_learns_novelty_score():
    """The LOF of each counterfactual among its target class's train series equals scikit-learn's
    LocalOutlierFactor(novelty=True) fitted on that class (an independent implementation)."""
    from sklearn.neighbors import LocalOutlierFactor

    from xai_eval.counterfactuals import LOF_NEIGHBOURS, local_outlier_factor

    rng = np.random.default_rng(1)
    train, classes = rng.normal(size=(60, 5, 2)), np.arange(60) % 2
    queries, targets = rng.normal(size=(7, 5, 2)) * 1.5, np.array([0, 1, 0, 1, 1, 0, 0])
    expected = np.empty(7)
    for c in (0, 1):
        lof = LocalOutlierFactor(n_neighbors=LOF_NEIGHBOURS, novelty=True)
        lof.fit(train[classes == c].reshape(-1, 10))
        expected[targets == c] = -lof.score_samples(queries[targets == c].reshape(-1, 10))
    assert_close(local_outlier_factor(queries, targets, train, classes), expected)
    inlier = local_outlier_factor(train[:1] + 1e-3, np.array([0]), train, classes)
    outlier = local_outlier_factor(train[:1] + 10.0, np.array([0]), train, classes)
    assert inlier[0] < 1.5 < 5 < outlier[0]


# ---------- the command line ----------

def test_cli_explains_a_chosen_target_and_all_leaves_counterfactuals_out(gunpoint_run, tmp_path):
    import xaicore
    from xaicore.data.loading import dataset_spec
    from xaicore.explaining.methods import method_names

    run = tmp_path / "run"
    shutil.copytree(gunpoint_run, run)
    model = xaicore.load_run(run)
    test = xaicore.load_dataset(dataset_spec("GunPoint")).test
    other = model.class_names[1 - int(model.logits(test.X[:1]).argmax(1)[0])]
    result = CliRunner().invoke(cli, ["explain", "--run", str(run), "--method", "native-guide",
                                      "--samples", "0:1", "--target", other])
    assert result.exit_code == 0, result.output
    e = Explanation.load(run / "explanations" / f"native-guide@{other}.npz")
    assert e.kind == "counterfactual" and e.target_names == [other]
    assert_valid(model, e)
    names = method_names(("all",), model)
    assert "gradcam" in names and "native-guide" not in names and "comte" not in names


def test_streamed_counterfactuals_are_stored_with_their_extras(gunpoint_run, tmp_path):
    """``xai explain --input`` streams counterfactuals into a store like any method's results."""
    import xaicore
    from xaicore.data.loading import dataset_spec
    from xaicore.explaining.store import load_explanation

    run = tmp_path / "run"
    shutil.copytree(gunpoint_run, run)
    X = xaicore.load_dataset(dataset_spec("GunPoint")).test.X[:12]
    np.save(tmp_path / "new.npy", X)
    result = CliRunner().invoke(cli, ["explain", "--run", str(run), "--method", "native-guide",
                                      "--input", str(tmp_path / "new.npy"), "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    stored = load_explanation(run / "explanations" / "new" / "native-guide.zarr").select(range(12))
    assert_identical(stored.inputs, X)  # the inputs as written
    assert_valid(xaicore.load_run(run), stored)


def test_the_ray_engine_gives_the_local_engines_counterfactuals(gunpoint_run, tmp_path):
    ray = pytest.importorskip("ray")
    import xaicore
    from xaicore.data.loading import dataset_spec
    from xaicore.explaining.store import load_explanation

    run = tmp_path / "run"
    shutil.copytree(gunpoint_run, run)
    np.save(tmp_path / "new.npy", xaicore.load_dataset(dataset_spec("GunPoint")).test.X[:20])
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
            result = CliRunner().invoke(cli, [
                "explain", "--run", str(run), "--input", str(tmp_path / "new.npy"), "--method",
                "native-guide", "--batch-size", "6", "--engine", engine,
                "--out", str(tmp_path / engine), *extra])
            assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    local, remote = (load_explanation(tmp_path / e / "native-guide.zarr").load()
                     for e in ("local", "ray"))
    # the same search on the same batches in other processes: the same windows and series
    assert_identical(remote.extras["window"], local.extras["window"])
    assert_identical(remote.extras["counterfactual"], local.extras["counterfactual"])
    assert_valid(xaicore.load_run(run), remote)


def test_cli_evaluates_native_guide_against_the_nearest_unlike_neighbour(gunpoint_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(gunpoint_run, run)
    result = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--method", "native-guide",
                                      "--samples", "16", "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(run / "evaluation" / "counterfactuals.csv").set_index("method")
    nun, ng = table.loc["nearest-unlike-neighbour"], table.loc["native-guide"]
    assert nun["validity"] == 1.0 and nun["sparsity"] == 0.0  # the NUN differs everywhere
    assert ng["validity"] == 1.0 and ng["samples"] == 16
    # every cell is the input's or the NUN's, so each sample's L1 is at most the NUN's
    assert ng["l1"] <= nun["l1"] and ng["sparsity"] > 0
    assert ng["sparsity_vs_nun"] == "better than NUN" and ng["l1_vs_nun"] == "better than NUN"
    again = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--method", "native-guide"])
    assert again.exit_code != 0 and "--force" in again.output
    univariate = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--method", "comte",
                                          "--force"])
    assert univariate.exit_code != 0 and "comte cannot explain model" in univariate.output
    mixed = CliRunner().invoke(cli, ["evaluate", "--run", str(run), "--method", "native-guide",
                                     "--method", "gradcam", "--force"])
    assert mixed.exit_code != 0 and "counterfactual methods are scored on their own" in mixed.output


# ---------- views ----------

def test_plot_overlays_the_series_and_its_counterfactual_with_the_changed_cells_shaded(one_channel):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    model, dataset = one_channel
    e = counterfactuals(model, dataset, "native-guide", n=2, channels="ranked")
    fig = e.plot(0)
    try:
        changed = e.extras["changed"][0]
        axes = fig.axes
        assert len(axes) == e.inputs.shape[2]  # every feature (4) drawn, in order
        for f, ax in enumerate(axes):
            series, counterfactual = (line.get_ydata() for line in ax.get_lines())
            assert_identical(series, e.inputs[0, :, f])  # the arrays as drawn
            assert_identical(counterfactual, e.extras["counterfactual"][0, :, f])
            shaded = [p for p in ax.patches if isinstance(p, (Polygon, Rectangle))]
            assert len(shaded) == runs_of(changed[:, f])
        pred, cf_pred = int(e.predictions[0]), int(e.extras["counterfactual_prediction"][0])
        title = axes[0].get_title()
        assert f"{e.class_names[pred]} ({e.probabilities[0, pred]:.2f}) -> " \
               f"{e.class_names[cf_pred]} " in title and "valid" in title
    finally:
        plt.close(fig)


@pytest.mark.browser
def test_report_overlays_the_chosen_samples_series_and_counterfactual_in_chromium(gunpoint_run,
                                                                                  tmp_path):
    """The report draws each counterfactual result: choosing a sample shows its panel (the series
    and counterfactual as embedded, one shaded run per changed window), nothing is fetched, the
    console stays clean; the evaluation's counterfactual table is there."""
    from browser import browser_page

    run = tmp_path / "run"
    shutil.copytree(gunpoint_run, run)
    for args in (["explain", "--run", str(run), "--method", "native-guide", "--method", "gradcam",
                  "--samples", "0:6"],
                 ["evaluate", "--run", str(run), "--method", "native-guide", "--samples", "8",
                  "--bootstrap", "200"],
                 ["report", "--run", str(run)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    e = Explanation.load(run / "explanations" / "native-guide.npz")
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto((run / "report.html").as_uri())
        page.wait_for_load_state("load")
        root = '.counterfactuals[data-method="native-guide"]'
        visible = f"{root} .cf-sample:not([hidden])"
        assert page.eval_on_selector_all(visible, "els => els.map(e => e.dataset.sample)") == ["0"]
        page.select_option(f"{root} select", "3")
        assert page.eval_on_selector_all(visible, "els => els.map(e => e.dataset.sample)") == ["3"]
        title = page.inner_text(f"{visible} .cf-title")
        assert f"-> {e.class_names[int(e.extras['counterfactual_prediction'][3])]}" in title
        assert page.eval_on_selector_all(f"{visible} rect.cf-changed", "els => els.length") == 1
        lines = page.eval_on_selector_all(f"{visible} polyline",
                                          "els => els.map(e => e.getAttribute('points'))")
        heights = [np.array([float(p.split(",")[1]) for p in line.split()]) for line in lines]
        changed = e.extras["changed"][3, :, 0]
        # the same value draws the same point; a changed one may round to the same pixel
        assert (heights[0][~changed] == heights[1][~changed]).all()
        assert (heights[0] != heights[1]).sum() > changed.sum() / 2
        box = page.eval_on_selector(f"{visible} svg", "el => el.getBoundingClientRect().width")
        assert 0 < box <= 1280
        assert "Counterfactuals against the nearest unlike neighbour" in page.content()
    assert not errors, errors
    assert all(url.startswith(("file:", "data:", "about:")) for url in requests), requests
