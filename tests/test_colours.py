"""One colour convention in every view (the report's pages, the notebook's figures, xai figures):
signed maps red for the explained class and blue against it around a white 0, unsigned maps white
to red; the report's JavaScript colours a value as matplotlib does; labels that never overlap;
the time summaries' uniform level."""

import base64
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from browser import browser_page, label_count, overlapping_labels
from xai_plots.colours import (
    SIGNED_LEVELS,
    Scale,
    colour_script,
    colour_table,
    colours,
    is_signed,
    plotly_colorscale,
    quantised,
)
from xaicore.explaining.explanation import Explanation
from xaicore.files import file_digest
from xaicore.plugins import registry

matplotlib.use("Agg")

MOTION = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
#: The demo's methods, as long as their names are (the "all methods" view stacks them all).
DEMO = ("attention", "cam", "gradcam", "gradcam++", "gradient-shap", "input-x-gradient",
        "integrated-gradients", "saliency", "shap", "smoothgrad", "window-occlusion")
UNSIGNED = {"attention", "cam", "gradcam", "gradcam++", "saliency", "smoothgrad"}


def sixteenths(rng, shape, signed: bool) -> np.ndarray:
    """Values k / 16 (exact in float16, as the report embeds them) with the largest |value| 1, and
    none on the edge between two levels (k = 8: 8 / 16 x 127 = 63.5)."""
    k = rng.integers(-16 if signed else 0, 17, size=shape)
    k[k == 8] = 7
    k[k == -8] = -7
    k.flat[0] = 16
    return (k / 16).astype(np.float32)


def explanation(method, n=3, t=60, features=("value",), signed=True, seed=0,
                classes=("Gun", "Point")) -> Explanation:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(classes)), size=n)
    preds = probs.argmax(1)
    return Explanation(sixteenths(rng, (n, t, len(features)), signed),
                       np.cumsum(rng.normal(size=(n, t, len(features))), axis=1), preds, preds,
                       probs, method, labels=preds, sample_ids=np.arange(n),
                       class_names=list(classes), feature_names=list(features))


def make_run(run: Path, explanations: list[Explanation], t: int) -> Path:
    """A run directory holding ``explanations`` (no network: the report reads the files only)."""
    (run / "explanations").mkdir(parents=True)
    first = explanations[0]
    torch.save({"format": 1, "model": "cnn-lstm-attention", "hyperparameters": {},
                "state_dict": {}, "class_names": first.class_names,
                "feature_names": first.feature_names, "seq_len": t,
                "dataset": {"name": "synthetic", "seed": 0}, "epoch": 1, "seed": 0},
               run / "checkpoint.pt")
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 1.0}))
    for e in explanations:
        e.model_digest = file_digest(run / "checkpoint.pt")
        e.save(run / "explanations" / f"{e.method}.npz")
    registry.get_renderer("html-report").render([], out_dir=run, run_dir=run)
    return run / "report.html"


@pytest.fixture(scope="module")
def motion_report(tmp_path_factory) -> Path:
    """Six features (BasicMotions' names), a signed and an unsigned method."""
    es = [explanation("integrated-gradients", features=MOTION, t=100, seed=1),
          explanation("gradcam++", features=MOTION, t=100, signed=False, seed=2),
          explanation("gradient-shap", features=MOTION, t=100, seed=3)]
    return make_run(tmp_path_factory.mktemp("motion"), es, 100)


@pytest.fixture(scope="module")
def sensors_report(tmp_path_factory) -> Path:
    """Sixty features: more than can each have a label on its row."""
    names = [f"sensor_{k:02d}" for k in range(60)]
    es = [explanation("integrated-gradients", features=names, t=50),
          explanation("gradcam", features=names, t=50, signed=False, seed=2)]
    return make_run(tmp_path_factory.mktemp("sensors"), es, 50)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    """The demo's shape: one feature of 150 steps, its eleven methods, attention near uniform."""
    es = [explanation(m, t=150, signed=m not in UNSIGNED, seed=k) for k, m in enumerate(DEMO)]
    near = 1 / 150 * (1 + 0.1 * np.sin(np.arange(150) / 10))
    es[0].attributions[:] = (near / near.sum())[None, :, None]
    return make_run(tmp_path_factory.mktemp("demo"), es, 150)


def test_a_method_is_signed_or_not_as_a_whole():
    e = explanation("integrated-gradients", n=2)
    e.attributions[0] = np.abs(e.attributions[0])  # one sample without a negative value
    assert is_signed(e)  # ... still drawn on the diverging scale, like the other samples
    assert not is_signed(explanation("gradcam", signed=False))


def test_the_scales_put_zero_at_white_red_for_and_blue_against():
    signed, unsigned = Scale(True, 2.0), Scale(False, 2.0)
    zero, up, down = colours(np.array([0.0, 2.0, -2.0]), signed).tolist()
    assert min(zero) >= 240  # white at 0
    assert up[0] > 150 > up[2] and down[2] > 150 > down[0]  # red for, blue against
    white, red = colours(np.array([0.0, 2.0]), unsigned).tolist()
    assert min(white) >= 240 and red[0] > 150 > red[2]
    # levels: 127 a side of 0 (rounded to the nearest, beyond the bound the end level, NaN as 0)
    assert quantised(np.array([0.0, 1.0, -2.0, 5.0, np.nan]), signed).tolist() == \
        [127, 127 + 64, 0, 254, 127]
    assert quantised(np.array([0.0, 1.0, 2.0, -1.0]), unsigned).tolist() == [0, 128, 255, 0]


@pytest.mark.parametrize("signed", [True, False])
def test_the_plotly_scale_steps_at_the_levels_edges(signed):
    """Plotly's colour scale gives each value the colour of its level: every level's colour holds
    from one edge of its interval to the other (positions over [zmin, zmax] = [low, bound])."""
    scale = plotly_colorscale(signed)
    positions = [p for p, _ in scale]
    assert positions[0] == 0.0 and positions[-1] == 1.0 and positions == sorted(positions)
    table = colour_table(signed)
    bound = Scale(signed, 1.0)
    for value in np.random.default_rng(0).uniform(bound.low, 1.0, 500):  # none on an edge
        p = (value - bound.low) / (1.0 - bound.low)
        k = next(j for j in range(0, len(scale), 2) if scale[j][0] <= p <= scale[j + 1][0])
        assert scale[k][1] == "rgb({},{},{})".format(*table[quantised(np.array(value), bound)])


@pytest.mark.browser
def test_the_pages_colour_functions_are_pythons(tmp_path):
    """The report's colour functions (``window.xaiColours``) give every value the level and the
    colour ``quantised`` and ``colour_table`` give it, halves and ends included."""
    page_file = tmp_path / "colours.html"
    page_file.write_text(f"<!DOCTYPE html><html><body><script>{colour_script()}</script></body></html>")
    values = np.concatenate([np.linspace(-1.2, 1.2, 241), (np.arange(-127, 128) + 0.5) / 127,
                             (np.arange(0, 256) + 0.5) / 255, [0.0, -0.0]])
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto(page_file.as_uri())
        for signed in (True, False):
            got = page.evaluate("""([values, signed]) => values.map(v => [xaiColours.level(v, 1, signed),
                xaiColours.rgb(v, 1, signed)])""", [values.tolist(), signed])
            want = quantised(values, Scale(signed, 1.0))
            assert [g[0] for g in got] == want.tolist()
            assert [g[1] for g in got] == colour_table(signed)[want].tolist()
        assert page.evaluate("() => xaiColours.level(NaN, 1, true)") == SIGNED_LEVELS
    assert errors == []


def heatmap_pixels(page, k: int) -> np.ndarray:
    """The RGB of each cell ``[feature, time]`` of the k-th attribution strip Plotly drew (an
    image of one pixel per cell, the first feature at the bottom)."""
    from PIL import Image

    href = page.evaluate("(k) => document.querySelectorAll('#plot .hm image')[k].getAttribute('href')", k)
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))).convert("RGB"))
    return image[::-1]


@pytest.mark.browser
def test_report_colours_equal_the_figures_and_the_legend_states_them(motion_report):
    """The report's strips, read back from the page, have the colours matplotlib's figures draw
    for the same values (signed and unsigned), and the legends say what the colours mean."""
    from xai_plots.samples import heatmap_figure

    run = motion_report.parent
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto(motion_report.as_uri())
        page.wait_for_selector("#plot .main-svg")
        for method, sign in (("integrated-gradients", True), ("gradcam++", False)):
            page.click(f'button[data-key="{method}"]')
            e = Explanation.load(run / "explanations" / f"{method}.npz")
            legend, target = page.inner_text("#colour-legend"), e.class_names[e.targets[0]]
            if sign:
                assert f"red: for class {target}, blue: against it, white: 0" in legend
            else:
                assert f"unsigned: white at 0 to red at the largest value, for class {target}" in legend
            drawn = heatmap_pixels(page, 0)
            values = e.attributions[0].T  # [feature, time]; its largest |value| is 1
            assert (drawn == colours(values, Scale(sign, 1.0))).all()
            fig = heatmap_figure(e, 0)
            heat = fig.axes[1].get_images()[0].get_array()
            assert (np.asarray(heat) == drawn).all()  # the figure's rows: the features in order
            assert (f"red: for class {target}" if sign else "unsigned: white at 0") \
                in fig.get_supxlabel()
            import matplotlib.pyplot as plt
            plt.close(fig)
    assert errors == []


@pytest.mark.browser
@pytest.mark.parametrize("fixture", ["demo_report", "motion_report", "sensors_report"])
def test_labels_never_overlap(fixture, request):
    """No two labels (ticks, axis titles, method labels, legend entries, annotations) of the
    sample view and of the summary overlap, in each method's view and in "all methods"."""
    report = request.getfixturevalue(fixture)
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto(report.as_uri())
        page.wait_for_selector("#plot .main-svg")
        keys = page.eval_on_selector_all("button[data-key]", "bs => bs.map(b => b.dataset.key)")
        assert "compare" in keys
        for key in keys:
            page.click(f'button[data-key="{key}"]')
            for chart in ("#plot", "#global"):
                assert label_count(page, chart) > 5
                assert overlapping_labels(page, chart) == [], (key, chart)
        # the check sees an overlap: a label drawn over the first tick label
        page.evaluate("""() => { const t = document.querySelector('#global .xtick text');
            const copy = t.cloneNode(true); copy.textContent = 'over'; t.parentNode.appendChild(copy); }""")
        assert ("0", "over") in overlapping_labels(page, "#global")  # the tick it copies and it
        page.click('button[data-key="compare"]')
        # the stacked view names every method once, above its own strip
        names = page.eval_on_selector_all("#plot .annotation-text", "ts => ts.map(t => t.textContent)")
        assert [n.split()[0] for n in names] == sorted(n.split()[0] for n in names)
        assert len(names) == len(keys) - 1
    assert errors == []


@pytest.mark.browser
def test_summary_axis_starts_at_zero_and_shows_the_uniform_level(demo_report):
    """A near-uniform attention map reads as near-uniform: the axis starts at 0 and the share of
    an even spread (1/150) is drawn and labelled."""
    requests, errors = [], []
    with browser_page(requests, errors) as page:
        page.goto(demo_report.as_uri())
        page.wait_for_selector("#global .main-svg")
        got = page.evaluate("""() => { const gd = document.getElementById('global');
            const even = gd.data.find(t => t.name.startsWith('uniform'));
            return {name: even.name, y: even.y, range: gd._fullLayout.yaxis.range,
                    attention: gd.data[0].y, notes: gd._fullLayout.annotations.map(a => a.text)}; }""")
        assert got["name"] == "uniform 1/150" and "uniform 1/150" in got["notes"]
        assert np.allclose(got["y"], 1 / 150)
        low, high = got["range"]
        assert low == pytest.approx(0, abs=1e-12)  # rangemode tozero: 0 at the bottom
        # the curve's ups and downs (+-10% around 1/150) span a fifth of the axis, not all of it
        spread = max(got["attention"]) - min(got["attention"])
        assert spread < 0.25 * (high - low)
    assert errors == []


def test_time_summary_figure_draws_the_uniform_level_from_zero():
    from xai_plots.global_plots import time_importance_figure, time_shares

    e = explanation("attention", t=150, signed=False)
    shares, even = time_shares(e)
    assert np.allclose(np.nansum(shares, axis=1), 1.0) and np.allclose(even, 1 / 150)
    fig = time_importance_figure(e)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0
    assert any(np.allclose(line.get_ydata(), 1 / 150) for line in ax.get_lines())
    assert "uniform 1/150" in [t.get_text() for t in ax.texts]
    import matplotlib.pyplot as plt
    plt.close(fig)
    # series of several lengths: each sample's own 1/length, averaged where it has steps
    e.inputs[1, 100:] = np.nan
    e.attributions[1, 100:] = np.nan
    e = Explanation(e.attributions, e.inputs, e.targets, e.predictions, e.probabilities, e.method,
                    labels=e.labels, class_names=e.class_names, feature_names=e.feature_names)
    _, even = time_shares(e)
    assert np.allclose(even[:100], (2 / 150 + 1 / 100) / 3) and np.allclose(even[100:], 1 / 150)


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of a matplotlib figure's drawn texts (titles, labels, tick labels, legend entries)
    whose boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    undrawn = set()  # the labels of ticks outside an axis's view, which are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            pad = 1e-9 * (high - low)
            for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs()):
                if not low - pad <= loc <= high + pad:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    texts = [t for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in undrawn
             and (t.axes is None or t.axes.get_visible())]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for k, (a, box) in enumerate(boxes) for b, other in boxes[k + 1:]
            if box.overlaps(other) and box.width and other.width]


def test_figures_labels_never_overlap():
    """The comparison and the sample figures of a 6-feature run, and the summaries, draw no
    label over another."""
    import matplotlib.pyplot as plt

    from xai_plots.global_plots import feature_importance_figure, time_importance_figure
    from xai_plots.samples import comparison_figure, heatmap_figure, overlay_figure

    es = [explanation(m, features=MOTION, t=100, signed=m not in UNSIGNED, seed=k,
                      classes=("standing", "running", "walking", "badminton"))
          for k, m in enumerate(DEMO[:5])]
    figures = [comparison_figure([(e, 0) for e in es]), heatmap_figure(es[0], 0),
               overlay_figure(es[4], 0), feature_importance_figure(es[4]),
               time_importance_figure(es[0])]
    for fig in figures:
        assert overlapping_texts(fig) == [], fig.get_suptitle()
        plt.close(fig)
    fig, ax = plt.subplots()  # the check sees an overlap
    ax.set_title("a long title over")
    ax.text(0.5, 1.02, "another", transform=ax.transAxes, ha="center")
    assert [set(pair) for pair in overlapping_texts(fig)] == [{"a long title over", "another"}]
    plt.close(fig)
