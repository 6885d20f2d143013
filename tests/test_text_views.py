"""Views of text explanations: coloured tokens and words (HTML fragments, Explanation.plot in a
notebook, tokens.html files) and the report's text, words-per-class and attention views."""

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from browser import browser_page
from tolerances import FLOAT16_RTOL, assert_close
from xai_plots.colours import Scale, colour_table, is_signed, quantised
from xai_plots.text_html import heatmap_html, token_color
from xai_plots.text_units import class_words, is_text, units, word_text
from xai_report.text_view import TOP_LINKS, text_data, top_links
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.files import file_digest
from xaicore.plugins import registry

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>"
WORDS = ["the", "movie", "was", "surprisingly", "good", "bad", "acting", "plot", "boring", "loved",
         EVIL, "it", "and", "never", "again", "wonderful", "terrible", "films"]
#: How the words split into WordPiece tokens (the others are one token each).
PIECES = {"surprisingly": ["surprising", "##ly"], "wonderful": ["wonder", "##ful"],
          "films": ["film", "##s"]}
CLASSES = ["negative", "positive"]


def tokenized(words: list[str]) -> tuple[list[str], list[int]]:
    """[CLS] the pieces of ``words`` [SEP], and each token's word index (-1 for the specials)."""
    tokens, word_ids = ["[CLS]"], [-1]
    for w, word in enumerate(words):
        for piece in PIECES.get(word, [word]):
            tokens.append(piece)
            word_ids.append(w)
    return tokens + ["[SEP]"], word_ids + [-1]


def text_explanation(method: str, texts: list[list[str]], seed: int = 0, layers: int = 0,
                     heads: int = 0, attributions: list[list[float]] | None = None) -> Explanation:
    """An explanation of ``texts`` (lists of words) as the text input kind lays it out: random
    attributions (or the given ones), random predictions, and random attention of ``layers`` x
    ``heads`` when ``layers``."""
    rng = np.random.default_rng(seed)
    encoded = [tokenized(words) for words in texts]
    n, width = len(encoded), max(len(t) for t, _ in encoded)
    tokens = np.full((n, width), "", dtype="<U24")
    word_ids = np.full((n, width), -1, dtype=np.int64)
    inputs = np.full((n, width, 1), np.nan, dtype=np.float32)
    values = rng.normal(size=(n, width, 1)).astype(np.float32)
    for i, (toks, wids) in enumerate(encoded):
        tokens[i, :len(toks)] = toks
        word_ids[i, :len(toks)] = wids
        inputs[i, :len(toks), 0] = rng.integers(1000, 30000, len(toks))
        if attributions is not None:
            values[i, :len(toks), 0] = attributions[i]
    extras = {"tokens": tokens, "word_ids": word_ids}
    lengths = np.array([len(t) for t, _ in encoded])
    if layers:
        scores = rng.gamma(0.3, size=(n, layers, heads, width, width)).astype(np.float32)
        keys = np.arange(width)[None, None, None, None, :] < lengths[:, None, None, None, None]
        scores = np.where(keys, scores, 0.0)
        attention = scores / scores.sum(-1, keepdims=True)
        queries = np.arange(width)[None, None, None, :, None] < lengths[:, None, None, None, None]
        extras["attention"] = np.where(queries, attention, 0.0).astype(np.float32)
    probs = rng.dirichlet(np.ones(2), size=n)
    preds = probs.argmax(1)
    labels = preds.copy()
    labels[0] = 1 - labels[0]  # the first text is misclassified
    return Explanation(values, inputs, preds, preds, probs, method, extras=extras, labels=labels,
                       sample_ids=np.arange(20, 20 + n), class_names=CLASSES,
                       feature_names=["token"], lengths=lengths, modality="tokens")


def random_texts(n: int, seed: int, low: int = 3, high: int = 12) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[WORDS[k] for k in rng.integers(0, len(WORDS), rng.integers(low, high))]
            for _ in range(n)]


def spans(html: str) -> list[tuple[str, str, str]]:
    """(style, title, text) of each token span of a heatmap fragment."""
    return re.findall(r'<span style="([^"]*)" title="([^"]*)">([^<]*)</span>', html)


def background(style: str) -> tuple[int, int, int]:
    r, g, b = re.search(r"background:rgb\((\d+),(\d+),(\d+)\)", style).groups()
    return int(r), int(g), int(b)


def diverging(level: int) -> tuple[int, int, int]:
    """The colour of a signed level, from matplotlib's RdBu_r over its span [0.08, 0.92]."""
    from matplotlib import colormaps

    rgba = colormaps["RdBu_r"](np.linspace(0.08, 0.92, 255))[level]
    return tuple(int(round(c * 255)) for c in rgba[:3])


def test_is_text_tells_texts_from_series():
    e = text_explanation("saliency", [["good", "movie"]])
    assert is_text(e)
    series = Explanation(np.zeros((1, 5, 1)), np.zeros((1, 5, 1)), [0], [0], [[1.0]], "saliency")
    assert not is_text(series)


def test_tokens_are_escaped_and_specials_grey():
    e = text_explanation("saliency", [["the", EVIL, "movie"]])
    for mode in ("tokens", "words"):
        html = heatmap_html(e, 0, mode)
        assert "<script>" not in html and "&lt;script&gt;" in html
        shown = spans(html)
        assert [text for _, _, text in shown] == ["[CLS]", "the", "&lt;script&gt;", "movie",
                                                   "[SEP]"]
        for style, title, _ in (shown[0], shown[-1]):
            assert "background:#f0f1f4" in style and "rgba" not in style
            assert "special token" in title
    # a token that is itself markup and would close its title attribute
    e.extras["tokens"][0, 1] = '"><b onclick=x>'
    html = heatmap_html(e, 0)
    assert "<b" not in html and "&quot;&gt;&lt;b onclick=x&gt;</span>" in html
    assert 'title="&quot;&gt;&lt;b onclick=x&gt;: ' in html


def test_colours_follow_sign_and_magnitude():
    values = [5.0, 1.0, -2.0, 0.5, -4.0, 3.0, 9.0]  # [CLS] ... [SEP]: the specials' 5 and 9 ignored
    e = text_explanation("saliency", [["good", "bad", "plot", "it", "never"]], attributions=[values])
    shown = spans(heatmap_html(e, 0))[1:-1]
    colours = [background(style) for style, _, _ in shown]
    # the diverging scale up to the text's largest |value| of a word token (4), not the specials':
    # 127 levels a side, rounded to the nearest (halves to even: -2 / 4 * 127 = -63.5 -> -64)
    assert colours == [diverging(127 + k) for k in (32, -64, 16, -127, 95)]
    red, blue = colours[0], colours[1]
    assert red[0] > red[2] and blue[2] > blue[0]  # red for the class, blue against it
    assert "color:#fff" in shown[3][0] and "color:#fff" not in shown[0][0]  # white over dark blue
    assert [title for _, title, _ in shown] == ["good: +1", "bad: -2", "plot: +0.5", "it: -4",
                                                "never: +3"]
    assert token_color(-1.0, Scale(True, 2.0)) == "rgb({},{},{})".format(*diverging(127 - 64))
    assert "red: for class" in heatmap_html(e, 0) and "blue: against it" in heatmap_html(e, 0)


def test_an_unsigned_text_map_is_white_to_red():
    from matplotlib import colormaps

    values = [0.0, 1.0, 2.0, 0.0, 4.0, 3.0, 0.0]  # no value below 0: the sequential scale
    e = text_explanation("attention", [["good", "bad", "plot", "it", "never"]], attributions=[values])
    html = heatmap_html(e, 0)
    colours = [background(style) for style, _, _ in spans(html)[1:-1]]
    # 255 levels from 0 to the largest (4), rounded to the nearest (2 / 4 * 255 = 127.5 -> 128)
    levels = (64, 128, 0, 255, 191)
    reds = colormaps["Reds"](np.linspace(0, 0.85, 256))
    assert colours == [tuple(int(round(c * 255)) for c in reds[k, :3]) for k in levels]
    assert colours[2] == (255, 245, 240)  # 0 is white (Reds' lightest)
    luma = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in colours]
    assert np.all(np.diff([luma[k] for k in np.argsort(values[1:-1])]) < 0)  # darker with value
    assert "unsigned: white at 0 to red" in html


def test_words_merge_pieces_and_sum_their_attributions():
    # [CLS] the surprising ##ly wonder ##ful film ##s [SEP]
    values = [0.1, 1.0, 2.0, -0.5, -1.0, -2.0, 0.25, 0.5, 0.3]
    e = text_explanation("saliency", [["the", "surprisingly", "wonderful", "films"]],
                         attributions=[values])
    words = units(e, 0, "words")
    assert [u.text for u in words] == ["[CLS]", "the", "surprisingly", "wonderful", "films", "[SEP]"]
    assert_close([u.value for u in words], [0.1, 1.0, 1.5, -3.0, 0.75, 0.3])
    assert [u.special for u in words] == [True, False, False, False, False, True]
    assert words[2].pieces == ("surprising", "##ly")
    shown = spans(heatmap_html(e, 0, "words"))
    assert shown[2][1] == "surprisingly: +1.5 (tokens surprising ##ly)"
    # on the scale of the largest word (3): -3 the darkest blue, 1.5 = 63.5 levels rounds to 64
    assert background(shown[3][0]) == diverging(0) and background(shown[2][0]) == diverging(127 + 64)
    assert word_text(["un", "##believ", "##able"]) == "unbelievable"
    assert word_text(["##s"]) == "##s"  # a first piece is kept as it is


def test_words_that_carry_each_class():
    texts = [["good", "movie"], ["good", "plot", "good"], ["bad", "movie"]]
    attributions = [[0, 1.0, -0.5, 0], [0, 2.0, 0.5, 1.0, 0], [0, 3.0, 0.25, 0]]
    e = text_explanation("saliency", texts, attributions=attributions)
    e.targets[:] = [1, 1, 0]
    words = class_words(e)
    assert [(w.word, w.total, w.count) for w in words[1]] == [("good", 4.0, 3), ("plot", 0.5, 1)]
    assert [(w.word, w.total, w.count) for w in words[0]] == [("bad", 3.0, 1), ("movie", 0.25, 1)]


def test_plot_renders_text_for_notebooks():
    e = text_explanation("saliency", [["the", "surprisingly", "good", "movie"]])
    view = e.plot()
    html = view._repr_html_()
    assert all(t in html for t in ("surprising", "##ly", "good", "movie", "[CLS]"))
    assert "surprisingly" in e.plot(kind="words")._repr_html_()
    other = text_explanation("occlusion", [["the", "surprisingly", "good", "movie"]], seed=1)
    both = e.plot(compare=[other])._repr_html_()
    # each text names its model and method (an explanation made in Python records no model)
    assert "model · saliency · sample 20" in both and "model · occlusion · sample 20" in both
    with pytest.raises(XaiError, match="'overlay' is not a view of token explanations; choose one "
                                       "of auto, tokens, words, compare"):
        e.plot(kind="overlay")


def test_plot_in_a_jupyter_kernel_shows_the_tokens(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = text_explanation("saliency", [["the", "wonderful", EVIL, "movie"]]).save(tmp_path / "e")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"from xaicore.explaining.explanation import Explanation\n"
        f"Explanation.load({str(path)!r}).plot(kind='words')")])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    assert [o.output_type for o in outputs] == ["execute_result"]
    html = outputs[0]["data"]["text/html"]
    assert "wonderful" in html and "&lt;script&gt;" in html and "<script>" not in html


def test_renderers_write_tokens_html(tmp_path):
    e = text_explanation("saliency", random_texts(5, seed=2))
    written = registry.get_renderer("sample-plots").render([e], tmp_path, max_samples=3)
    assert written == [tmp_path / "saliency" / "tokens.html"]
    assert registry.get_renderer("global-plots").render([e], tmp_path) == []  # no series figures
    page = written[0].read_text()
    assert page.count('data-mode="tokens"') == 3 and page.count('data-mode="words"') == 3
    manifest = json.loads((tmp_path / "manifest.json").read_text())["figures"]
    assert manifest["saliency/tokens"]["kind"] == "tokens"


def test_top_links_keep_each_querys_strongest_keys():
    maps = np.array([[[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]])
    index, weight = top_links(maps, 2)
    assert index.tolist() == [[[1, 2], [0, 2]]]
    assert_close(weight, [[[0.6, 0.3], [0.5, 0.3]]])


def long_text(tokens: int) -> list[str]:
    """Words that make exactly ``tokens`` tokens with [CLS] and [SEP]."""
    words: list[str] = []
    while len(tokenized(words)[0]) < tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    if len(tokenized(words)[0]) > tokens:
        words[-1] = "it"
    return words


LONG = 512  # tokens of the second text of the report's run


def make_text_run(run: Path) -> Path:
    """A run directory of a text classifier (its checkpoint holds no weights: the report reads
    only its facts) with three explanations; the attention one of 512-token texts."""
    (run / "explanations").mkdir(parents=True)
    torch.save({"format": 1, "model": "bert-tiny", "hyperparameters": {"layers": 2},
                "state_dict": {}, "class_names": CLASSES, "feature_names": ["token"],
                "seq_len": 512, "dataset": {"name": "imdb", "seed": 0}, "epoch": 1, "seed": 0},
               run / "checkpoint.pt")
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.88}))
    texts = random_texts(4, seed=5)
    texts[1] = long_text(LONG)
    for method, seed, layers in (("integrated-gradients", 0, 0), ("occlusion", 1, 0),
                                 ("attention", 2, 3)):
        e = text_explanation(method, texts, seed=seed, layers=layers, heads=4)
        e.model_digest = file_digest(run / "checkpoint.pt")
        e.save(run / "explanations" / f"{method}.npz")
    return run


@pytest.fixture(scope="module")
def text_report(tmp_path_factory) -> Path:
    run = make_text_run(tmp_path_factory.mktemp("textrun"))
    return registry.get_renderer("html-report").render([], out_dir=run, run_dir=run)[0]


def test_report_of_texts_replaces_the_series_views(text_report):
    html = text_report.read_text()
    assert "xai-text-data" in html and 'id="xai-data"' not in html  # no series explorer
    assert "plotly.js v" not in html  # nor its library
    assert 'id="words"' in html and 'id="attention"' in html and "attention-canvas" in html
    assert "\\u003cscript>" in html  # the token <script>, in the embedded JSON
    page = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)


def test_report_embeds_tokens_once_and_attention_compactly(text_report):
    run = text_report.parent
    es = [Explanation.load(run / "explanations" / f"{m}.npz")
          for m in ("attention", "integrated-gradients", "occlusion")]
    data = text_data(es)
    assert sorted(data["texts"]) == ["20", "21", "22", "23"]
    long = data["texts"]["21"]
    assert len(long["tokens"]) == LONG and long["words"][:3] == ["[CLS]", "the", "movie"]
    assert long["words"][long["unit"][4]] == "surprisingly" == long["words"][long["unit"][5]]
    attention = data["attention"]["21"]
    assert (attention["layers"], attention["heads"], attention["length"]) == (3, 4, LONG)
    index = np.frombuffer(base64.b64decode(attention["index"]), "<u2")
    assert index.size == 3 * 4 * LONG * TOP_LINKS
    # the whole report of 3 methods x 4 texts, one of 512 tokens with 12 heads, stays small
    assert text_report.stat().st_size < 600_000


@pytest.mark.browser
def test_text_report_in_headless_chromium(text_report):
    """Chromium drives the text views: switching method, text and token/word mode redraws the
    coloured text from the embedded arrays (colours as the Python fragments have them), the words
    per class follow the method, and the attention of a 512-token text draws in well under a
    second or two, responds to layer, head and model-view clicks; nothing is fetched and the
    console stays clean."""
    run = text_report.parent
    requests, errors = [], []

    def expected(method: str, sid: int, mode: str) -> list[tuple[str, str, float]]:
        e = Explanation.load(run / "explanations" / f"{method}.npz")
        i = int(np.flatnonzero(e.sample_ids == sid)[0])
        return [(u.text, "special" if u.special else "", u.value) for u in units(e, i, mode)]

    with browser_page(requests, errors) as page:
        page.goto(text_report.as_uri())
        page.wait_for_selector("#text-heatmap span.tok")

        def shown() -> list[dict]:
            return page.eval_on_selector_all("#text-heatmap span.tok", """els => els.map(e => ({
                text: e.textContent, special: e.classList.contains('special') ? 'special' : '',
                value: Number(e.dataset.value), title: e.title,
                background: getComputedStyle(e).backgroundColor}))""")

        def check(method: str, sid: int, mode: str) -> None:
            now, want = shown(), expected(method, sid, mode)
            assert [(s["text"], s["special"]) for s in now] == [(t, k) for t, k, _ in want]
            values = np.array([v for _, _, v in want])
            assert_close([s["value"] for s in now], values, rtol=2 * FLOAT16_RTOL)
            status = page.inner_text("#text-status")
            assert f"text {sid}:" in status and method in status and f"by {mode}" in status
            # the colours are those of the Python fragments: the level of each value on the
            # text's scale (the page's values are float16, so a value on a level's edge may
            # fall on its neighbour)
            words = [v for _, k, v in want if not k]
            signed = is_signed(Explanation.load(run / "explanations" / f"{method}.npz"))
            scale = Scale(signed, max(map(abs, words)))
            table = [tuple(c) for c in colour_table(signed).tolist()]
            for s, (_, special, v) in zip(now, want):
                if special:
                    continue
                rgb = tuple(int(c) for c in re.findall(r"\d+", s["background"])[:3])
                assert abs(table.index(rgb) - int(quantised(np.array(v), scale))) <= 1, (v, rgb)

        check("attention", 20, "tokens")
        page.click('button[data-text-key="integrated-gradients"]')
        check("integrated-gradients", 20, "tokens")
        page.click('button[data-text-sample="22"]')
        check("integrated-gradients", 22, "tokens")
        page.click('button[data-text-mode="words"]')
        check("integrated-gradients", 22, "words")
        page.click("#text-prev")
        check("integrated-gradients", 21, "words")
        page.click('button[data-text-key="occlusion"]')
        check("occlusion", 21, "words")
        assert "(misclassified)" not in page.inner_text("#text-status")
        page.click('button[data-text-sample="20"]')
        assert "(misclassified)" in page.inner_text("#text-status")
        # the words per class follow the method
        visible = page.eval_on_selector_all(
            "[data-words-key]", "els => els.filter(e => !e.hidden).map(e => e.dataset.wordsKey)")
        assert visible == ["occlusion"]
        # the attention of the 512-token text: opened, drawn, fast
        page.click('button[data-text-sample="21"]')
        assert page.is_hidden("#attention-view")
        started = time.perf_counter()
        page.click("#attention-open")
        page.wait_for_selector("#attention-model canvas")
        opened = time.perf_counter() - started
        drawn_ms = page.evaluate("() => window.xaiText.attention.ms")
        assert opened < 2.0 and drawn_ms < 1000, (opened, drawn_ms)
        assert f"{LONG} tokens, 3 layers x 4 heads" in page.inner_text("#attention-status")
        assert page.eval_on_selector_all("#attention-model canvas", "els => els.length") == 12
        canvas = page.evaluate("""() => { const c = document.getElementById('attention-canvas');
            return {height: c.height, ink: (() => { const d = c.getContext('2d')
              .getImageData(0, 0, c.width, c.height).data; let n = 0;
              for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) { n++; } } return n; })()}; }""")
        assert canvas["height"] > LONG * 4 and canvas["ink"] > 10_000, canvas

        def pixels() -> str:
            return page.evaluate("() => document.getElementById('attention-canvas').toDataURL()")

        every_head = pixels()
        page.click('#attention-heads button[data-head="1"]')
        assert page.get_attribute('#attention-heads button[data-head="1"]',
                                  "aria-pressed") == "false"
        assert pixels() != every_head
        page.select_option("#attention-layer", "2")
        layer_two = pixels()
        assert layer_two != every_head
        page.click('#attention-model canvas[data-layer="1"][data-head="3"]')
        assert page.input_value("#attention-layer") == "1"
        assert page.eval_on_selector_all("#attention-model canvas.on",
                                         "els => els.map(e => e.title)") == ["layer 1, head 3"]
        assert pixels() != layer_two
        # hovering a query token leaves only its links
        page.evaluate("""() => { const h = document.querySelector('.att-head');
            h.scrollIntoView({block: 'end'}); h.scrollTop = 0; }  // below the sticky toolbar""")
        box = page.query_selector("#attention-canvas").bounding_box()
        row = int(page.get_attribute("#attention-canvas", "data-row"))
        one_head = pixels()
        page.mouse.move(box["x"] + 100, box["y"] + 4 + row * 3.5)
        assert page.evaluate("() => window.xaiText.attention.hover") == 3
        assert pixels() != one_head
        page.mouse.move(box["x"] + 100, box["y"] - 20)
        assert page.evaluate("() => window.xaiText.attention.hover") == -1
        # the rows scrolled to (the last ones) are drawn (only those near the window are)
        assert page.get_attribute("#attention-canvas", "data-rows").startswith("0:")
        page.evaluate("""() => { const h = document.querySelector('.att-head');
            h.scrollTop = h.scrollHeight; }""")
        page.wait_for_function("""() => document.getElementById('attention-canvas')
            .dataset.rows.split(':')[1] == 512""")
        # another text draws its own attention
        page.click('button[data-text-sample="23"]')
        length = len(expected("attention", 23, "tokens"))
        assert f"text 23: {length} tokens" in page.inner_text("#attention-status")
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.click('button[data-text-sample="21"]')
        page.evaluate("() => document.getElementById('explanations').scrollIntoView()")
        page.screenshot(path=str(ROOT / "test-artifacts" / "text-report.png"))
    assert errors == []
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []
