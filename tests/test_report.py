"""The HTML report: one self-contained file, escaped user names, the report command, a real browser."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from browser import browser_page
from tolerances import FLOAT16_RTOL, assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.files import file_digest
from xaicore.plugins import registry

EVIL = "<script>alert(1)</script>"
ROOT = Path(__file__).resolve().parents[1]


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


def save_into(run: Path, e: Explanation, name: str) -> Path:
    """Save ``e`` as xai explain does: recording the digest of the run's model."""
    e.model_digest = file_digest(run / "checkpoint.pt")
    return e.save(run / "explanations" / name)


def make_run(run: Path, with_evaluation=True) -> Path:
    (run / "explanations").mkdir(parents=True)
    torch.save({"format": 1, "model": "cnn-lstm-attention", "hyperparameters": {"hidden": 32},
                "state_dict": {}, "class_names": ["Gun", EVIL], "feature_names": ["value"],
                "seq_len": 150, "dataset": {"name": "GunPoint", "seed": 0}, "epoch": 3, "seed": 0},
               run / "checkpoint.pt")
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.93, "train_accuracy": 1.0}))
    rng = np.random.default_rng(3)
    save_into(run, explanation("integrated-gradients"), "integrated-gradients.npz")
    heads = rng.dirichlet(np.ones(20), size=(3, 2, 20)).astype(np.float32)
    save_into(run, explanation("attention", signed=False, extras={"attention_heads": heads}),
              "attention.npz")
    if with_evaluation:
        write_evaluation(run)
    return run


#: Scores compared with random: name -> higher is better.
DIRECTIONS = {"deletion_auc": False, "insertion_auc": True, "road_morf_auc": False,
              "road_lerf_auc": True, "infidelity": False}
#: Methods as long as the built-in ones, each with its mean offset from random on every score
#: (in its better direction): integrated-gradients better on all but ROAD LeRF.
METHODS = {"integrated-gradients": (0.25, 0.2, 0.2, -0.2), "tsr:integrated-gradients":
           (0.2, 0.2, 0.2, 0.2), "gradient-shap": (0.1, 0.1, 0.0, 0.0), "deeplift": (0.0,) * 4,
           "tsr:saliency": (-0.2,) * 4, "occlusion": (0.1, 0.0, 0.1, 0.0), EVIL: (0.3,) * 4,
           "feature-ablation": (0.2, 0.0, 0.0, 0.0)}


def write_evaluation(run: Path) -> None:
    """RUN/evaluation.csv, its settings and its scores figure as xai evaluate writes them, from
    seeded per-sample scores of ``METHODS`` (infidelity equal to random's for all of them)."""
    from xai_eval.runner import table_settings, verdict_table, write_results

    n, rng = 40, np.random.default_rng(1)
    random = {key: 0.5 + 0.1 * rng.standard_normal(n) for key in DIRECTIONS}
    per_sample = {"random": random}
    for method, offsets in METHODS.items():
        per_sample[method] = {key: random[key] + (1 if up else -1) * shift
                              + 0.05 * rng.standard_normal(n)
                              for (key, up), shift in zip(DIRECTIONS.items(), offsets)}
        per_sample[method]["infidelity"] = random["infidelity"] + np.where(np.arange(n) % 2, 1e-3,
                                                                           -1e-3)
    rows = {m: {"method": m, "samples": n, "randomisation": "pass"} for m in per_sample}
    rows["tsr:integrated-gradients"]["randomisation"] = "fail"
    scored = {"rows": rows, "per_sample": per_sample, "directions": DIRECTIONS,
              "versus_random": list(DIRECTIONS), "covered": {m: np.arange(n) for m in per_sample}}
    table = verdict_table(scored, n, seed=0, n_boot=200)
    write_results(table, {}, run / "evaluation.csv", run / "evaluation", figures=False,
                  meta={"model_digest": file_digest(run / "checkpoint.pt"),
                        **table_settings(table, DIRECTIONS)})


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("run"))
    paths = registry.get_renderer("html-report").render([], out_dir=run, run_dir=run,
                                                        formats=("png",))
    assert paths == [run / "report.html"]
    return paths[0]


def test_report_is_one_self_contained_file(report):
    html = report.read_text()
    # every image is inline and nothing points outside the file (the bundled charting library's
    # own strings aside: the browser test checks that no request leaves the page)
    page = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert re.findall(r'<img [^>]*src="(?!data:image/png;base64,)', page) == []
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert not re.search(r"<script[^>]*\ssrc=", html)  # every script is inline
    assert "plotly.js v" in html  # the charting library, bundled
    # model card, every explanation, evaluation
    for text in ("cnn-lstm-attention", "GunPoint", "0.93", "integrated-gradients", "attention",
                 "deletion_auc", "hidden"):
        assert text in html
    assert 'data-key="compare"' in html
    # each score with its interval in one cell, as the CLI shows it; p-values stay in the CSV
    ig = pd.read_csv(report.parent / "evaluation.csv").set_index("method").loc[
        "integrated-gradients"]
    cell = f"{ig['deletion_auc']:.3f} [{ig['deletion_auc_low']:.3f}, {ig['deletion_auc_high']:.3f}]"
    assert cell in html and "deletion_auc_low" not in html
    assert "deletion_auc_p" not in html
    # one verdict cell per metric, its direction in the header, the summary and the figure
    grid = html[html.index('id="evaluation-verdicts"'):html.index("</table>",
                                                                  html.index("evaluation-verdicts"))]
    assert "ROAD LeRF<br><small>higher is better</small>" in grid
    assert "deletion<br><small>lower is better</small>" in grid
    assert "infidelity<br><small>lower is better</small><br><small>uninformative</small>" in grid
    assert ig["summary"] in grid and ig["summary"].startswith("better on 3 of 4 metrics")
    assert f'class="v-better" title="{cell}; p (Holm) ' in grid
    assert grid.count('class="v-useless"') == len(METHODS)
    assert "Each method&#x27;s scores with their 95% intervals" in html


def test_user_names_are_escaped_everywhere(report):
    html = report.read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def embedded(html: str) -> dict:
    start = html.index('<script type="application/json" id="xai-data">')
    start = html.index(">", start) + 1
    return json.loads(html[start:html.index("</script>", start)])


def unpack(b64: str, scale: float) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(b64), dtype="<f2").astype(np.float64) * scale


def test_report_embeds_every_explanation_once_and_compactly(report):
    """The page draws from the arrays themselves: each explanation's attributions and each
    sample's series embedded once, within float16 precision of the saved values; no figure is
    drawn on disk."""
    data = embedded(report.read_text())
    run = report.parent
    for view in data["views"]:
        e = Explanation.load(run / "explanations" / f"{view['method']}.npz")
        assert view["samples"] == e.sample_ids.tolist()
        for i, (b64, scale) in enumerate(zip(view["attr"], view["scale"])):
            got = unpack(b64, scale).reshape(e.attributions.shape[1:])
            assert_close(got, e.attributions[i], rtol=FLOAT16_RTOL)
    assert sorted(map(int, data["series"])) == [10, 11, 12]  # one copy per sample
    x = unpack(data["series"]["11"]["data"], data["series"]["11"]["scale"])
    e = Explanation.load(run / "explanations" / "attention.npz")
    assert_close(x, e.inputs[1].ravel(), rtol=FLOAT16_RTOL)
    assert not (run / "explanations" / "figures").exists()


def test_each_extra_sample_and_method_adds_little(tmp_path):
    sizes = {}
    for n in (4, 12):
        run = tmp_path / f"run{n}"
        (run / "explanations").mkdir(parents=True)
        shutil.copy(base_checkpoint(tmp_path), run / "checkpoint.pt")
        for m, method in enumerate(("saliency", "gradcam", "integrated-gradients")):
            save_into(run, explanation(method, n=n, seed=m), f"{method}.npz")
        registry.get_renderer("html-report").render([], out_dir=run, run_dir=run)
        sizes[n] = (run / "report.html").stat().st_size
    per_pair = (sizes[12] - sizes[4]) / (8 * 3)
    assert per_pair < 30_000, per_pair


def base_checkpoint(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    if not (base / "checkpoint.pt").is_file():
        make_run(base, with_evaluation=False)
    return base / "checkpoint.pt"


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


def test_results_of_another_model_are_left_out_and_named(tmp_path):
    """A run retrained (or resumed) after its results were written: the report never shows the
    old model's explanations or evaluation as this model's."""
    run = make_run(tmp_path / "run")
    save_into(run, explanation("saliency"), "saliency.npz")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["epoch"] = 4  # the model changed
    torch.save(ckpt, run / "checkpoint.pt")
    save_into(run, explanation("gradcam"), "gradcam.npz")  # explained after the change
    registry.get_renderer("html-report").render([], out_dir=run, run_dir=run, formats=("png",))
    data = embedded((run / "report.html").read_text())
    assert [view["method"] for view in data["views"]] == ["gradcam"]
    html = (run / "report.html").read_text()
    for name in ("attention.npz", "integrated-gradients.npz", "saliency.npz"):
        assert f"{name} is left out: another model computed it" in html, name
    assert "evaluation.csv is left out: another model computed it" in html
    assert "better than random" not in html


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
    """Chromium drives the interactive report: switching method and sample redraws the series
    and attribution from the embedded arrays, hovering shows a value, the evaluation's verdict
    table fits a 1280 px window, nothing is fetched and the console stays clean."""
    run = report.parent
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        sizes = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        assert all(w > 0 for w in sizes)
        page.wait_for_selector("#plot .main-svg")

        def drawn():
            """The plotted series and the first attribution strip, as the page holds them."""
            return page.evaluate("""() => { const d = document.getElementById('plot').data;
                const strip = d.find(t => t.type === 'heatmap');
                return {series: d[0].y, strip: strip ? strip.z[0] : null,
                        name: strip ? strip.name : null}; }""")

        def expected(method, sid):
            e = Explanation.load(run / "explanations" / f"{method}.npz")
            i = int(np.flatnonzero(e.sample_ids == sid)[0])
            return e.inputs[i, :, 0], e.attributions[i, :, 0]

        DRAWN = 2 * FLOAT16_RTOL  # float16 as embedded, scaled back in the page
        first = drawn()  # the first method (attention) and the first sample (10)
        x, a = expected("attention", 10)
        assert first["name"] == "attention"
        assert_close(first["series"], x, rtol=DRAWN)
        assert_close(first["strip"], a, rtol=DRAWN)
        page.click('button[data-key="integrated-gradients"]')
        now = drawn()
        x, a = expected("integrated-gradients", 10)
        assert now["name"] == "integrated-gradients"
        assert_close(now["strip"], a, rtol=DRAWN)
        page.click('button[data-sample="12"]')
        now = drawn()
        x, a = expected("integrated-gradients", 12)
        assert_close(now["series"], x, rtol=DRAWN)
        assert_close(now["strip"], a, rtol=DRAWN)
        assert "integrated-gradients" in page.inner_text("#view-status")
        assert "sample 12" in page.inner_text("#view-status")
        page.click("#prev")
        assert "sample 11" in page.inner_text("#view-status")
        # hover the series at time step 40: a label with that point's value appears
        point = page.evaluate("""() => { const gd = document.getElementById('plot');
            gd.scrollIntoView({block: 'center'});
            const L = gd._fullLayout, box = gd.getBoundingClientRect();
            return {x: box.left + L.xaxis._offset + L.xaxis.l2p(40),
                    y: box.top + L.yaxis._offset + L.yaxis.l2p(gd.data[0].y[40])}; }""")
        page.mouse.move(point["x"] - 5, point["y"])  # enter the plot, then reach the point
        page.mouse.move(point["x"], point["y"], steps=3)
        page.wait_for_selector(".hoverlayer .hovertext", timeout=5000)
        label = page.evaluate(
            "() => document.querySelector('.hoverlayer .hovertext').textContent")
        x, _ = expected("integrated-gradients", 11)
        t, value = re.search(r"t=(\d+): (\S+)", label).groups()
        assert abs(int(t) - 40) <= 1, label  # the point under the mouse (or its neighbour)
        # the label prints 3 decimals
        assert float(value) == pytest.approx(x[int(t)], rel=2e-3, abs=1e-3), label
        page.click('button[data-key="compare"]')
        names = page.evaluate("""() => document.getElementById('plot').data
            .filter(t => t.type === 'heatmap').map(t => t.name)""")
        assert names == ["attention", "integrated-gradients"]
        # the evaluation's verdict table fits the page at 1280 px: nothing scrolls sideways
        grid = page.evaluate("""() => { const w = document.getElementById('evaluation-verdicts');
            const cells = [...w.querySelectorAll('td[class^="v-"]:not(.v-none)')];
            return {scroll: w.scrollWidth, client: w.clientWidth,
                    table: w.querySelector('table').getBoundingClientRect().right,
                    right: w.getBoundingClientRect().right,
                    verdicts: cells.filter(c => c.offsetWidth > 0).length,
                    title: cells.find(c => c.className === 'v-better').title}; }""")
        assert grid["scroll"] <= grid["client"] and grid["table"] <= grid["right"], grid
        assert grid["verdicts"] == len(METHODS) * len(DIRECTIONS), grid
        assert re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]; p \(Holm\) \S+",
                            grid["title"]), grid
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-artifacts" / "report.png"), full_page=True)
    assert dialogs == [] and errors == []
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []
