"""Bounded work: option values within their declared ranges never take more
memory than the process has. Passes are split to fit, or the explainer refuses in one line naming
its estimate. The reported cases run in a subprocess under an address-space limit (RLIMIT_AS) a
little above what loading the run takes, so a regression fails here instead of exhausting the
machine; split passes give the results of small ones."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tolerances import assert_close

HEADROOM = 768 * 2**20  # bytes the limited process may allocate beyond what loading the run takes
TIMEOUT = 120  # seconds: a regression that thrashes or computes for ever fails, not hangs

PRELUDE = """
import json, re, sys, warnings
import numpy as np
import torch
torch.set_num_threads(1)
from xaicore.application import load_run_data
import xai_captum.explainers, xai_shap.explainer
run, tasks, out = json.loads(sys.argv[1])
model, dataset = load_run_data(run, "cpu")
"""

EXPLAIN = PRELUDE + """
import xaicore
from xaicore.errors import XaiError
warnings.simplefilter("ignore")
results = {}
for name, method, n, options in tasks:
    if options.pop("background", False):
        options["background"] = dataset.train.X
    try:
        e = xaicore.explain(model, dataset.test.X[:n], method=method, **options)
    except XaiError as exc:
        sys.exit(f"refused: {exc}")
    results[name] = e.attributions
np.savez(out, **results)
"""

LOADED = PRELUDE + """
print(re.search(r"VmPeak:\\s+(\\d+)", open("/proc/self/status").read())[1])
"""


def run_limited(script: str, run: Path, tasks: list, out: Path,
                limit: int | None) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter whose address space is capped at ``limit`` bytes."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", script, json.dumps([str(run), tasks, str(out)])],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=cap if limit else None, cwd=Path(__file__).parent)


@pytest.fixture(scope="module")
def limit(gunpoint_run: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    """The address-space limit: what importing torch, xaicore and the explainers and loading
    the run reserve (torch reserves much more than it uses), plus ``HEADROOM``."""
    done = run_limited(LOADED, gunpoint_run, [], tmp_path_factory.mktemp("limit"), None)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) * 1024 + HEADROOM


def explained_under_limit(gunpoint_run: Path, tmp_path: Path, limit: int,
                          tasks: list) -> dict[str, np.ndarray]:
    """The attributions of each task ``(name, method, samples, options)``, explained under
    ``limit``; the test fails on a crash, a refusal or a timeout."""
    out = tmp_path / "limited.npz"
    done = run_limited(EXPLAIN, gunpoint_run, tasks, out, limit)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as results:
        return dict(results)


def reference(gunpoint_run: Path, method: str, n: int, **options) -> np.ndarray:
    """The attributions of the same explanation in small passes, in this process."""
    import xaicore
    from xaicore.application import load_run_data

    model, dataset = load_run_data(gunpoint_run, "cpu")
    if options.pop("background", False):
        options["background"] = dataset.train.X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xaicore.explain(model, dataset.test.X[:n], method=method, **options).attributions


def test_smoothgrad_with_a_huge_internal_batch_splits_its_passes(gunpoint_run, tmp_path, limit):
    """The reported case, on one sample: 10,000 noisy copies with internal_batch_size
    10,000,000 (all of them in one pass), capped to what fits; equal to passes of 128 rows."""
    options = {"n_samples": 10_000, "seed": 3}
    got = explained_under_limit(gunpoint_run, tmp_path, limit, [
        ("smoothgrad", "smoothgrad", 1, {**options, "internal_batch_size": 10_000_000})])
    assert_close(got["smoothgrad"], reference(gunpoint_run, "smoothgrad", 1,
                                              internal_batch_size=128, **options))


def test_the_cap_on_internal_batch_size_is_said_and_the_result_unchanged(gunpoint_run):
    import xaicore
    from xaicore.application import load_run_data

    model, dataset = load_run_data(gunpoint_run, "cpu")
    X = dataset.test.X[:2]
    with pytest.warns(UserWarning, match=r"internal_batch_size 10,000,000 capped at [\d,]+ rows"):
        capped = xaicore.explain(model, X, method="smoothgrad", n_samples=4,
                                 internal_batch_size=10_000_000)
    (note,) = capped.extras["warnings"]
    assert "capped at" in note and "GiB free" in note
    small = xaicore.explain(model, X, method="smoothgrad", n_samples=4, internal_batch_size=2)
    assert "warnings" not in small.extras
    assert_close(capped.attributions, small.attributions)


# every integration rule: riemann_trapezoid at the reported 10,000 steps, Gauss-Legendre at its
# most (1,024) on 3 samples; one pass of all the points of any of them exceeds HEADROOM
RULES = [("riemann_trapezoid", 1, 10_000), ("riemann_left", 1, 2_500), ("riemann_right", 1, 2_500),
         ("riemann_middle", 1, 2_500), ("clenshaw_curtis", 1, 2_500), ("gausslegendre", 3, 1_024)]


def test_integrated_gradients_splits_the_path_of_every_rule(gunpoint_run, tmp_path, limit):
    tasks = [(rule, "integrated-gradients", n,
              {"n_steps": steps, "integration_method": rule, "internal_batch_size": 10_000_000})
             for rule, n, steps in RULES]
    got = explained_under_limit(gunpoint_run, tmp_path, limit, tasks)
    for rule, n, steps in RULES:
        expected = reference(gunpoint_run, "integrated-gradients", n, n_steps=steps,
                             integration_method=rule, internal_batch_size=128)
        assert_close(got[rule], expected, err_msg=rule)


def test_gradient_shap_and_shap_split_their_passes(gunpoint_run, tmp_path, limit):
    """gradient-shap's 5,000 baselines (a noise tunnel: captum passes them all at once) and the
    shap game's rows of 6,000 coalition pairs, asked in one pass."""
    gradient = {"n_samples": 5_000, "stdevs": 0.1, "background": True}
    game = {"n_pairs": 6_000, "algorithm": "sampled", "background": True}
    got = explained_under_limit(gunpoint_run, tmp_path, limit, [
        ("gradient-shap", "gradient-shap", 1, gradient),
        ("shap", "shap", 1, {**game, "batch_size": 1_000_000_000})])
    assert_close(got["gradient-shap"], reference(gunpoint_run, "gradient-shap", 1,
                                                 internal_batch_size=128, **gradient))
    assert_close(got["shap"], reference(gunpoint_run, "shap", 1, batch_size=256, **game))


def test_what_cannot_fit_is_refused_in_one_line_naming_the_estimate(gunpoint_run, tmp_path,
                                                                    limit):
    """The most coalition pairs shap accepts: 20,000 pairs per background sample, whose fits
    alone would take hundreds of GiB."""
    done = run_limited(EXPLAIN, gunpoint_run, [
        ("shap", "shap", 1, {"n_pairs": 1_000_000, "algorithm": "sampled", "background": True})],
        tmp_path / "refused.npz", limit)
    message = done.stderr.strip()
    assert done.returncode == 1 and len(message.splitlines()) == 1, done.stderr[-2000:]
    assert message.startswith("refused: shap: sampled values of one sample")
    assert "need about" in message and "GiB" in message and "lower n_pairs" in message


FIGURES = """
import json, sys
import numpy as np
import matplotlib.pyplot as plt
from xai_plots.global_plots import feature_importance_figure
from xai_plots.samples import heatmap_figure
from xaicore.plugin import Explanation
from xaicore.application import render_stage
out, n_features = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
attributions = rng.standard_normal((2, 12, n_features)).astype(np.float32)
attributions[:, :, 7] *= 100  # the one feature every figure must keep
common = dict(inputs=rng.standard_normal((2, 12, n_features)), targets=[0, 1], predictions=[0, 1],
              probabilities=[[0.9, 0.1], [0.2, 0.8]], class_names=["a", "b"],
              feature_names=[f"sensor {i}" for i in range(n_features)])
explanations = [Explanation(attributions, method=m, **common) for m in ("saliency", "shap")]
explanations[1].extras["expected_value"] = [0.0, 0.0]
written, problems = render_stage("explanations", explanations, out, formats=["png"])
drawn = []
for fig in (feature_importance_figure(explanations[0]), heatmap_figure(explanations[0], 0)):
    drawn.append({"titles": [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)],
                  "names": [t.get_text() for ax in fig.axes
                            for t in ax.get_xticklabels() + ax.get_yticklabels()
                            if "sensor" in t.get_text()]})
    plt.close(fig)
print(json.dumps({"renderers": sorted(written), "problems": problems, "drawn": drawn}))
"""
FIGURE_LIMIT = 3 * 2**30  # room for importing torch, matplotlib and shap, and for drawing


def test_figures_of_ten_thousand_features_are_capped_and_folded(tmp_path):
    """10,000 feature names: every PNG within MAX_PIXELS, the top features drawn and the others
    counted in the title, under a memory limit and a timeout."""
    from xai_plots.figures import MAX_FEATURES, MAX_PIXELS, png_size

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (FIGURE_LIMIT, FIGURE_LIMIT))

    done = subprocess.run([sys.executable, "-c", FIGURES, str(tmp_path), "10000"],
                          capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=cap)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert not report["problems"] and {"sample-plots", "global-plots"} <= set(report["renderers"])
    pngs = sorted(tmp_path.rglob("*.png"))
    assert len(pngs) >= 8
    for path in pngs:
        width, height = png_size(path)
        assert width <= MAX_PIXELS[0] and height <= MAX_PIXELS[1], (path, width, height)
    for figure in report["drawn"]:  # feature importance, one sample's heatmap
        assert any(f"top {MAX_FEATURES} of 10,000 features" in t and "9,980 folded" in t
                   for t in figure["titles"]), figure["titles"]
        assert "sensor 7" in figure["names"] and len(figure["names"]) == MAX_FEATURES
