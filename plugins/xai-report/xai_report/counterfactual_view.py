"""The report's counterfactuals: for the sample chosen in a list, each feature's series and its
counterfactual overlaid (inline SVG, the changed cells shaded, both classes and probabilities
above), and the table of ``RUN/evaluation/counterfactuals.csv`` when the run has one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from xai_plots.counterfactual_figures import changed_runs, counterfactual_title
from xaicore.plugin import Explanation

from .page import esc, table

MAX_SAMPLES = 64  # samples of one result embedded in the page
MAX_FEATURES = 8  # panels per sample; more: the most changed features
WIDTH, HEIGHT, PAD = 640, 90, 4

SCRIPT = """
function xaiCounterfactual(select) {
  const root = select.closest('.counterfactuals');
  root.querySelectorAll('.cf-sample').forEach(d => { d.hidden = d.dataset.sample !== select.value; });
}
"""

def polyline(values: np.ndarray, low: float, high: float, colour: str) -> str:
    """``values`` as an SVG polyline over the panel (``low``..``high`` bottom to top)."""
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    points = " ".join(f"{PAD + t * step:.1f},{HEIGHT - PAD - (v - low) / span * (HEIGHT - 2 * PAD):.1f}"
                      for t, v in enumerate(values))
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{points}"/>'


def panel(series: np.ndarray, counterfactual: np.ndarray, changed: np.ndarray, name: str) -> str:
    """One feature: the changed runs shaded, the series grey, the counterfactual red."""
    both = np.concatenate([series, counterfactual])
    low, high = float(np.min(both)), float(np.max(both))
    step = (WIDTH - 2 * PAD) / max(len(series) - 1, 1)
    shaded = "".join(f'<rect class="cf-changed" x="{PAD + (a - 0.5) * step:.1f}" y="0" '
                     f'width="{(b - a) * step:.1f}" height="{HEIGHT}" fill="#f5b7b1" opacity="0.6"/>'
                     for a, b in changed_runs(changed))
    return (f'<div class="cf-panel"><small style="display:block">{esc(name)}</small>'
            f'<svg class="cf-feature" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img" aria-label="{esc(name)}: series and counterfactual">{shaded}'
            f'{polyline(series, low, high, "#555555")}'
            f'{polyline(counterfactual, low, high, "#c0392b")}</svg></div>')


def sample_view(e: Explanation, i: int, hidden: bool) -> str:
    """Sample position ``i``: its title and one panel per (most changed) feature."""
    steps = int(e.lengths[i])
    changed = np.asarray(e.extras["changed"][i], bool)[:steps]
    counterfactual = np.asarray(e.extras["counterfactual"][i])[:steps]
    features = np.argsort(-changed.sum(0), kind="stable")[:MAX_FEATURES]
    if len(features) == e.inputs.shape[2]:
        features = np.sort(features)
    panels = "".join(panel(e.inputs[i, :steps, f], counterfactual[:, f], changed[:, f],
                           str(e.feature_names[f])) for f in features)
    return (f'<div class="cf-sample" data-sample="{int(e.sample_ids[i])}"{" hidden" * hidden}>'
            f'<p class="cf-title">{esc(counterfactual_title(e, i))}; {int(changed.sum())} of '
            f"{changed.size} cells changed</p>{panels}</div>")


def counterfactual_section(explanations: list[Explanation]) -> str:
    """Each counterfactual result: a list of its samples and the chosen one drawn."""
    parts = []
    for e in explanations:
        shown = range(min(e.n_samples, MAX_SAMPLES))
        options = "".join(f'<option value="{int(e.sample_ids[i])}">sample {int(e.sample_ids[i])}: '
                          f"{esc(e.class_names[int(e.predictions[i])])} -&gt; "
                          f"{esc(e.class_names[int(e.extras['counterfactual_prediction'][i])])}"
                          f"</option>" for i in shown)
        more = (f'<p class="note">the first {MAX_SAMPLES} of {e.n_samples} samples</p>'
                if e.n_samples > MAX_SAMPLES else "")
        parts.append(f'<div class="counterfactuals" data-method="{esc(e.method)}"><h3>'
                     f"{esc(e.method)}: counterfactuals</h3><label>sample <select "
                     f'onchange="xaiCounterfactual(this)">{options}</select></label>{more}'
                     + "".join(sample_view(e, i, i > 0) for i in shown) + "</div>")
    return ("".join(parts) + '<p class="note">Grey: the series; red: its counterfactual (the '
            "series the model puts in the target class), the changed cells shaded.</p>")


def counterfactual_table(run_dir: Path) -> str:
    """``RUN/evaluation/counterfactuals.csv`` as a table (each measure ``mean [low, high]`` and
    its verdict against the nearest unlike neighbour), or "" when the run has none."""
    path = run_dir / "evaluation" / "counterfactuals.csv"
    if not path.is_file():
        return ""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    measures = [k for k in (rows[0] if rows else {}) if f"{k}_low" in rows[0]]
    cells = []
    for row in rows:
        out = [row["method"], row["samples"], row["summary"]]
        for key in measures:
            verdict = row.get(f"{key}_vs_nun", "")
            word = "" if verdict in ("", "not distinguishable") else f" ({verdict.split()[0]})"
            out.append(f"{float(row[key]):.3f} [{float(row[f'{key}_low']):.3f}, "
                       f"{float(row[f'{key}_high']):.3f}]{word}")
        cells.append(tuple(out))
    return ("<h3>Counterfactuals against the nearest unlike neighbour</h3>"
            + table(cells, ("method", "samples", "summary", *measures))
            + '<p class="note">Validity (target reached), proximity (L1, L2, L-infinity of the '
              "change), sparsity (share of unchanged cells), segments (changed runs per feature), "
              "plausibility (distance to the nearest target-class train series; lof, their local "
              "outlier factor, about 1 for an inlier): means with 95% "
              "bootstrap intervals; better / worse: than the NUN itself as the counterfactual "
              "(Wilcoxon, Holm-adjusted over the measures).</p>")
