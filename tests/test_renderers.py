"""sample-plots and global-plots: files in the requested formats, manifest, escaping, bad options."""

import json
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest

from tolerances import assert_close
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.plugins import registry

EVIL = "<script>alert(1)</script>"
MOTION = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]


def explanation(method, n=4, t=150, f=1, c=2, seed=0, signed=True, target="predicted",
                extras=None, class_names=None, feature_names=None):
    """GunPoint-like (150 x 1, 2 classes) or BasicMotions-like (100 x 6, 4 classes) results."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), size=n)
    preds = probs.argmax(1)
    labels = preds.copy()
    labels[0] = (labels[0] + 1) % c  # sample 0 is misclassified
    attributions = rng.normal(size=(n, t, f))
    return Explanation(np.abs(attributions) if not signed else attributions,
                       np.cumsum(rng.normal(size=(n, t, f)), axis=1),
                       preds if target == "predicted" else labels, preds, probs, method,
                       extras=extras or {}, labels=labels,
                       class_names=class_names or [f"class {i}" for i in range(c)],
                       feature_names=feature_names or [])


def read_manifest(out):
    return json.loads((out / "manifest.json").read_text())["figures"]


def test_sample_plots_write_each_format_comparison_and_misclassification(tmp_path):
    items = [explanation("integrated-gradients"), explanation("grad-cam", signed=False),
             explanation("integrated-gradients", target="true")]
    paths = registry.get_renderer("sample-plots").render(items, tmp_path, samples=[0, 1],
                                                         formats="png,svg")
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)
    assert {p.suffix for p in paths} == {".png", ".svg"}
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    assert {"integrated-gradients/sample_0.png", "grad-cam/sample_1.svg",
            "integrated-gradients-true/sample_0.png", "compare/sample_0.png",
            "integrated-gradients/misclassified_sample_0.png"} <= names
    # only misclassified samples get the predicted-vs-true view
    assert "integrated-gradients/misclassified_sample_1.png" not in names
    assert not (tmp_path / "compare" / "sample_2.png").exists()
    with open(tmp_path / "grad-cam" / "sample_0.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    ET.parse(tmp_path / "grad-cam" / "sample_0.svg")  # well-formed SVG
    manifest = read_manifest(tmp_path)
    assert manifest["compare/sample_1"]["kind"] == "compare"
    assert manifest["integrated-gradients/sample_1"]["sample_id"] == 1
    assert matplotlib.get_backend().lower() == "agg"
    import matplotlib.pyplot as plt
    assert plt.get_fignums() == []  # every figure closed after saving


def test_multivariate_sample_plot_is_series_above_feature_heatmap(tmp_path):
    e = explanation("saliency", t=100, f=6, c=4, signed=False, feature_names=MOTION)
    from xai_plots.samples import sample_figure

    fig = sample_figure(e, 1)
    series_ax, heat_ax, bar_ax = fig.axes[:3]
    assert len(series_ax.get_lines()) == 6
    image = np.asarray(heat_ax.get_images()[0].get_array())
    assert image.shape == (6, 100, 3)  # feature x time, in RGB
    assert [t.get_text() for t in heat_ax.get_yticklabels()] == MOTION
    # non-negative: the sequential scale from 0 (white) to the largest value (Reds' end of its
    # span), 255 levels rounded to the nearest
    from matplotlib import colormaps

    values = e.attributions[1].T.astype(np.float64)
    levels = np.rint(values / values.max() * 255)
    want = np.rint(colormaps["Reds"](np.linspace(0, 0.85, 256))[levels.astype(int), :3] * 255)
    assert (image == want).all()
    assert bar_ax.get_ylim() == pytest.approx((0.0, values.max()), rel=1e-6)  # the colour bar
    assert "unsigned: white at 0 to red" in fig.get_supxlabel()
    title = fig._suptitle.get_text()
    assert "predicted class" in title and "sample 1" in title
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_signed_attributions_use_a_diverging_scale_centred_on_zero():
    from matplotlib import colormaps

    from xai_plots.samples import sample_figure

    e = explanation("integrated-gradients", n=2)
    e.attributions[1] = np.abs(e.attributions[1])  # no value below 0 in this sample: still signed
    for i in range(2):
        fig = sample_figure(e, i)
        band = np.asarray(fig.axes[0].get_images()[0].get_array())[0]  # [time, rgb]
        values = e.attributions[i, :, 0].astype(np.float64)
        bound = np.abs(values).max()
        levels = np.rint(values / bound * 127) + 127  # 0 is level 127, the scale's white middle
        want = np.rint(colormaps["RdBu_r"](np.linspace(0.08, 0.92, 255))[levels.astype(int), :3] * 255)
        assert (band == want).all()
        low, high = fig.axes[1].get_ylim()  # the colour bar: centred on 0
        assert low == pytest.approx(-bound, rel=1e-6) and high == pytest.approx(bound, rel=1e-6)
        assert "red: for class" in fig.get_supxlabel() and "blue: against it" in fig.get_supxlabel()
        import matplotlib.pyplot as plt
        plt.close(fig)


def test_global_plots_shap_attention_and_eps(tmp_path):
    rng = np.random.default_rng(1)
    shap_e = explanation("shap", t=100, f=6, c=4, n=8, feature_names=MOTION,
                         extras={"expected_value": [0.1, 0.2, 0.3, 0.4]})
    heads = rng.dirichlet(np.ones(25), size=(4, 2, 25)).astype(np.float32)
    att_e = explanation("attention", signed=False, extras={"attention_heads": heads,
                                                           "attention_mean": heads.mean(1)})
    paths = registry.get_renderer("global-plots").render([shap_e, att_e], tmp_path, samples=[0],
                                                         formats=["png", "eps"])
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    assert {"shap/feature_importance.png", "shap/time_importance.eps", "shap/shap_bar.png",
            "shap/shap_waterfall_sample_0.png", "attention/attention_sample_0.png",
            "attention/time_importance.png"} <= names
    assert any(n.startswith("shap/shap_beeswarm_class_") for n in names)
    assert "attention/feature_importance.png" not in names  # one feature: nothing to rank
    assert (tmp_path / "shap" / "time_importance.eps").read_bytes().startswith(b"%!PS")


def test_shap_segments_keep_additivity_and_base_values():
    from xai_plots.shap_plots import base_values, segment_table

    e = explanation("shap", t=100, f=6, c=4, feature_names=MOTION,
                    extras={"expected_value": [0.1, 0.2, 0.3, 0.4]})
    values, data, names = segment_table(e, 10)
    assert values.shape == data.shape == (4, 60) and len(names) == 60
    # regrouped sums: float32 error of the summed magnitudes
    assert_close(values.sum(1), e.attributions.sum((1, 2)),
                 scale=float(np.abs(e.attributions).sum((1, 2)).max()))
    assert names[0] == "acc_x t0\u20139" and names[-1] == "gyr_z t90\u201399"  # no bounds: 10 cuts
    assert_close(base_values(e), np.array([0.1, 0.2, 0.3, 0.4])[e.targets])


def test_attention_heatmap_is_query_by_key(tmp_path):
    from xai_plots.attention import attention_figure

    rng = np.random.default_rng(0)
    heads = rng.dirichlet(np.ones(12), size=(2, 3, 8)).astype(np.float32)  # 8 queries x 12 keys
    e = explanation("attention", n=2, extras={"attention_heads": heads})
    fig = attention_figure(e, 0, heads[0].mean(0), heads[0])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["mean over heads", "head 0", "head 1", "head 2"]
    assert panels[1].get_images()[0].get_array().shape == (8, 12, 3)  # query x key, in RGB
    assert "white at 0 to red" in fig.get_supxlabel()
    assert "attention" in fig._suptitle.get_text()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_user_names_are_plain_text_in_figures(tmp_path):
    e = explanation("m", class_names=["$x^2$", EVIL], feature_names=["a$b"])
    paths = registry.get_renderer("sample-plots").render([e], tmp_path, samples=[0, 1],
                                                         formats=["svg"])
    assert paths
    for p in paths:
        svg = p.read_text()
        assert "<script" not in svg  # text is drawn as paths, never markup


@pytest.mark.parametrize("options, message", [
    ({"formats": ["png", "gif"]}, "unknown figure format"),
    ({"samples": [7]}, "out of range"),
    ({"samples": "first"}, "samples must be"),
])
def test_bad_options_name_the_problem(tmp_path, options, message):
    with pytest.raises(XaiError, match=message):
        registry.get_renderer("sample-plots").render([explanation("m")], tmp_path, **options)


def test_bad_attention_extras_name_the_problem(tmp_path):
    e = explanation("attention", extras={"attention_mean": np.zeros((4, 5), np.float32)})
    with pytest.raises(XaiError, match="attention_mean"):
        registry.get_renderer("global-plots").render([e], tmp_path, formats="png")


def test_method_names_map_to_distinct_safe_folders():
    from xai_plots.figures import safe_name

    names = ["gradcam", "gradcam++", "grad cam", "grad_cam", "../x", "tsr:saliency"]
    folders = [safe_name(n) for n in names]
    assert len(set(folders)) == len(names)
    assert all("/" not in f and ":" not in f and not f.startswith(".") for f in folders)
    assert safe_name("integrated-gradients") == "integrated-gradients"


def test_shap_bar_plot_draws_the_explanations_own_players():
    """Bars are the mean |Shapley value| of each player of the game that was solved (segments of
    6 steps of GunPoint-like series cut at 0/7/14/...), labelled with their real bounds."""
    import matplotlib.pyplot as plt
    import torch

    import xaicore
    from xai_plots.shap_plots import shap_figures

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40 * 2, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 2))
    model = xaicore.wrap_model(net, n_classes=2, feature_names=["x", "y"])
    rng = np.random.default_rng(0)
    X, background = (rng.normal(size=(n, 40, 2)).astype(np.float32) for n in (12, 30))
    e = xaicore.explain(model, X, method="shap", background=background, n_segments=6)
    bounds = [0, 7, 14, 20, 27, 34, 40]
    assert e.extras["segment_bounds"] == bounds
    expected = {f"{feature} t{a}\u2013{b - 1}": np.abs(e.attributions[:, a:b, f].sum(1)).mean()
                for f, feature in enumerate(["x", "y"]) for a, b in zip(bounds, bounds[1:])}
    figures = shap_figures(e, [0], segments=10, top_k=len(expected))
    name, fig, _, _ = next(figures)
    assert name == "shap_bar"
    ax = fig.axes[0]
    at = {round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    drawn = {at[round(p.get_y() + p.get_height() / 2)]: p.get_width() for p in ax.patches}
    assert drawn.keys() == expected.keys() and len(ax.patches) == len(expected)
    assert_close([drawn[k] for k in expected], list(expected.values()))
    top_down = [at[y] for y in sorted(at, reverse=True)]
    assert top_down == sorted(expected, key=expected.get, reverse=True)  # ranked by mean |value|
    plt.close("all")
    waterfall = [fig for name, fig, _, _ in figures if name.startswith("shap_waterfall")]
    steps = [t.get_text() for ax in waterfall[0].axes for t in ax.get_yticklabels()]
    assert len(waterfall) == 1 and any(label.endswith("x t7\u201313") for label in steps)
    plt.close("all")
