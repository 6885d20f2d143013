"""The HTML report: one self-contained file, escaped user names, the report command, a real browser."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xaicore.plugins import registry
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation

EVIL = "<script>alert(1)</script>"
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def explanation(method, n=3, t=150, f=1, c=2, seed=0, signed=True, extras=None, class_names=None):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), size=n)
    preds = probs.argmax(1)
    labels = preds.copy()
    labels[0] = (labels[0] + 1) % c
    attributions = rng.normal(size=(n, t, f))
    return Explanation(np.abs(attributions) if not signed else attributions,
                       np.cumsum(rng.normal(size=(n, t, f)), axis=1), preds, preds, probs, method,
                       extras=extras or {}, labels=labels, sample_ids=np.arange(10, 10 + n),
                       class_names=class_names or ["Gun", EVIL][:c])


def make_run(run: Path, with_evaluation=True) -> Path:
    (run / "explanations").mkdir(parents=True)
    torch.save({"format": 1, "model": "cnn-lstm-attention", "hyperparameters": {"hidden": 32},
                "state_dict": {}, "class_names": ["Gun", EVIL], "feature_names": ["value"],
                "seq_len": 150, "dataset": {"name": "GunPoint", "seed": 0}, "epoch": 3, "seed": 0},
               run / "checkpoint.pt")
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.93, "train_accuracy": 1.0}))
    rng = np.random.default_rng(3)
    explanation("integrated-gradients").save(run / "explanations" / "integrated-gradients.npz")
    heads = rng.dirichlet(np.ones(20), size=(3, 2, 20)).astype(np.float32)
    explanation("attention", signed=False,
                extras={"attention_heads": heads}).save(run / "explanations" / "attention.npz")
    if with_evaluation:
        (run / "evaluation.csv").write_text(f"method,deletion_auc\nintegrated-gradients,0.25\n"
                                            f"\"{EVIL}\",0.5\n")
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("run"))
    paths = registry.get_renderer("html-report").render([], out_dir=run, run_dir=run,
                                                        formats=("png",))
    assert paths == [run / "report.html"]
    return paths[0]


def test_report_is_one_self_contained_file(report):
    html = report.read_text()
    # every image is inline and nothing points outside the file
    assert re.findall(r'<img [^>]*src="(?!data:image/png;base64,)', html) == []
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("<script>") == 1  # only our own inline script
    # model card, every explanation, evaluation
    for text in ("cnn-lstm-attention", "GunPoint", "0.93", "integrated-gradients", "attention",
                 "deletion_auc", "hidden"):
        assert text in html
    assert 'data-key="compare"' in html


def test_user_names_are_escaped_everywhere(report):
    html = report.read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_draws_the_missing_figures(report):
    figures = report.parent / "explanations" / "figures"
    for name in ("integrated-gradients/sample_10.png", "compare/sample_12.png",
                 "attention/attention_sample_11.png", "integrated-gradients/time_importance.png"):
        assert (figures / name).is_file(), name


def test_report_names_what_it_cannot_show(tmp_path):
    run = make_run(tmp_path / "run", with_evaluation=False)
    for path in (run / "explanations").glob("*.npz"):
        path.unlink()
    (run / "explanations" / "broken.npz").write_bytes(b"not a zip")
    registry.get_renderer("html-report").render([], out_dir=run, run_dir=run, formats=("png",))
    html = (run / "report.html").read_text()
    assert "broken.npz could not be read" in html
    assert "No explanations in this run yet" in html and "No evaluation yet" in html
    with pytest.raises(XaiError, match="not a run directory"):
        registry.get_renderer("html-report").render([], out_dir=tmp_path, run_dir=tmp_path)


def test_report_command_refuses_to_overwrite_without_force(report):
    run = report.parent
    before = report.read_text()
    result = CliRunner().invoke(cli, ["report", "--run", str(run)])
    assert result.exit_code == 1 and "--force" in result.output and "Traceback" not in result.output
    assert report.read_text() == before
    out = run / "copy.html"
    result = CliRunner().invoke(cli, ["report", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(out))
    assert out.stat().st_size > 10_000
    result = CliRunner().invoke(cli, ["report", "--run", str(run / "nope")])
    assert result.exit_code == 1 and "no run directory" in result.output


@pytest.mark.browser
def test_report_in_headless_chromium(report):
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    requests = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert sizes and all(w > 0 for w in sizes)

            def visible_panel():
                return page.eval_on_selector_all(
                    ".panel", "ps => ps.filter(p => !p.hidden).map(p => "
                    "p.dataset.key + '/' + p.dataset.sample)")

            assert visible_panel() == ["compare/10"]
            page.click('button[data-key="integrated-gradients"]')
            assert visible_panel() == ["integrated-gradients/10"]
            assert page.is_visible('.global[data-key="integrated-gradients"]')
            assert not page.is_visible('.global[data-key="attention"]')
            page.click('button[data-sample="11"]')
            assert visible_panel() == ["integrated-gradients/11"]
            page.click("#next")
            assert visible_panel() == ["integrated-gradients/12"]
            page.click('button[data-key="attention"]')
            assert visible_panel() == ["attention/12"]
            assert "attention" in page.inner_text("#view-status")
            page.click("#prev")
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "report.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []
