"""Views of image explanations: the report's image, map and overlay canvases (method, sample and
opacity), every method side by side, the images of each class, Explanation.plot's figures and
the PNG files of sample-plots, checked against the pixels the saved arrays give."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from browser import browser_page
from image_runs import train_digits
from xai_plots.colours import quantised
from xai_plots.image_units import image_size, png_bytes, scale_of
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.files import file_digest
from xaicore.plugins import registry

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradcam", "integrated-gradients", "saliency")
SIDE = 16  # the digits at scale 2


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """image-cnn trained for 2 epochs on the 16x16 digits, three methods explaining test images
    0..9, and its report."""
    run = train_digits(tmp_path_factory, epochs=2)
    methods = [a for m in METHODS for a in ("--method", m)]
    result = xai("explain", "--run", run, *methods, "--samples", "0:10")
    assert result.exit_code == 0, result.output
    result = xai("report", "--run", run)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits", "scale": 2})


def load(run: Path, method: str) -> Explanation:
    return Explanation.load(run / "explanations" / f"{method}.npz")


# -- an independent statement of what the views draw ---------------------------------------------

def table(signed: bool) -> np.ndarray:
    """uint8 RGB per level: RdBu_r over [0.08, 0.92] (255 levels) or Reds over [0, 0.85] (256)."""
    from matplotlib import colormaps

    rgba = (colormaps["RdBu_r"](np.linspace(0.08, 0.92, 255)) if signed
            else colormaps["Reds"](np.linspace(0.0, 0.85, 256)))
    return np.rint(rgba[:, :3] * 255).astype(np.int64)


def expected_levels(e: Explanation, i: int) -> tuple[np.ndarray, bool, float]:
    """The 8-bit levels of sample position ``i``'s map: on a scale whose bound 2% of its |values|
    exceed, signed (-127..127 around 127) when the method gives any value below 0."""
    values = e.attributions[i].reshape(SIDE, SIDE, -1).sum(axis=2).astype(np.float64)
    signed = bool((e.attributions < 0).any())
    bound = max(float(np.quantile(np.abs(values), 0.98)) or float(np.abs(values).max()), 1e-30)
    if signed:
        return np.rint(np.clip(values / bound, -1, 1) * 127).astype(np.int64) + 127, True, bound
    return np.rint(np.clip(values / bound, 0, 1) * 255).astype(np.int64), False, bound


def expected_grey(run: Path, sid: int) -> np.ndarray:
    """The image's grey levels over the smallest and largest pixel of every explained image."""
    es = [load(run, m) for m in METHODS]
    low = min(float(e.inputs.min()) for e in es)
    high = max(float(e.inputs.max()) for e in es)
    e = es[0]
    x = e.inputs[int(np.flatnonzero(e.sample_ids == sid)[0])].reshape(SIDE, SIDE)
    return np.rint(np.clip((x - low) / (high - low), 0, 1) * 255).astype(np.int64)


def expected_overlay(run: Path, method: str, sid: int, opacity: float) -> np.ndarray:
    """The grey image with each pixel's colour over it at opacity times |value| / bound."""
    e = load(run, method)
    q, signed, _ = expected_levels(e, int(np.flatnonzero(e.sample_ids == sid)[0]))
    a = opacity * (np.abs(q - 127) / 127 if signed else q / 255)[..., None]
    grey = expected_grey(run, sid)[..., None].astype(np.float64)
    return np.rint(grey * (1 - a) + table(signed)[q] * a).astype(np.int64)


def close_levels(got: np.ndarray, want: np.ndarray) -> None:
    """Equal 8-bit pixels but for the rounding of halves (JavaScript's up, numpy's to even)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.abs(got.astype(np.int64) - want).max() <= 1


# -- arrays, quantisation and PNG ------------------------------------------------------------------

def test_image_explanations_record_their_size_and_lay_out_their_pixels(image_run, digits):
    e = load(image_run, "integrated-gradients")
    assert e.modality == "images" and e.extras["image_size"] == [SIDE, SIDE]
    assert image_size(e) == (SIDE, SIDE)
    from xai_plots.image_units import image_of

    assert (image_of(e, 3)[..., 0] == digits.test.X[e.sample_ids[3], :, 0].reshape(SIDE, SIDE)).all()
    older = Explanation(np.zeros((1, 256, 1)), np.zeros((1, 256, 1)), [0], [0], [[0.5, 0.5]], "saliency",
                        modality="images")
    assert image_size(older) == (16, 16)  # no recorded size: a square
    odd = Explanation(np.zeros((1, 250, 1)), np.zeros((1, 250, 1)), [0], [0], [[0.5, 0.5]], "saliency",
                      modality="images")
    with pytest.raises(XaiError, match="250 pixels per image, which are not 15x15; explain again"):
        image_size(odd)


def dequantised(levels: np.ndarray, scale) -> np.ndarray:
    """The values the levels of a scale stand for: -127..127 around 127 of [-bound, bound], or
    0..255 of [0, bound]."""
    q = np.asarray(levels, dtype=np.float64)
    return (q - 127) / 127 * scale.bound if scale.signed else q / 255 * scale.bound


def test_quantised_maps_keep_zero_and_their_values_to_half_a_level():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(16, 16))
    scale = scale_of(values, True)
    assert (np.abs(values) > scale.bound).mean() == pytest.approx(0.02, abs=1 / 256)
    levels = quantised(values, scale)
    assert levels.dtype == np.uint8 and levels.min() >= 0 and levels.max() <= 254
    assert quantised(np.zeros(3), scale).tolist() == [127] * 3  # 0 is exactly level 127
    inside = np.abs(values) <= scale.bound
    error = np.abs(dequantised(levels, scale) - values)[inside]
    assert error.max() <= scale.bound / 127 / 2 * (1 + 1e-9)
    positive = np.abs(values)
    up = scale_of(positive, False)
    assert np.abs(dequantised(quantised(positive, up), up) - np.minimum(positive, up.bound)).max() \
        <= up.bound / 255 / 2 * (1 + 1e-9)


def test_png_bytes_decode_to_the_same_levels():
    from PIL import Image

    rng = np.random.default_rng(1)
    for levels in (rng.integers(0, 256, (5, 7), dtype=np.uint8),
                   rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)):
        decoded = np.asarray(Image.open(io.BytesIO(png_bytes(levels))))
        assert (decoded == levels).all()


# -- notebook and files ----------------------------------------------------------------------------

def test_plot_draws_the_overlay_heatmap_and_one_panel_per_method(image_run):
    es = [load(image_run, m) for m in METHODS]
    sid = int(es[0].sample_ids[2])
    fig = es[1].plot(2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["image", "attribution", "overlay (70%)"]
    drawn = np.asarray(fig.axes[2].get_images()[0].get_array())
    close_levels(drawn, expected_overlay(image_run, "integrated-gradients", sid, 0.7))
    heat = es[0].plot(2, kind="heatmap")
    assert [ax.get_title() for ax in heat.axes][0] == "attribution"
    both = es[0].plot(2, compare=es[1:])
    titled = [ax.get_title() for ax in both.axes if ax.get_title()]
    # one model: each panel names it and its method
    assert titled == ["image", *(f"{e.model_name} · {e.method}" for e in es)]
    assert es[0].model_name
    assert f"sample {sid}:" in both._suptitle.get_text()
    import matplotlib.pyplot as plt

    for figure in (fig, heat, both):
        plt.close(figure)  # a notebook's figures stay open; a test's are closed
    with pytest.raises(XaiError, match="'tokens' is not a view of pixel explanations; choose one of "
                                       "auto, overlay, heatmap, compare"):
        es[0].plot(kind="tokens")


def test_sample_plots_write_each_sample_and_the_method_grid(image_run, tmp_path):
    from PIL import Image

    es = [load(image_run, m) for m in METHODS]
    written = registry.get_renderer("sample-plots").render(es, tmp_path, samples=[0, 1],
                                                           formats=["png"])
    ids = [int(s) for s in es[0].sample_ids[:2]]
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert names == {f"{m}/sample_{s}.png" for m in METHODS for s in ids} | {
        f"compare/sample_{s}.png" for s in ids}
    grid = Image.open(tmp_path / "compare" / f"sample_{ids[0]}.png")
    assert grid.width > 2.5 * grid.height  # one row: the image and the three methods
    manifest = json.loads((tmp_path / "manifest.json").read_text())["figures"]
    assert manifest[f"compare/sample_{ids[0]}"]["kind"] == "compare"
    out = registry.get_renderer("global-plots").render(es[:1], tmp_path, formats=["png"])
    assert [p.relative_to(tmp_path).as_posix() for p in out] == ["gradcam/class_means.png"]


def test_misclassified_images_get_the_predicted_and_the_true_class_side_by_side(image_run, tmp_path):
    e = load(image_run, "gradcam")
    wrong = np.flatnonzero(e.predictions != e.labels)
    assert wrong.size  # two epochs of a tiny CNN leave some of ten images misclassified
    true = Explanation(e.attributions, e.inputs, e.labels, e.predictions, e.probabilities, "gradcam",
                       extras=dict(e.extras), labels=e.labels, sample_ids=e.sample_ids,
                       class_names=e.class_names, feature_names=e.feature_names, modality="images")
    chosen = [int(wrong[0]), int(np.flatnonzero(e.predictions == e.labels)[0])]
    written = registry.get_renderer("sample-plots").render([e, true], tmp_path, samples=chosen,
                                                           formats=["png"])
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {n for n in names if "misclassified" in n} == {
        f"gradcam/misclassified_sample_{int(e.sample_ids[wrong[0]])}.png"}


# -- the report ------------------------------------------------------------------------------------

def page_text(html: str) -> str:
    return re.sub(r"<script[^>]*>.*?</script>|<style>.*?</style>|<[^>]+>", " ", html, flags=re.S)


def test_report_of_images_speaks_of_images(image_run):
    html = (image_run / "report.html").read_text()
    assert "xai-image-data" in html and 'id="xai-data"' not in html and "plotly.js v" not in html
    words = page_text(html)
    assert "image size" in words and "16 x 16 pixels" in words and "channels" in words
    for series_word in ("time step", "series length", "most pixels read", "seq_len"):
        assert series_word not in words, series_word


def test_image_report_embeds_each_map_within_a_level(image_run):
    from PIL import Image

    html = (image_run / "report.html").read_text()
    start = html.index('id="xai-image-data">') + len('id="xai-image-data">')
    data = json.loads(html[start:html.index("</script>", start)])
    assert (data["height"], data["width"], data["factor"]) == (SIDE, SIDE, 1)
    for view in data["views"]:
        e = load(image_run, view["method"])
        assert view["samples"] == e.sample_ids.tolist()
        assert view["signed"] == (view["method"] == "integrated-gradients")
        for i, uri in enumerate(view["attr"]):
            levels = np.asarray(Image.open(io.BytesIO(
                __import__("base64").b64decode(uri.split(",", 1)[1]))))
            want, _, bound = expected_levels(e, i)
            close_levels(levels, want)
            assert view["scale"][i] == pytest.approx(bound, rel=1e-6)


@pytest.mark.browser
def test_image_report_in_headless_chromium(image_run, digits):
    """Chromium draws the image, its map and their overlay from the embedded PNGs as the arrays
    give them; the method, the sample and the opacity slider redraw them; "all methods" draws the
    image and every method's overlay in a row; the classes' view shows every class; nothing is
    fetched and the console stays clean."""
    report = image_run / "report.html"
    requests, errors = [], []
    es = {m: load(image_run, m) for m in METHODS}
    ids = es["gradcam"].sample_ids.tolist()
    wrong = {int(s) for s, p, t in zip(ids, es["gradcam"].predictions, es["gradcam"].labels) if p != t}
    with browser_page(requests, errors) as page:
        page.goto(report.as_uri())

        def drawn(key: str, sid: int, opacity: float) -> None:
            page.wait_for_function("s => window.xaiImage.state.drawn === s",
                                   arg=f"{key}|{sid}|{opacity:g}", timeout=10_000)

        def pixels(selector: str) -> np.ndarray:
            got = page.evaluate("""s => { const c = document.querySelector(s);
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                return {w: c.width, h: c.height, d: Array.from(d)}; }""", selector)
            return np.array(got["d"]).reshape(got["h"], got["w"], 4)[..., :3]

        def check(method: str, sid: int, opacity: float) -> None:
            drawn(method, sid, opacity)
            grey = expected_grey(image_run, sid)
            close_levels(pixels("#image-input"), np.repeat(grey[..., None], 3, axis=2))
            e = es[method]
            q, signed, bound = expected_levels(e, ids.index(sid))
            close_levels(pixels("#image-heat"), table(signed)[q])
            close_levels(pixels("#image-overlay"), expected_overlay(image_run, method, sid, opacity))
            status = page.inner_text("#image-status")
            assert f"image {sid}:" in status and method in status
            assert ("(misclassified)" in status) == (sid in wrong)
            assert page.evaluate("() => document.getElementById('image-view').classList"
                                 ".contains('wrong')") == (sid in wrong)
            legend = page.inner_text("#image-legend")
            assert legend.startswith("diverging, centred on 0" if signed else "sequential: 0")
            assert f"{float(f'{bound:.3g}'):g}" in legend

        check("gradcam", ids[0], 0.7)
        page.click('button[data-image-key="integrated-gradients"]')
        check("integrated-gradients", ids[0], 0.7)
        page.click(f'button[data-image-sample="{ids[3]}"]')
        check("integrated-gradients", ids[3], 0.7)
        page.click("#image-next")
        check("integrated-gradients", ids[4], 0.7)
        before = pixels("#image-overlay")
        page.eval_on_selector("#image-opacity", "el => { el.value = 30; "
                                                "el.dispatchEvent(new Event('input')); }")
        check("integrated-gradients", ids[4], 0.3)
        assert (pixels("#image-overlay") != before).any()
        assert page.inner_text("#image-opacity-value") == "30%"
        page.eval_on_selector("#image-opacity", "el => { el.value = 0; "
                                                "el.dispatchEvent(new Event('input')); }")
        check("integrated-gradients", ids[4], 0.0)  # the image alone, in grey
        page.click('button[data-image-key="saliency"]')
        check("saliency", ids[4], 0.0)
        page.eval_on_selector("#image-opacity", "el => { el.value = 100; "
                                                "el.dispatchEvent(new Event('input')); }")
        check("saliency", ids[4], 1.0)
        # hovering the map names the pixel and its attribution (within a level of the scale)
        page.evaluate("() => document.getElementById('image-view').scrollIntoView({block: 'center'})")
        box = page.query_selector("#image-heat").bounding_box()
        row, column = 5, 11
        page.mouse.move(box["x"] + (column + 0.5) * box["width"] / SIDE,
                        box["y"] + (row + 0.5) * box["height"] / SIDE)
        hovered = page.inner_text("#image-hover")
        assert hovered.startswith(f"row {row}, column {column}: attribution "), hovered
        shown_value = float(re.search(r"attribution (\S+?),", hovered).group(1))
        e = es["saliency"]
        truth = float(e.attributions[ids.index(ids[4])].reshape(SIDE, SIDE)[row, column])
        _, _, bound = expected_levels(e, ids.index(ids[4]))
        assert abs(shown_value - min(truth, bound)) <= bound / 255 + 1e-3 * bound, (hovered, truth)
        marked = page.eval_on_selector_all("button.wrong[data-image-sample]",
                                           "els => els.map(e => Number(e.dataset.imageSample))")
        assert set(marked) == wrong
        # every method side by side: the image, then one overlay per method
        page.click('button[data-image-key="compare"]')
        drawn("compare", ids[4], 1.0)
        assert page.is_hidden("#image-view") and page.is_visible("#image-compare")
        shown = page.eval_on_selector_all("#image-compare canvas", "els => els.map(e => e.dataset.method)")
        assert shown == ["", *METHODS]
        for k, method in enumerate(METHODS):
            close_levels(pixels(f"#image-compare figure:nth-child({k + 2}) canvas"),
                         expected_overlay(image_run, method, ids[4], 1.0))
        # the classes of the test split, each with its count and its images
        counts = np.bincount(digits.test.y, minlength=10)
        rows = page.eval_on_selector_all(".img-class", """els => els.map(e => ({
            name: e.dataset.class, text: e.querySelector('h4').innerText,
            images: [...e.querySelectorAll('img')].filter(i => i.naturalWidth === 16).length}))""")
        assert [r["name"] for r in rows] == [str(c) for c in range(10)]
        for r in rows:
            assert f"{counts[int(r['name'])]} images" in r["text"], r
            assert r["images"] >= 7  # the mean image and six examples at least
        # the mean |attribution| shown is the method picked above's
        visible = page.eval_on_selector_all("[data-class-key]", "els => [...new Set(els.filter("
                                            "e => !e.hidden).map(e => e.dataset.classKey))]")
        assert visible == ["gradcam"]  # the first method's, with "all methods"
        page.click('button[data-image-key="saliency"]')
        visible = page.eval_on_selector_all("[data-class-key]", "els => [...new Set(els.filter("
                                            "e => !e.hidden).map(e => e.dataset.classKey))]")
        assert visible == ["saliency"]
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.click('button[data-image-key="compare"]')
        page.evaluate("() => document.getElementById('explanations').scrollIntoView()")
        page.screenshot(path=str(ROOT / "test-artifacts" / "image-report.png"))
    assert errors == []
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []


def test_a_report_of_large_images_stays_small(tmp_path):
    """24 RGB images of 224 x 224 explained by three methods (a smooth map, two noisy signed
    ones): the maps are embedded as 2 x 2 block means, the page is a few MB."""
    run = tmp_path / "run"
    (run / "explanations").mkdir(parents=True)
    torch.save({"format": 1, "model": "image-resnet18", "modality": "images", "hyperparameters": {},
                "state_dict": {}, "class_names": ["cat", "dog"], "feature_names": ["red", "green", "blue"],
                "seq_len": 224 * 224, "height": 224, "width": 224, "dataset": {"name": "pets"},
                "epoch": 1, "seed": 0}, run / "checkpoint.pt")
    rng = np.random.default_rng(0)
    n, side = 24, 224
    inputs = rng.random((n, side * side, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:side, 0:side] / side
    smooth = np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) * 8).reshape(1, -1, 1).repeat(n, 0)
    probs = rng.dirichlet(np.ones(2), size=n)
    for method, values in (("gradcam", np.repeat(smooth, 3, axis=2)),
                           ("integrated-gradients", rng.normal(size=(n, side * side, 3))),
                           ("saliency", rng.normal(size=(n, side * side, 3)))):
        e = Explanation(values, inputs, probs.argmax(1), probs.argmax(1), probs, method,
                        extras={"image_size": [side, side]}, labels=probs.argmax(1),
                        class_names=["cat", "dog"], feature_names=["red", "green", "blue"],
                        modality="images")
        e.model_digest = file_digest(run / "checkpoint.pt")
        e.save(run / "explanations" / f"{method}.npz")
    report = registry.get_renderer("html-report").render([], out_dir=run, run_dir=run)[0]
    html = report.read_text()
    assert "embedded as the means of 2x2 pixel blocks" in html
    assert "the run's data cannot be read here" in html  # its classes: the explained images
    size = report.stat().st_size
    print(f"report of 24 images of 224x224 by 3 methods: {size / 1e6:.2f} MB")
    assert size < 8_000_000, size
