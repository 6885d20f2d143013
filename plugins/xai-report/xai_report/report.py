"""``HtmlReport``: one self-contained HTML file of a run (model card, explanations, evaluation)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xai_plots.colours import colour_script
from xai_plots.counterfactual_figures import is_counterfactual
from xai_plots.image_units import is_image
from xai_plots.text_units import is_text
from xaicore.application import get_modality, read_figures, stale_reason
from xaicore.plugin import Option, XaiError, write_text

from .comparison_links import links_section
from .counterfactual_view import SCRIPT as COUNTERFACTUAL_SCRIPT
from .counterfactual_view import counterfactual_section, counterfactual_table
from .dataset_view import dataset_section
from .explorer import SCRIPT, explorer_section
from .image_script import IMAGE_SCRIPT
from .image_view import image_classes_section, image_section
from .page import document, esc, image, table
from .run_files import RunFiles, read_run
from .text_script import TEXT_SCRIPT
from .text_view import text_section, words_section

REPORT = "report.html"
RUN_FIGURES = (("training_curves.png", "Training curves: loss and accuracy per epoch"),
               ("confusion_matrix.png", "Confusion matrix of the test split"))


class HtmlReport:
    """``render([], out_dir=RUN, run_dir=RUN)`` writes ``RUN/report.html`` (or ``out=FILE``).

    Saved explanations are drawn in the browser from their arrays (``explorer.py``, for texts
    ``text_view.py``: coloured texts, the words of each class, attention; for images
    ``image_view.py``: overlays, every method side by side, the images of each class); streamed
    results (``.zarr`` stores) get a dataset view from their summaries; option ``samples``
    ("0:8,misclassified") draws those samples of each store one by one.
    """

    name = "html-report"
    stage = None  # on demand: xai report
    options = (
        Option("run_dir", object, None, "the run directory"),
        Option("out", object, None, "the report file (default: RUN/report.html)"),
        Option("samples", object, None, "samples shown in the explorer"),
    )
    description = "One self-contained HTML file: model card, interactive explanations, evaluation"

    def render(self, explanations: Sequence[Any], out_dir: Path, *, run_dir: Path | None = None,
               out: Path | None = None, samples: str | None = None,
               **options: Any) -> list[Path]:
        from plotly.offline import get_plotlyjs

        run = read_run(Path(run_dir if run_dir is not None else out_dir))
        path = Path(out) if out is not None else Path(out_dir) / REPORT
        sections = [("model", "Model card", model_card(run)),
                    ("explanations", "Explanations", explanations_section(run))]
        texts = [e for e in run.explanations if is_text(e)]
        images = [e for e in run.explanations if is_image(e)]
        if texts:
            sections.append(("words", "Words that carry each class", words_section(texts)))
        if images:
            sections.append(("classes", "Images per class",
                             image_classes_section(images, run.run_dir)))
        if run.stores:
            sections.append(("dataset", "Dataset view",
                             dataset_section(run.stores, run.run_dir, samples)))
        sections.append(("evaluation", "Evaluation",
                         evaluation_section(run.run_dir) + counterfactual_table(run.run_dir)))
        figures = figures_section(run.run_dir)
        if figures:
            sections.append(("figures", "Figures", figures))
        compared = links_section(run.run_dir, path)
        if compared:
            sections.append(("comparisons", "Comparisons with other models", compared))
        ckpt = run.checkpoint
        title = f"xai report: {ckpt['model']} on {dataset_name(ckpt)}"
        changes = [e for e in run.explanations if is_counterfactual(e)]
        series = len(run.explanations) - len(texts) - len(images) - len(changes)
        scripts = [colour_script()] if run.explanations else []
        scripts += [get_plotlyjs(), SCRIPT] if series else []
        scripts += [COUNTERFACTUAL_SCRIPT] if changes else []
        scripts += [TEXT_SCRIPT] if texts else []
        scripts += [IMAGE_SCRIPT] if images else []
        # the run folder's name only: a report is shared, the path on this machine stays here
        html = document(title, f"run {run.run_dir.resolve().name}", sections, scripts)
        write_text(path, html)
        return [path]


def dataset_name(ckpt: dict) -> str:
    spec = ckpt.get("dataset")
    if isinstance(spec, dict):
        return str(spec.get("name", "?"))
    return str(spec or "?")


def model_card(run: RunFiles) -> str:
    ckpt, metrics = run.checkpoint, run.metrics
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))
               and not isinstance(v, bool)}
    cards = "".join(f'<div class="card"><b>{esc(_fmt(v))}</b><span>{esc(k.replace("_", " "))}'
                    f"</span></div>" for k, v in scalars.items() if "accuracy" in k)
    spec = ckpt.get("dataset")
    # file names only, no paths on this machine, and no digests: the report is shared
    spec_text = (", ".join(f"{k}={Path(v).name if isinstance(v, str) and Path(v).is_absolute() else v}"
                           for k, v in spec.items() if not k.endswith("sha256"))
                 if isinstance(spec, dict) else str(spec or "?"))
    facts = [("model", ckpt.get("model_name") or ckpt["model"]), ("dataset", spec_text),
             ("classes", ", ".join(map(str, ckpt["class_names"]))),
             *shape_facts(ckpt), ("epochs trained", ckpt.get("epoch", "?")),
             ("seed", ckpt.get("seed", "?"))]
    parts = [f'<div class="cards">{cards}</div>' if cards else "",
             "<h3>Model and data</h3>", table(facts)]
    hyper = ckpt.get("hyperparameters") or {}
    if hyper:
        parts += ["<h3>Hyperparameters</h3>", table(sorted(hyper.items()), ("name", "value"))]
    shown = {k for k in scalars if "accuracy" in k} | set(hyper) | {"model", "dataset", "seed"}
    if "image size" in dict(facts):  # the card's image size and channels, not a length
        shown |= {"seq_len", "n_features"}
    other = [(k, v) for k, v in metrics.items()
             if k not in shown and isinstance(v, (int, float, str)) and str(v)]
    if other:
        pairs = [other[i] + (other[i + 1] if i + 1 < len(other) else ("", ""))
                 for i in range(0, len(other), 2)]
        parts += ["<h3>Training metrics</h3>", table(pairs, ("metric", "value") * 2)]
    figures = [image(run.run_dir / name, caption) for name, caption in RUN_FIGURES
               if (run.run_dir / name).is_file()]
    parts.append(f'<div class="grid">{"".join(figures)}</div>' if figures else
                 '<p class="note">No training curves or confusion matrix in this run directory.</p>')
    report_txt = run.run_dir / "classification_report.txt"
    if report_txt.is_file():
        parts += ["<h3>Classification report (test split)</h3>",
                  f"<pre>{esc(report_txt.read_text(errors='replace'))}</pre>"]
    return "".join(parts)


def explanations_section(run: RunFiles) -> str:
    notes = "".join(f'<p class="note">{esc(name)} could not be read: {esc(msg)}</p>'
                    for name, msg in run.unreadable.items())
    notes += "".join(f'<p class="note">{esc(name)} is left out: {esc(msg)}</p>'
                     for name, msg in run.left_out.items())
    if not run.explanations:
        if run.stores:
            return notes + ('<p class="note">Only streamed results in this run: see the dataset '
                            "view.</p>")
        return notes + ('<p class="note">No explanations in this run yet: write them with '
                        "<code>xai explain --run DIR --method all</code>.</p>")
    changes = [e for e in run.explanations if is_counterfactual(e)]
    series = [e for e in run.explanations
              if not is_text(e) and not is_image(e) and not is_counterfactual(e)]
    texts = [e for e in run.explanations if is_text(e)]
    images = [e for e in run.explanations if is_image(e)]
    return (notes + (explorer_section(series) if series else "")
            + (counterfactual_section(changes) if changes else "")
            + (text_section(texts) if texts else "") + (image_section(images) if images else ""))


def evaluation_section(run_dir: Path) -> str:
    csv_path = run_dir / "evaluation.csv"
    if not csv_path.is_file():
        return ('<p class="note">No evaluation yet: run <code>xai evaluate --run DIR</code> to '
                "score the explanations' faithfulness.</p>")
    settings = run_dir / "evaluation" / "settings.json"
    try:
        meta = json.loads(settings.read_text())
        digest, failed = meta.get("model_digest", ""), dict(meta.get("failed_methods", {}))
        skipped = dict(meta.get("skipped_metrics", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        meta, digest, failed, skipped = {}, "", {}, {}
    reason = stale_reason(digest, run_dir)
    if reason:
        return (f'<p class="note">{esc(csv_path.name)} is left out: {esc(reason)}; evaluate '
                f"again with <code>xai evaluate --run DIR --force</code>.</p>")
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise XaiError(f"{csv_path} could not be read: {exc}") from None
    parts = []
    if rows:
        parts.append(verdict_grid(rows[0], rows[1:], meta if isinstance(meta, dict) else {}))
        parts.append('<p class="note">Each cell: the method\'s verdict on that metric against the '
                     "random baseline on the same samples (Wilcoxon signed-rank p, Holm-adjusted "
                     "over the method's metrics, below 0.05 and the paired bootstrap interval on "
                     "one side of zero; &asymp; random: not distinguishable); hover a cell for the "
                     "score, its 95% bootstrap interval and the adjusted p. A metric marked "
                     "uninformative separates no method from random on this run and is left out "
                     "of the summaries.</p>")
        header, cells = evaluation_columns(rows[0], rows[1:])
        parts.append("<details><summary>Every score with its 95% bootstrap interval</summary>"
                     f"{table(cells, header)}</details>")
    parts += [f'<p class="note">{esc(name)} was not scored: {esc(str(why))}</p>'
              for name, why in failed.items()]
    parts += [f'<p class="note">Metric {esc(name)} was not run: {esc(str(why))}</p>'
              for name, why in skipped.items()]
    pngs = sorted((run_dir / "evaluation").glob("*.png"), key=lambda p: p.stem != SCORES_FIGURE)
    figures = [image(p, SCORES_CAPTION if p.stem == SCORES_FIGURE else p.stem.replace("_", " "))
               for p in pngs]
    if figures:
        parts.append(f'<div class="grid half">{"".join(figures)}</div>')
    return "".join(parts)


SCORES_FIGURE = "auc_summary"
SCORES_CAPTION = ("Each method's scores with their 95% intervals, coloured by verdict, against "
                  "the random baseline's mean and interval (the grey band)")
VERDICT_CELLS = {"better than random": ("better", "v-better"),
                 "worse than random": ("worse", "v-worse"),
                 "not distinguishable": ("\u2248 random", "v-same"),
                 "uninformative": ("uninformative", "v-useless")}


def verdict_grid(header: list[str], rows: list[list[str]], meta: dict) -> str:
    """The ranked methods, their summaries and one verdict cell per metric compared with random
    (its score, interval and Holm-adjusted p in the cell's title); each metric's header says which
    way is better (``directions`` of the evaluation's settings) and whether it is uninformative."""
    where = {name: i for i, name in enumerate(header)}
    keys = [name[:-len("_vs_random")] for name in header if name.endswith("_vs_random")]
    directions = dict(meta.get("directions") or {})
    labels = dict(meta.get("labels") or {})
    useless = set(meta.get("uninformative") or [])
    lead = [name for name in ("method", "samples", "summary", "randomisation") if name in where]
    heads = "".join(f"<th>{esc(name)}</th>" for name in lead)
    for key in keys:
        way = directions.get(key)
        notes = ([f"{way} is better"] if way else []) + (["uninformative"] if key in useless else [])
        heads += (f'<th title="{esc(key)}">{esc(labels.get(key, key))}'
                  + "".join(f"<br><small>{esc(n)}</small>" for n in notes) + "</th>")
    body = []
    for row in rows:
        cells = "".join(f"<td>{esc(row[where[name]])}</td>" for name in lead)
        for key in keys:
            verdict = row[where[f"{key}_vs_random"]]
            text, kind = VERDICT_CELLS.get(verdict, (verdict or "baseline", "v-none"))
            value = _number(row[where[key]]) if key in where else ""
            detail = _fmt(value)
            if f"{key}_low" in where:
                low, high = (_number(row[where[f"{key}_{end}"]]) for end in ("low", "high"))
                detail = f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]"
            if f"{key}_p_holm" in where and row[where[f"{key}_p_holm"]]:
                detail += f"; p (Holm) {_number(row[where[f'{key}_p_holm']]):.2g}"
            cells += (f'<td class="{kind}" title="{esc(detail)}">{esc(text)}'
                      f"<br><small>{esc(_fmt(value))}</small></td>")
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="table-wrap" id="evaluation-verdicts"><table class="verdicts"><thead><tr>'
            f'{heads}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def figures_section(run_dir: Path) -> str:
    """One part per renderer listed in a figures manifest (``figures.json``) of the run's stage
    folders, RUN for stage "run" and RUN/explanations/figures for stage "explanations"."""
    parts = []
    for folder in (run_dir, run_dir / "explanations" / "figures"):
        try:
            manifest = read_figures(folder)
        except XaiError as exc:
            parts.append(f'<p class="note">{esc(str(exc))}</p>')
            continue
        for name, entry in sorted(manifest.items()):
            caption = str(entry.get("caption", ""))
            paths = [folder / f for f in entry["files"]]  # an absolute entry stays absolute
            shown = [image(p, p.name, caption or name) for p in paths if p.is_file()]
            missing = [p.name for p in paths if not p.is_file()]
            parts.append(f"<h3>{esc(name)}</h3>" + (f'<p class="note">{esc(caption)}</p>'
                                                     if caption else ""))
            if shown:
                parts.append(f'<div class="grid half">{"".join(shown)}</div>')
            if missing:
                parts.append(f'<p class="note">missing: {esc(", ".join(missing))}</p>')
    return "".join(parts)


def evaluation_columns(header: list[str], rows: list[list[str]]) -> tuple[tuple, list[tuple]]:
    """Every score with its interval in one cell (``mean [low, high]``); the p-values stay in the
    CSV, the summaries and per-metric verdicts are in ``verdict_grid``."""
    where = {name: i for i, name in enumerate(header)}
    shown = [name for name in header if name not in ("summary", "better", "worse", "effect")
             and not name.endswith(("_low", "_high", "_p", "_p_holm", "_vs_random"))]
    out = []
    for row in rows:
        cells = []
        for name in shown:
            value = _number(row[where[name]])
            if f"{name}_low" in where and isinstance(value, float):
                low, high = (_number(row[where[f"{name}_{end}"]]) for end in ("low", "high"))
                value = f"{value:.3f} [{_fmt(low)}, {_fmt(high)}]"
            cells.append(value)
        out.append(tuple(cells))
    return tuple(shown), out


def _fmt(value: float) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _number(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def shape_facts(ckpt: dict) -> list[tuple[str, Any]]:
    """The input's channels (or features) and its size, in its kind of input's words: an image's
    height x width, else how long a series (or a text) the model reads."""
    names = ", ".join(map(str, ckpt["feature_names"]))
    height, width = ckpt.get("height"), ckpt.get("width")
    if isinstance(height, int) and isinstance(width, int):
        return [("channels", names), ("image size", f"{height} x {width} pixels")]
    return [("features", names), (length_label(ckpt), ckpt["seq_len"])]


def length_label(ckpt: dict) -> str:
    """What the checkpoint's ``seq_len`` is, in its kind of input's words."""
    try:
        position = get_modality(ckpt.get("modality") or None).axes[1]
    except XaiError:  # the kind's plugin is not installed here
        return "length"
    return "series length" if position == "time" else f"most {position}s read"
