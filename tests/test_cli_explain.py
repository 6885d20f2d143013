"""`xai explain` end to end on a real trained GunPoint run."""

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tolerances import assert_close, assert_identical
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.explaining.explanation import Explanation
from xaicore.models.checkpoints import load_checkpoint


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def run(gunpoint_run, tmp_path):
    copy = tmp_path / "gp"
    shutil.copytree(gunpoint_run, copy)
    return copy


def test_explain_writes_one_file_per_method_aligned_with_the_test_split(run, tmp_path):
    out = tmp_path / "out"
    result = xai("explain", "--run", run, "--method", "gradcam", "--method", "saliency",
                 "--samples", "3:7", "--target", "true", "--out", out, "--no-figures")
    assert result.exit_code == 0, result.output
    dataset = load_dataset(load_checkpoint(run / "checkpoint.pt")["dataset"])
    for method in ("gradcam", "saliency"):
        e = Explanation.load(out / f"{method}@true.npz")
        assert e.method == method and e.attributions.shape == (4, 150, 1)
        np.testing.assert_array_equal(e.sample_ids, [3, 4, 5, 6])
        np.testing.assert_array_equal(e.labels, dataset.test.y[3:7])
        np.testing.assert_array_equal(e.targets, dataset.test.y[3:7])  # --target true
        assert_identical(e.inputs, dataset.test.X[3:7])  # stored as given
        assert e.class_names == dataset.class_names and e.dataset == "GunPoint"


def test_existing_results_are_not_overwritten_without_force(run):
    first = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2", "--no-figures")
    assert first.exit_code == 0, first.output
    path = run / "explanations" / "saliency.npz"
    before = path.read_bytes()
    again = xai("explain", "--run", run, "--method", "saliency", "--samples", "2:4", "--no-figures")
    assert again.exit_code == 1 and "use --force" in again.output
    assert path.read_bytes() == before
    forced = xai("explain", "--run", run, "--method", "saliency", "--samples", "2:4",
                 "--no-figures", "--force")
    assert forced.exit_code == 0
    np.testing.assert_array_equal(Explanation.load(path).sample_ids, [2, 3])


@pytest.mark.parametrize("args, message", [
    (["--method", "anchors"], "unknown explainer 'anchors'"),
    (["--method", "gradcam", "--target", "7"], "class index 7 is out of range"),
    (["--method", "gradcam", "--target", "banana"], "classes: 1, 2"),
    (["--method", "gradcam", "--samples", "500:510"], "test split has 150 samples"),
    (["--method", "gradcam", "--option", "gradcam.colour=red"], "gradcam has no option 'colour'"),
    (["--method", "gradcam", "--option", "saliency.abs=true"], "not being run: saliency"),
])
def test_bad_requests_give_one_line_errors_and_write_nothing(run, args, message):
    result = xai("explain", "--run", run, "--no-figures", *args)
    assert result.exit_code == 1
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not list((run / "explanations").glob("*.npz")) if (run / "explanations").exists() else True


def test_corrupt_checkpoint_is_refused(run):
    (run / "checkpoint.pt").write_bytes(b"\x80\x04garbage")
    result = xai("explain", "--run", run, "--method", "saliency")
    assert result.exit_code == 1 and "corrupt or not a torch checkpoint" in result.output


def test_several_runs_give_a_side_by_side_comparison(run, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    out = tmp_path / "compare"
    result = xai("explain", "--run", run, "--run", twin, "--method", "saliency",
                 "--samples", "0:5", "--out", out, "--no-figures")
    assert result.exit_code == 0, result.output
    a, b = (Explanation.load(out / name / "saliency.npz") for name in ("gp", "twin"))
    # the same weights, samples, batch and process: the same computation
    assert_identical(a.attributions, b.attributions)
    row = pd.read_csv(out / "comparison.csv").iloc[0]
    # the same weights explain the same samples identically
    assert row["prediction_agreement"] == 1.0 and row["spearman_abs"] == pytest.approx(1.0)
    assert xai("explain", "--run", run, "--run", twin, "--method", "saliency").exit_code == 1


def test_true_class_results_sit_beside_predicted_ones_for_misclassified_samples(run, tmp_path):
    out = tmp_path / "out"
    for target in ("predicted", "true"):
        result = xai("explain", "--run", run, "--method", "saliency", "--samples",
                     "0:2,misclassified", "--target", target, "--out", out, "--no-figures")
        assert result.exit_code == 0, result.output
    predicted = Explanation.load(out / "saliency.npz")
    true = Explanation.load(out / "saliency@true.npz")
    np.testing.assert_array_equal(predicted.sample_ids, true.sample_ids)
    wrong = predicted.predictions != predicted.labels
    assert wrong[2:].all() and len(predicted.sample_ids) > 2  # the fixture's model errs on some
    np.testing.assert_array_equal(true.targets, true.labels)
    assert (true.targets[wrong] != predicted.targets[wrong]).all()


def test_true_class_run_draws_the_misclassification_view(run):
    base = ["explain", "--run", run, "--method", "saliency", "--samples", "misclassified",
            "--figures"]
    assert xai(*base).exit_code == 0
    result = xai(*base, "--target", "true")
    assert result.exit_code == 0, result.output
    figures = run / "explanations" / "figures"
    manifest = (figures / "manifest.json").read_text()
    assert "misclassified" in manifest, manifest[:500]


class RaisingExplainer:
    name = "raiser"
    description = "attribute raises ValueError"

    def check(self, model):
        return None

    def explain(self, model, inputs, target, **options):
        raise ValueError("bad shape in my code")


class RaisingPlugin:
    from xaicore.plugin import hookimpl

    @hookimpl
    def register_explainers(self, register):
        register("raiser", RaisingExplainer)


def test_plugin_exceptions_are_one_line_naming_the_plugin(run, monkeypatch):
    from xaicore.plugins import loading as plugins

    plugins.pm.register(RaisingPlugin(), name="raising-test-plugin")
    try:
        result = xai("explain", "--run", run, "--method", "raiser", "--samples", "0:2")
        assert result.exit_code == 1, result.output
        assert result.output.strip() == ("Error: plugin raising-test-plugin (distribution unknown) "
                                         "failed in raiser.explain: ValueError: bad shape in my code")
        monkeypatch.setenv("XAI_DEBUG", "1")
        debug = CliRunner().invoke(cli, ["explain", "--run", str(run), "--method", "raiser",
                                         "--samples", "0:2", "--force"])
        assert debug.exit_code == 1 and "Traceback" in debug.output
        assert 'raise ValueError("bad shape in my code")' in debug.output
    finally:
        plugins.pm.unregister(name="raising-test-plugin")


def test_explain_draws_nothing_unless_asked_and_xai_figures_draws_what_is_chosen(run):
    assert xai("explain", "--run", run, "--method", "saliency", "--method", "gradcam",
               "--samples", "0:6").exit_code == 0
    figures = run / "explanations" / "figures"
    assert not figures.exists()  # results only: figures are on demand
    result = xai("figures", "--run", run, "--method", "saliency", "--samples", "1,4",
                 "--format", "pdf", "--format", "eps", "--training")
    assert result.exit_code == 0, result.output
    drawn = sorted(p.relative_to(figures).as_posix() for p in figures.rglob("sample_*.*"))
    assert drawn == ["saliency/sample_1.eps", "saliency/sample_1.pdf", "saliency/sample_4.eps",
                     "saliency/sample_4.pdf"]
    assert (figures / "saliency" / "sample_1.pdf").read_bytes()[:5] == b"%PDF-"
    assert (figures / "saliency" / "sample_4.eps").read_bytes()[:4] == b"%!PS"
    assert (run / "training_curves.pdf").read_bytes()[:5] == b"%PDF-"
    result = xai("figures", "--run", run, "--method", "shap")
    assert result.exit_code == 1 and "no saved explanations of shap" in result.output
    result = xai("figures", "--run", run, "--samples", "40:45")
    assert result.exit_code == 1 and "explained none of the samples" in result.output


def test_method_all_says_which_methods_it_skips_and_why(capsys):
    """A GRU has no Conv1d and no attention: --method all leaves out the Grad-CAM family,
    attention and deeplift, one stderr line each with the explainer's reason, and runs the rest."""
    import torch

    import xaicore
    from xaicore.application import get_explainer
    from xaicore.explaining.runs import method_names

    class GRUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(1, 4, batch_first=True)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.gru(x)[0][:, -1])

    model = xaicore.wrap_model(GRUNet(), class_names=["a", "b"], n_features=1, name="gru")
    names = method_names(("all",), model)
    skipped = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in skipped] == ["attention", "cam", "dcam", "deeplift",
                                                    "gradcam", "gradcam++"]
    for line in skipped:
        name = line.split()[1]
        reason = get_explainer(name).check(model)
        assert line == f"skipping {name} (cannot explain model 'gru'): {reason}"
    assert "saliency" in names and not {"gradcam", "attention", "tsr"} & set(names)


def test_a_users_baseline_file_reaches_integrated_gradients_from_the_cli(run, tmp_path):
    import xaicore

    dataset = load_dataset(load_checkpoint(run / "checkpoint.pt")["dataset"])
    baseline = dataset.train.X.mean(0)[:, 0] + 0.5  # one shared series [time] of one feature
    np.save(tmp_path / "baseline.npy", baseline)
    result = xai("explain", "--run", run, "--method", "integrated-gradients", "--samples", "0:3",
                 "--option", f"integrated-gradients.baseline={tmp_path / 'baseline.npy'}",
                 "--option", "integrated-gradients.n_steps=16", "--no-figures")
    assert result.exit_code == 0, result.output
    e = Explanation.load(run / "explanations" / "integrated-gradients.npz")
    model = xaicore.load_run(run)
    alone = xaicore.explain(model, dataset.test.X[:3], method="integrated-gradients",
                            baseline=baseline, n_steps=16)
    # the file's array and the Python array: the same computation on the same samples
    assert_identical(e.attributions, alone.attributions)
    fb = model.logits(np.repeat(baseline[None, :, None], 3, axis=0))[np.arange(3), e.targets]
    fx = model.logits(dataset.test.X[:3])[np.arange(3), e.targets]
    assert_close(e.extras["output_difference"], fx - fb, scale=float(np.abs(fx - fb).max()))
    np.save(tmp_path / "wrong.npy", np.zeros((149, 1)))
    bad = xai("explain", "--run", run, "--method", "integrated-gradients", "--samples", "0:3",
              "--option", f"integrated-gradients.baseline={tmp_path / 'wrong.npy'}", "--force")
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert ("integrated-gradients: option 'baseline' must be [time, feature] = (150, 1) shared by "
            "every sample or [sample, time, feature] = (3, 150, 1); got shape (149, 1)") in bad.output
    listed = xai("list", "--options", "integrated-gradients")
    assert ("baseline (array or zero or mean or blurred or random or pad or mask or unk, "
            "default 'zero')") in listed.output
