"""dCAM, the dimension-wise class activation map: Shapley values of the CAM over features (checked
against a direct enumeration of orderings), its additivity to Grad-CAM, a feature the model never
reads, the sampled estimate, refusals, and a model trained on a set whose label one known feature
carries."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from browser import browser_page
from nets_explainers import TinyCNN, TinyMLP, inputs, loaded
from oracles import feature_shapley_cam
from tolerances import assert_close, assert_identical
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.api import explain
from xaicore.explaining.explanation import Explanation
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

T, F = 32, 3


@pytest.fixture(scope="module")
def cnn() -> LoadedModel:
    return loaded(TinyCNN, n_features=F, seq_len=T)


def upsampled(layer_map: np.ndarray) -> np.ndarray:
    """A ``[sample, layer_time]`` map upsampled as every CAM method upsamples it."""
    return torch.nn.functional.interpolate(torch.as_tensor(layer_map)[:, None], size=T,
                                           mode="linear")[:, 0].numpy()


def test_dcam_is_the_shapley_value_of_the_class_activation_map_over_features(cnn):
    X, targets = inputs(4, T, F), np.array([0, 1, 2, 1])
    e = explain(cnn, X, method="dcam", target=targets, baseline="zero", relu=False)
    assert e.extras["algorithm"] == "exact" and e.extras["coalitions"] == 2 ** F
    oracle = feature_shapley_cam(cnn, "conv2", X, np.zeros_like(X), targets)
    assert np.abs(oracle).max() > 0
    # differences of layer maps: their rounding is of the maps' size, not of the differences'
    assert_close(e.extras["feature_maps"], oracle, scale=float(np.abs(e.extras["layer_heatmap"]).max()))
    each = np.stack([upsampled(e.extras["feature_maps"][:, f]) for f in range(F)], 2)
    assert_identical(e.attributions, each)  # the same interpolation of the same maps


@pytest.mark.parametrize("algorithm", ["exact", "sampled"])
def test_the_feature_maps_add_up_to_gradcam_minus_the_baselines_map(cnn, algorithm):
    X = inputs(5, T, F)
    background = inputs(7, T, F, seed=4)
    e = explain(cnn, X, method="dcam", relu=False, algorithm=algorithm, permutations=6,
                background=background)
    gradcam = explain(cnn, X, method="gradcam", relu=False)
    assert e.extras["algorithm"] == algorithm and not e.time_only and gradcam.time_only
    assert_identical(e.targets, gradcam.targets)  # both explain the class their forward predicts
    expected = gradcam.attributions[:, :, 0] - upsampled(e.extras["baseline_heatmap"])
    assert_close(e.attributions.sum(2), expected, scale=float(np.abs(gradcam.attributions).max()))
    assert np.abs(e.attributions[:, :, 0] - e.attributions[:, :, 1]).max() > 0  # its own map each


def test_a_feature_the_model_never_reads_gets_nothing(cnn):
    model = loaded(TinyCNN, n_features=F, seq_len=T)
    with torch.no_grad():
        model.network.conv1.weight[:, 1] = 0.0
    for algorithm in ("exact", "sampled"):
        e = explain(model, inputs(4, T, F), method="dcam", baseline="zero", relu=False,
                    algorithm=algorithm, permutations=4)
        # the same forward with or without it: zero up to the rounding of the maps subtracted
        assert_close(e.attributions[:, :, 1], np.zeros((4, T)),
                     scale=float(np.abs(e.extras["layer_heatmap"]).max()))
        assert np.abs(e.attributions[:, :, [0, 2]]).max() > 0


def test_two_features_and_an_ordering_with_its_reverse_are_every_ordering():
    model = loaded(TinyCNN, n_features=2, seq_len=T)
    X = inputs(3, T, 2)
    exact = explain(model, X, method="dcam", baseline="zero", algorithm="exact")
    sampled = explain(model, X, method="dcam", baseline="zero", algorithm="sampled", permutations=2)
    assert sampled.extras["algorithm"] == "sampled"
    assert_close(sampled.attributions, exact.attributions)


def test_the_sampled_estimate_approaches_the_exact_values(cnn):
    X = inputs(3, T, F)
    exact = explain(cnn, X, method="dcam", baseline="zero", relu=False).attributions
    sampled = explain(cnn, X, method="dcam", baseline="zero", relu=False, algorithm="sampled",
                      permutations=400, seed=1).attributions
    # a sampled estimator against the exact values: within 5% of the map's scale, not float error
    assert_close(sampled, exact, rtol=0.05)


def test_auto_chooses_exact_while_it_is_cheaper_than_the_orderings():
    few = explain(loaded(TinyCNN, n_features=4, seq_len=T), inputs(2, T, 4), method="dcam",
                  baseline="zero")
    many = explain(loaded(TinyCNN, n_features=7, seq_len=T), inputs(2, T, 7), method="dcam",
                   baseline="zero", permutations=4)
    assert few.extras["algorithm"] == "exact" and few.extras["coalitions"] == 16
    assert many.extras["algorithm"] == "sampled" and many.extras["coalitions"] == 4 * 6 + 2


def test_batched_result_equals_per_sample_results(cnn):
    X = inputs(4, T, F)
    batched = explain(cnn, X, method="dcam", baseline="zero", target=1).attributions
    single = np.concatenate([explain(cnn, X[i:i + 1], method="dcam", baseline="zero",
                                     target=1).attributions for i in range(len(X))])
    assert_close(batched, single)


def test_clear_errors(cnn):
    X = inputs(2, T, F)
    with pytest.raises(XaiError, match="dcam cannot explain model 'TinyMLP'.*no Conv1d"):
        explain(loaded(TinyMLP, n_features=F, seq_len=T), X, method="dcam", baseline="zero")
    transformer = LoadedModel(registry.get_model("transformer")(F, T, 3), name="transformer",
                              class_names=["a", "b", "c"], feature_names=["x", "y", "z"], seq_len=T)
    with pytest.raises(XaiError, match="dcam cannot explain model 'transformer'.*declares no "
                                       "Grad-CAM layer"):
        explain(transformer, X, method="dcam", baseline="zero")
    with pytest.raises(XaiError, match="dcam cannot explain model 'TinyCNN'.*reads one feature"):
        explain(loaded(TinyCNN, n_features=1, seq_len=T), inputs(2, T, 1), method="dcam")
    with pytest.raises(XaiError, match="dcam with baseline .mean. needs training data: pass background="):
        explain(cnn, X, method="dcam")
    with pytest.raises(XaiError, match="dcam: baseline must be one of zero, mean, blurred, random"):
        explain(cnn, X, method="dcam", baseline="pad")
    with pytest.raises(XaiError, match="dcam: algorithm must be one of auto, exact, sampled"):
        explain(cnn, X, method="dcam", baseline="zero", algorithm="kernel")
    with pytest.raises(XaiError, match="dcam: normalize must be one of none, max, minmax"):
        explain(cnn, X, method="dcam", baseline="zero", normalize="z")
    with pytest.raises(XaiError, match="dcam.*permutations.*2"):
        explain(cnn, X, method="dcam", baseline="zero", permutations=1)


# ---------- a label carried by one known feature ----------

SPEC = {"name": "synthetic-one-channel", "n_train": 400, "n_test": 64, "seq_len": 40,
        "n_features": 4, "signal": 3.0, "seed": 0}


def test_synthetic_one_channel_carries_the_label_on_its_middle_feature_only():
    from xai_eval.synthetic import load as load_synthetic

    d = load_synthetic("synthetic-one-channel", n_train=400, n_test=8, seq_len=50, n_features=5,
                       signal=4.0)
    X, y, mask = d.train.X, d.train.y, d.info["mask_train"]
    assert d.info["carrier"] == 2 and (mask.sum((1, 2)) == 10).all()  # a fifth of 50 steps
    assert not mask[:, :, [0, 1, 3, 4]].any()
    inside = (X * mask).sum((1, 2)) / 10  # the carrier's window: +signal or -signal, by class
    assert (np.sign(inside) == np.where(y == 1, 1, -1)).all()
    # every feature has a window as strong; on the others its sign says nothing of the class
    extreme = np.abs(X).max(1)  # [sample, feature]
    assert (extreme > 3).mean() > 0.9
    sign = np.sign(X[np.arange(len(X))[:, None], np.abs(X).argmax(1), np.arange(5)])
    agreement = (sign[:, [0, 1, 3, 4]] == np.where(y == 1, 1, -1)[:, None]).mean(0)
    assert (np.abs(agreement - 0.5) < 0.1).all()
    again = load_synthetic("synthetic-one-channel", n_train=400, n_test=8, seq_len=50,
                           n_features=5, signal=4.0)
    assert_identical(again.train.X, X)  # seeded: the same draw


@pytest.fixture(scope="module")
def one_channel_run(tmp_path_factory):
    """fcn trained (seconds, one thread) on synthetic-one-channel: 4 features, each with a
    shifted window; only the middle feature's sign is the class."""
    import xaicore

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("dcam") / "run"
    metrics = xaicore.train(SPEC, "fcn", run, epochs=15, progress=False,
                            params={"filters": [16, 32, 16], "kernel_sizes": [7, 5, 3]})
    assert metrics["test_accuracy"] > 0.9
    return run


def test_dcam_finds_the_feature_that_carries_the_label_where_gradcam_cannot(one_channel_run):
    """dCAM puts most of its mass on the carrier, inside its window, where Grad-CAM's map, copied
    to every feature, puts 1/F on each feature and so at most 1/F inside the window (its AUP's
    bound). AUR, the share of the window's own mass that the top cells cover, measures
    localisation in time as much as across features: dCAM's is not lower."""
    import xaicore
    from xai_eval.localisation import AUPMetric, AURMetric

    model = xaicore.load_run(one_channel_run)
    dataset = xaicore.load_dataset(SPEC)
    carrier, mask, X = dataset.info["carrier"], dataset.info["mask_test"], dataset.test.X
    assert carrier == 2 and mask[:, :, carrier].any(1).all() and not mask[:, :, [0, 1, 3]].any()
    scores, shares = {}, {}
    for method, options in (("dcam", {"background": dataset.train.X}), ("gradcam", {})):
        e = xaicore.explain(model, X, method=method, target="predicted", **options)
        scores[method] = (AUPMetric().evaluate(model, e, mask=mask)["aup"],
                          AURMetric().evaluate(model, e, mask=mask)["aur"])
        per_feature = np.abs(e.attributions).sum(1)  # [sample, feature]
        shares[method] = per_feature / per_feature.sum(1, keepdims=True)
    print(f"AUP, AUR: {scores}; carrier share: dcam {shares['dcam'][:, carrier].mean():.3f}, "
          f"gradcam {shares['gradcam'][:, carrier].mean():.3f}")
    (dcam_aup, dcam_aur), (gradcam_aup, gradcam_aur) = scores["dcam"], scores["gradcam"]
    assert_close(shares["gradcam"], np.full((len(X), 4), 0.25))  # one map copied to 4 features
    assert gradcam_aup <= 1 / 4 + 1e-6
    assert dcam_aup > 3 * gradcam_aup and dcam_aur >= gradcam_aur, scores
    assert shares["dcam"][:, carrier].mean() > 0.6
    assert (shares["dcam"].argmax(1) == carrier).mean() > 0.9


def xai(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_dcam_runs_through_explain_streaming_evaluate_and_the_report(one_channel_run, tmp_path):
    """The CLI explains with dcam (the run's train split as background), streams it into a
    store, scores it with AUP/AUR from the synthetic set's mask, and the report draws its four
    rows where Grad-CAM's map is one row over time with no per-feature bars."""
    import xaicore

    run = one_channel_run
    xai("explain", "--run", run, "--method", "dcam", "--method", "gradcam", "--samples", "0:6")
    e = Explanation.load(run / "explanations" / "dcam.npz")
    assert e.attributions.shape == (6, 40, 4) and e.extras["algorithm"] == "exact"
    assert not e.time_only and Explanation.load(run / "explanations" / "gradcam.npz").time_only
    X = xaicore.load_dataset(SPEC).test.X[:8]
    np.save(tmp_path / "new.npy", X)
    xai("explain", "--run", run, "--input", tmp_path / "new.npy", "--method", "dcam",
        "--method", "gradcam")
    (store,) = (run / "explanations").glob("*/dcam.zarr")
    streamed = xaicore.load_explanation(store).load()
    again = xaicore.explain(xaicore.load_run(run), X, method="dcam",
                            background=xaicore.load_dataset(SPEC).train.X)
    assert_close(streamed.attributions, again.attributions)
    assert xaicore.load_explanation(store.parent / "gradcam.zarr").json_extras["time_only"]
    xai("evaluate", "--run", run, "--method", "dcam", "--method", "gradcam", "--samples", "16",
        "--metric", "aup", "--metric", "aur", "--metric", "deletion", "--workers", "1",
        "--bootstrap", "200")
    table = pd.read_csv(run / "evaluation.csv").set_index("method")
    assert table.loc["dcam", "aup"] > 3 * table.loc["gradcam", "aup"]
    xai("report", "--run", run)
    html = (run / "report.html").read_text()
    # the dataset view of the two stores: feature shares for dcam only
    assert html.count("shared by every feature: no feature&#x27;s share)</figcaption>") == 1
    assert html.count("(and each feature&#x27;s share of it)</figcaption>") == 1
    start = html.index('<script type="application/json" id="xai-data">')
    start = html.index(">", start) + 1
    import json

    views = {v["method"]: v for v in json.loads(html[start:html.index("</script>", start)])["views"]}
    assert views["gradcam"]["shared"] and not views["dcam"]["shared"]
    import base64

    width = {m: len(base64.b64decode(v["attr"][0])) // 2 // 40 for m, v in views.items()}
    assert width == {"dcam": 4, "gradcam": 1}  # Grad-CAM's one map, embedded once
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto((run / "report.html").as_uri())
        page.wait_for_selector("#plot .main-svg")
        drawn = """() => ({strip: document.getElementById('plot').data.filter(t => t.type ===
            'heatmap').map(t => t.y), bars: document.getElementById('global').data.filter(t =>
            t.type === 'bar').length})"""
        page.click('button[data-key="gradcam"]')
        assert page.evaluate(drawn) == {"strip": [["every feature"]], "bars": 0}
        page.click('button[data-key="dcam"]')
        assert page.evaluate(drawn) == {"strip": [["f0", "f1", "f2", "f3"]], "bars": 1}
        page.click('button[data-key="compare"]')
        assert page.evaluate(drawn) == {"strip": [["f0", "f1", "f2", "f3"], ["every feature"]],
                                        "bars": 1}
    assert not errors and all(r.startswith("file:") for r in requests)


def test_a_time_only_map_has_no_per_feature_summary_or_figure(tmp_path):
    """Grad-CAM's explanation says it is time-only; aggregate refuses a per-feature split,
    the notebook summary names no top feature, the heatmaps draw one row, and global-plots draws
    no feature-importance bars for it (while dcam, with a map per feature, gets all of them)."""
    import matplotlib.pyplot as plt

    from xai_plots.samples import SHARED_ROW, comparison_figure, heatmap_figure

    model = loaded(TinyCNN, n_features=F, seq_len=T)
    X = inputs(3, T, F)
    gradcam = explain(model, X, method="gradcam")
    dcam = explain(model, X, method="dcam", baseline="zero")
    assert gradcam.extras["time_only"] is True and "time_only" not in dcam.extras
    with pytest.raises(XaiError, match="gradcam maps time only.*no per-feature importance"):
        gradcam.aggregate(over="time")
    assert_close(gradcam.aggregate(("time", "feature"), "abs_mean"),
                 np.abs(gradcam.attributions).mean((1, 2)))
    assert dcam.aggregate(over="time").shape == (3, F)
    univariate = explain(loaded(TinyCNN, n_features=1, seq_len=T), inputs(3, T, 1), method="gradcam")
    assert univariate.time_only and univariate.aggregate(over="time").shape == (3, 1)  # no split
    assert "top features" not in gradcam._repr_html_()
    assert "shared by every feature" in gradcam._repr_html_()
    assert "top features" in dcam._repr_html_()
    heat = heatmap_figure(gradcam, 0).axes[1]
    assert heat.get_images()[0].get_array().shape[:2] == (1, T)  # one RGB row
    assert [t.get_text() for t in heat.get_yticklabels()] == [SHARED_ROW]
    assert heatmap_figure(dcam, 0).axes[1].get_images()[0].get_array().shape[:2] == (F, T)
    rows = comparison_figure([(dcam, 0), (gradcam, 0)]).axes
    assert [a.get_images()[0].get_array().shape[:2] for a in rows[1:3]] == [(F, T), (1, T)]
    plt.close("all")
    again = Explanation.load(gradcam.save(tmp_path / "g.npz"))
    assert again.time_only  # saved with the explanation
    written = registry.get_renderer("global-plots").render([gradcam, dcam], tmp_path / "figures")
    names = {p.relative_to(tmp_path / "figures").as_posix() for p in written}
    assert "dcam/feature_importance.png" in names and "gradcam/time_importance.png" in names
    assert "gradcam/feature_importance.png" not in names
    import matplotlib.pyplot as plt

    plt.close("all")
