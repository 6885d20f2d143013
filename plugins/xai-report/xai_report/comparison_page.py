"""The comparison report's page: the models and their accuracy, how far their explanations agree
(per method and pair, with bootstrap intervals), and every shared sample with each model's
prediction and each method's map, side by side and named by model."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path

import matplotlib.pyplot as plt

from xai_plots.image_figures import methods_figure
from xai_plots.image_units import is_image
from xai_plots.samples import comparison_figure
from xai_plots.text_units import is_text
from xaicore.application import AGREEMENT_MEASURES, AGREEMENT_TOP_K
from xaicore.plugin import Explanation, write_text

from .comparison import Comparison
from .comparison_links import relative
from .page import document, esc, image_data
from .report import REPORT

MAX_DRAWN = 32  # samples drawn as figures; the tables cover every shared sample
HEADS = {"prediction_agreement": "same prediction", "spearman_abs": "Spearman of |attribution|",
         "top_k_overlap": f"top {AGREEMENT_TOP_K:.0%} overlap"}


def number(value: float, measure: str = "") -> str:
    """A table cell holding a figure: shown to 3 decimals, its full value in ``data-value``."""
    shown = "n/a" if math.isnan(value) else f"{value:.3f}"
    return (f'<td class="num" data-measure="{esc(measure)}" data-value="{value!r}">'
            f"{shown}</td>")


def interval(mean: float, low: float, high: float, measure: str) -> str:
    """A cell of a mean and its interval (``0.812 [0.770, 0.851]``), each value in a data field."""
    shown = "n/a" if math.isnan(mean) else f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    return (f'<td class="num" data-measure="{esc(measure)}" data-value="{mean!r}" '
            f'data-low="{low!r}" data-high="{high!r}">{shown}</td>')


def models_section(c: Comparison, out: Path) -> str:
    """Each model: its run (linked to the run's report where there is one), its test accuracy as
    trained, and its accuracy on the shared samples."""
    rows = []
    shared = set(c.sample_ids)
    for r in c.runs:
        known = [p for s in shared for p in [r.prediction(s)] if p is not None and p[2] >= 0]
        right = sum(p[0] == p[2] for p in known) / len(known) if known else float("nan")
        test = r.files.metrics.get("test_accuracy")
        own = r.files.run_dir / REPORT
        run = (f'<a href="{esc(relative(own, out))}">{esc(r.folder)}</a>' if own.is_file()
               else esc(r.folder))
        rows.append(f'<tr data-model="{esc(r.label)}"><td>{esc(r.label)}</td><td>{run}'
                    f"</td><td>{esc(r.files.checkpoint['model'])}</td>"
                    + (number(float(test), "test_accuracy") if isinstance(test, (int, float))
                       else "<td>?</td>")
                    + number(right, "shared_accuracy") + f'<td class="num">{len(known)}</td></tr>')
    return ('<div class="table-wrap"><table id="models"><thead><tr><th>model</th><th>run</th>'
            "<th>architecture</th><th>test accuracy</th><th>accuracy on the compared samples</th>"
            f'<th>samples</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def agreement_section(c: Comparison) -> str:
    """One row per method and pair of models: every measure's mean with its 95% interval."""
    heads = "".join(f'<th title="{esc(AGREEMENT_MEASURES[m])}">{esc(HEADS[m])}</th>'
                    for m in AGREEMENT_MEASURES)
    rows = []
    for method in c.methods:
        for a, b, found in c.pairs[method]:
            summary = found.summary()
            rows.append(f'<tr data-method="{esc(method)}" data-a="{esc(c.runs[a].label)}" '
                        f'data-b="{esc(c.runs[b].label)}"><td>{esc(method)}</td>'
                        f"<td>{esc(c.runs[a].label)}</td><td>{esc(c.runs[b].label)}</td>"
                        f'<td class="num">{len(found.sample_ids)}</td>'
                        + "".join(interval(summary[m], summary[f"{m}_low"], summary[f"{m}_high"], m)
                                  for m in AGREEMENT_MEASURES) + "</tr>")
    return ('<div class="table-wrap"><table id="agreement"><thead><tr><th>method</th>'
            f"<th>model A</th><th>model B</th><th>samples</th>{heads}</tr></thead><tbody>"
            f'{"".join(rows)}</tbody></table></div>'
            '<p class="note">Per sample, the two maps of a method are compared by the Spearman '
            "correlation of their absolute attributions over every time step and feature, and by "
            f"the share of their top {AGREEMENT_TOP_K:.0%} cells by absolute attribution that they "
            "have in common (ties broken by position); each cell is the mean over the samples "
            "both models explained, with its 95% percentile bootstrap interval (1,000 resamples, "
            "seed 0). The same measures are in comparison.csv of xai explain --run A --run B.</p>")


def sample_block(c: Comparison, sid: int, drawn: bool) -> str:
    """One sample: its true class, each model's prediction, each method's agreement per pair,
    and (when ``drawn``) every model's map of every method, one below the other."""
    classes = c.class_names
    preds = []
    truth = -1
    for r in c.runs:
        p = r.prediction(sid)
        if p is None:
            preds.append(f'<tr data-model="{esc(r.label)}"><td>{esc(r.label)}</td>'
                         "<td>not explained</td><td></td></tr>")
            continue
        pred, prob, truth = p
        wrong = truth >= 0 and pred != truth
        preds.append(f'<tr data-model="{esc(r.label)}"{" class=wrong" if wrong else ""}>'
                     f'<td>{esc(r.label)}</td><td class="prediction">{esc(classes[pred])}'
                     f'{" (misclassified)" if wrong else ""}</td>{number(prob, "probability")}</tr>')
    rows = []
    for method in c.methods:
        for a, b, found in c.pairs[method]:
            hits = (found.sample_ids == sid).nonzero()[0]
            if not len(hits):
                continue
            k = int(hits[0])
            rows.append(f'<tr data-method="{esc(method)}" data-a="{esc(c.runs[a].label)}" '
                        f'data-b="{esc(c.runs[b].label)}"><td>{esc(method)}</td>'
                        f"<td>{esc(c.runs[a].label)} vs {esc(c.runs[b].label)}</td>"
                        + number(float(found.spearman_abs[k]), "spearman_abs")
                        + number(float(found.top_k_overlap[k]), "top_k_overlap") + "</tr>")
    true_text = esc(classes[truth]) if truth >= 0 else "unknown"
    parts = [f'<div class="sample" id="sample-{sid}" data-sample="{sid}"><h3>Sample {sid} '
             f'<small>true class <span class="truth">{true_text}</span></small></h3>',
             '<div class="grid"><div class="table-wrap"><table class="predictions"><thead><tr>'
             "<th>model</th><th>predicts</th><th>probability</th></tr></thead><tbody>"
             f'{"".join(preds)}</tbody></table></div>',
             '<div class="table-wrap"><table class="sample-agreement"><thead><tr><th>method</th>'
             f"<th>models</th><th>{esc(HEADS['spearman_abs'])}</th>"
             f"<th>{esc(HEADS['top_k_overlap'])}</th></tr></thead><tbody>{''.join(rows)}"
             "</tbody></table></div></div>"]
    if drawn:
        figure = sample_figure(c, sid)
        if figure:
            parts.append(figure)
    return "".join(parts) + "</div>"


def sample_figure(c: Comparison, sid: int) -> str:
    """Every model's map of every method for sample ``sid`` as an inline PNG ("" for texts, which
    have no such figure); panels labelled model · method, each map on its own colour scale."""
    rows: list[tuple[Explanation, int]] = []
    for method in c.methods:
        for r in c.runs:
            e = r.by_method[method]
            hits = (e.sample_ids == sid).nonzero()[0]
            if len(hits):
                rows.append((labelled(e, r.label), int(hits[0])))
    if not rows or is_text(rows[0][0]):
        return ""
    fig = methods_figure(rows) if is_image(rows[0][0]) else comparison_figure(rows)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    finally:
        plt.close(fig)
    return image_data(buffer.getvalue(), f"sample {sid}: each model's map of each method, "
                                          "each on its own colour scale", f"maps of sample {sid}")


def labelled(e: Explanation, label: str) -> Explanation:
    """A shallow copy of ``e`` whose model goes by ``label`` (the figures name panels by it)."""
    twin = copy.copy(e)
    twin.model_name = label
    return twin


def write_page(c: Comparison, out: Path) -> Path:
    """The whole comparison report at ``out``: self-contained, nothing fetched."""
    dataset = c.runs[0].files.checkpoint.get("dataset")
    name = dataset.get("name", "?") if isinstance(dataset, dict) else str(dataset or "?")
    name = Path(name).name if Path(name).is_absolute() else name
    drawn = set(c.sample_ids[:MAX_DRAWN])
    blocks = "".join(sample_block(c, sid, sid in drawn) for sid in c.sample_ids)
    jump = " ".join(f'<a href="#sample-{sid}">{sid}</a>' for sid in c.sample_ids)
    note = (f'<p class="note">Figures are drawn for the first {MAX_DRAWN} samples; the tables '
            f"cover all {len(c.sample_ids)}.</p>" if len(c.sample_ids) > MAX_DRAWN else "")
    sections = [("models", "Models", models_section(c, out)),
                ("agreement", "Agreement between models", agreement_section(c)),
                ("samples", "Samples", f'<p class="note">Samples: {jump}</p>{note}{blocks}')]
    labels = [r.label for r in c.runs]
    title = f"xai comparison: {' vs '.join(labels)} on {name}"
    subtitle = f"runs {', '.join(r.folder for r in c.runs)}; methods {', '.join(c.methods)}"
    return write_text(out, document(title, subtitle, sections))
