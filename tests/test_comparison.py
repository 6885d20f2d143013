"""Comparisons across models: comparison.csv of xai explain, the comparison report of xai report
(in a real browser), its refusals, and the model-and-method panel labels of Explanation.plot."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr

from browser import browser_page
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.explaining.explanation import Explanation

METHODS = ("saliency", "gradcam")
SAMPLES = "0:8"
TOP_K = 0.1
N_BOOT = 1000


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two small GunPoint runs of different models (a few epochs each), both explaining the same
    test samples with the same methods into their own explanations folder."""
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.training import train

    root = tmp_path_factory.mktemp("compare")
    made = []
    for model, epochs in (("fcn", 3), ("cnn-lstm-attention", 3)):
        run = root / model
        train(dataset_spec("GunPoint"), model, run, epochs=epochs, seed=0, progress=False)
        result = xai("explain", "--run", run, *(a for m in METHODS for a in ("--method", m)),
                     "--samples", SAMPLES, "--no-figures")
        assert result.exit_code == 0, result.output
        made.append(run)
    return made[0], made[1]


def copied(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def expected_agreement(a: Explanation, b: Explanation) -> dict[str, np.ndarray]:
    """The per-sample measures, computed directly: scipy's Spearman of |attribution| over every
    cell, and the top 10% cells (ties by position) of each map intersected."""
    assert (a.sample_ids == b.sample_ids).all()
    rho, overlap = [], []
    for x, y in zip(np.abs(a.attributions), np.abs(b.attributions)):
        x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
        rho.append(spearmanr(x, y).statistic if x.std() > 0 and y.std() > 0 else np.nan)
        k = max(1, int(round(TOP_K * len(x))))
        top_x = set(sorted(range(len(x)), key=lambda t: (-x[t], t))[:k])
        top_y = set(sorted(range(len(y)), key=lambda t: (-y[t], t))[:k])
        overlap.append(len(top_x & top_y) / k)
    return {"spearman_abs": np.array(rho), "top_k_overlap": np.array(overlap),
            "prediction_agreement": (a.predictions == b.predictions).astype(np.float64)}


def expected_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% percentile interval of the mean over the same 1,000 resamples (seed 0), each
    averaged on its own and any resample of only undefined values left out."""
    rng = np.random.default_rng(0)
    n = len(values)
    draws = rng.integers(0, n, size=(N_BOOT, n))
    means = [np.nanmean(values[draw]) for draw in draws if np.isfinite(values[draw]).any()]
    low, high = np.percentile(means, [2.5, 97.5])
    mean = float(np.nanmean(values))
    return mean, min(low, mean), max(high, mean)


def loaded(run: Path, method: str) -> Explanation:
    return Explanation.load(run / "explanations" / f"{method}.npz")


def test_explain_several_runs_writes_agreement_with_intervals(runs, tmp_path):
    a, b = runs
    out = tmp_path / "out"
    result = xai("explain", "--run", a, "--run", b, "--method", "saliency", "--samples", SAMPLES,
                 "--out", out, "--no-figures")
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out / "comparison.csv").iloc[0]
    assert (row["method"], row["model_a"], row["model_b"]) == ("saliency", "fcn",
                                                              "cnn-lstm-attention")
    ea, eb = (Explanation.load(out / name / "saliency.npz") for name in (a.name, b.name))
    for measure, values in expected_agreement(ea, eb).items():
        mean, low, high = expected_interval(values)
        assert_close([row[measure], row[f"{measure}_low"], row[f"{measure}_high"]],
                     [mean, low, high], err_msg=measure)
        assert low <= mean <= high
    assert row["samples"] == 8 and row["top_k"] == TOP_K


def test_explain_refuses_runs_of_different_datasets(runs, tmp_path):
    other = copied(runs[1], tmp_path / "other")
    ckpt = torch.load(other / "checkpoint.pt", weights_only=True)
    ckpt["dataset"] = {"name": "ArrowHead"}
    torch.save(ckpt, other / "checkpoint.pt")
    result = xai("explain", "--run", runs[0], "--run", other, "--method", "saliency",
                 "--samples", "0:2", "--out", tmp_path / "out", "--no-figures")
    assert result.exit_code == 1
    assert "trained on different datasets (name GunPoint vs ArrowHead)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    report = xai("report", "--run", runs[0], "--run", other, "--out", tmp_path / "c.html")
    assert report.exit_code == 1, report.output
    assert "different datasets (name GunPoint vs ArrowHead); a comparison needs one test split" \
        in report.output
    assert not (tmp_path / "c.html").exists() and not (other / "comparisons.json").exists()


@pytest.fixture(scope="module")
def comparison(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "fcn-vs-lstm.html"
    result = xai("report", "--run", runs[0], "--run", runs[1], "--out", out)
    assert result.exit_code == 0, result.output
    assert f"comparison report -> {out}" in result.output
    return out


def test_existing_comparison_is_kept_without_force(runs, comparison):
    before = comparison.read_bytes()
    result = xai("report", "--run", runs[0], "--run", runs[1], "--out", comparison)
    assert result.exit_code == 1
    assert "already exists; pass --force" in result.output and "Traceback" not in result.output
    assert comparison.read_bytes() == before
    again = xai("report", "--run", runs[0], "--run", runs[1], "--out", comparison, "--force")
    assert again.exit_code == 0, again.output


def test_comparison_refuses_one_run_twice_and_methods_not_shared(runs, tmp_path):
    twice = xai("report", "--run", runs[0], "--run", runs[0], "--out", tmp_path / "c.html")
    assert twice.exit_code == 1 and "is given twice" in twice.output
    bare = copied(runs[1], tmp_path / "bare")
    for path in (bare / "explanations").glob("*.npz"):
        path.unlink()
    none = xai("report", "--run", runs[0], "--run", bare, "--out", tmp_path / "c.html")
    assert none.exit_code == 1 and "holds no explanation of its predicted class" in none.output
    assert not (tmp_path / "c.html").exists()


def test_models_of_one_name_are_told_apart_by_run_folder(runs, tmp_path):
    first, twin = (copied(runs[0], tmp_path / name) for name in ("fcn", "fcn-again"))
    out = tmp_path / "twins.html"
    result = xai("report", "--run", first, "--run", twin, "--out", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "fcn (fcn) vs fcn (fcn-again)" in html
    # the same weights explained the same samples: every measure is exactly 1
    assert 'data-measure="spearman_abs" data-value="1.0" data-low="1.0" data-high="1.0"' in html
    # a run whose model is replaced since no longer links the comparison of its earlier model
    ckpt = torch.load(twin / "checkpoint.pt", weights_only=True)
    ckpt["epoch"] += 1
    torch.save(ckpt, twin / "checkpoint.pt")
    for run, linked in ((first, True), (twin, False)):
        assert xai("report", "--run", run).exit_code == 0
        own = (run / "report.html").read_text()
        assert ('<a href="../twins.html">twins.html</a>' in own) == linked
        assert ("twins.html is not linked: it compared an earlier model" in own) == (not linked)


def test_comparison_report_in_a_browser(runs, comparison):
    """Models named with their accuracy, each sample's predictions and true class, agreement
    figures equal to a direct computation, maps drawn, nothing fetched; each run's report links
    the comparison."""
    a, b = runs
    labels = ("fcn", "cnn-lstm-attention")
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto(comparison.as_uri())
        page.wait_for_load_state("load")
        assert page.title() == "xai comparison: fcn vs cnn-lstm-attention on GunPoint"
        models = page.eval_on_selector_all("#models tbody tr", """rows => rows.map(r => [
            r.dataset.model, Number(r.querySelector('[data-measure=shared_accuracy]').dataset.value),
            Number(r.querySelector('[data-measure=test_accuracy]').dataset.value)])""")
        assert [m[0] for m in models] == list(labels)
        for (_, shared, test), run in zip(models, runs):
            e = loaded(run, "saliency")
            assert_close(shared, np.mean(e.predictions == e.labels))
            metrics = pd.read_json(run / "metrics.json", typ="series")
            assert_close(test, metrics["test_accuracy"])
        # per sample: the true class and each model's prediction, as the explanations hold them
        ea, eb = loaded(a, "saliency"), loaded(b, "saliency")
        classes = ea.class_names
        for i, sid in enumerate(ea.sample_ids):
            block = page.locator(f"#sample-{sid}")
            assert block.locator(".truth").inner_text() == classes[ea.labels[i]]
            for label, e in zip(labels, (ea, eb)):
                cell = block.locator(f'table.predictions tr[data-model="{label}"] .prediction')
                assert cell.inner_text().startswith(classes[e.predictions[i]])
                assert ("misclassified" in cell.inner_text()) == bool(e.predictions[i] != e.labels[i])
            sizes = block.locator("img").evaluate_all("els => els.map(e => e.naturalWidth)")
            assert len(sizes) == 1 and sizes[0] > 0  # every model's map of every method
        # agreement per method: each sample's figures and the means with their intervals
        for method in METHODS:
            ma, mb = loaded(a, method), loaded(b, method)
            expected = expected_agreement(ma, mb)
            row = page.locator(f'#agreement tr[data-method="{method}"]')
            assert row.get_attribute("data-a") == labels[0]
            assert row.get_attribute("data-b") == labels[1]
            for measure, values in expected.items():
                cell = row.locator(f'[data-measure="{measure}"]')
                got = [float(cell.get_attribute(f"data-{k}")) for k in ("value", "low", "high")]
                assert_close(got, expected_interval(values), err_msg=f"{method} {measure}")
                assert cell.inner_text() == f"{got[0]:.3f} [{got[1]:.3f}, {got[2]:.3f}]"
            for i, sid in enumerate(ma.sample_ids):
                cells = page.locator(f'#sample-{sid} table.sample-agreement tr[data-method="{method}"]')
                for measure in ("spearman_abs", "top_k_overlap"):
                    shown = float(cells.locator(f'[data-measure="{measure}"]').get_attribute("data-value"))
                    assert_close(shown, expected[measure][i], equal_nan=True, err_msg=f"{method} {sid}")
        assert all(url.startswith(("file:", "data:")) for url in requests), requests
        assert errors == []
        # each run's own report links the comparison
        for run in runs:
            result = xai("report", "--run", run, "--force")
            assert result.exit_code == 0, result.output
            page.goto((run / "report.html").as_uri())
            link = page.locator("#comparisons a")
            assert link.inner_text() == comparison.name
            assert "fcn vs cnn-lstm-attention" in page.locator("#comparisons li").inner_text()
            link.click()
            page.wait_for_load_state("load")
            assert page.url == comparison.as_uri()
        # written again now that the runs have reports, the comparison links back to each
        assert xai("report", "--run", a, "--run", b, "--out", comparison, "--force").exit_code == 0
        for run in runs:
            page.goto(comparison.as_uri())
            page.locator(f'#models tr[data-model="{run.name}"] a').click()
            page.wait_for_load_state("load")
            assert page.url == (run / "report.html").as_uri()
        assert errors == []


def left_titles(fig) -> list[str]:
    """The figure's title, then the panel titles of a comparison figure, top to bottom."""
    import matplotlib.pyplot as plt

    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    plt.close(fig)
    return [fig.get_suptitle(), *titles]


def test_plot_compare_labels_panels_with_model_and_method():
    rng = np.random.default_rng(0)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])

    def made(model, method, digest, preds):
        return Explanation(rng.normal(size=(2, 30, 1)), rng.normal(size=(2, 30, 1)), preds, preds,
                           probs, method, labels=np.array([1, 1]), class_names=["Gun", "Point"],
                           model_name=model, model_digest=digest)

    fcn = made("fcn", "saliency", "a" * 64, np.array([0, 1]))
    lstm = made("cnn-lstm-attention", "saliency", "b" * 64, np.array([1, 1]))
    titles = left_titles(fcn.plot(0, compare=[lstm]))
    # several models: the sample and its true class above, each model's prediction in its panel
    assert titles == ["sample 0: true Point", "fcn · saliency (predicts Gun, 0.90)",
                      "cnn-lstm-attention · saliency (predicts Point, 0.10)"]
    # one model, several methods: model and method, no prediction per panel
    same = made("fcn", "gradcam", "a" * 64, np.array([0, 1]))
    titles = left_titles(fcn.plot(1, compare=[same]))
    assert titles == ["sample 1: predicted Point (0.80), true Point", "fcn · saliency",
                      "fcn · gradcam"]
    # two models of one name: told apart by their checkpoints' digests
    other = made("fcn", "saliency", "c" * 64, np.array([0, 1]))
    titles = left_titles(fcn.plot(0, compare=[other]))
    assert titles[1].startswith("fcn #aaaaaaa · saliency") and titles[2].startswith("fcn #ccccccc")


def test_dataset_files_are_told_by_their_bytes_not_their_place():
    from xaicore.explaining.agreement import dataset_difference

    here = {"name": "/a/data.csv", "test": None, "seed": 0, "test_size": 0.25, "sha256": "1" * 64}
    moved = {**here, "name": "/b/data.csv"}
    assert dataset_difference(here, moved) is None
    assert dataset_difference(here, {**moved, "sha256": "2" * 64}).startswith("dataset file 1111")
    assert dataset_difference(here, {**here, "seed": 1}) == "seed 0 vs 1"
    assert dataset_difference({"name": "GunPoint"}, "GunPoint") is None


def test_agreement_leaves_padding_out_and_counts_ties_by_position():
    from xaicore.explaining.ranks import top_k_overlap

    a = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, np.nan], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    b = np.array([[5.0, 1.0, 3.0, 2.0, 4.0, 9.0], [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    # row 0: 5 valid cells, k = round(0.4 * 5) = 2: {0, 1} against {0, 4}; the NaN cell's 9 is out
    # row 1: k = round(0.4 * 6) = 2: the first two of the tied ones, {0, 1} against {2, 3}
    assert_close(top_k_overlap(a, b, 0.4), [0.5, 0.0])
