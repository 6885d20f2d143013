"""The report's dataset view of a streamed result (a ``.zarr`` store): drawn from the summaries
written while it streamed (per-class means, per-sample table), never from all its attributions;
per-sample figures only for the samples chosen with ``xai report --samples``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from xai_plots.image_units import is_image
from xaicore.application import StoredExplanation, parse_samples, render_stage
from xaicore.plugin import Explanation, XaiError

from .image_view import store_classes
from .page import esc, image, image_data, table

#: Classes drawn in the per-class figures (the most frequent ones when there are more).
MAX_CLASSES = 8
#: Rows of the "least confident" and "misclassified" tables.
LISTED = 10


def dataset_section(stores: list[StoredExplanation], run_dir: Path, samples: str | None) -> str:
    """One block per store: facts, figures, the samples worth a look, and the drill-down."""
    if not stores:
        return ""
    parts = ['<p class="note">Results streamed with <code>xai explain --input</code> or '
             "<code>--samples all</code>, summarised over every sample while they were written. "
             + ("Per-sample figures below are for the samples chosen with <code>--samples"
                "</code>." if samples else "Choose samples to draw one by one with <code>xai "
                "report --samples 0:8,misclassified</code>.") + "</p>"]
    for store in stores:
        parts.append(_store_block(store, run_dir, samples))
    return "".join(parts)


def _store_block(store: StoredExplanation, run_dir: Path, samples: str | None) -> str:
    where = store.path.relative_to(run_dir) if store.path.is_relative_to(run_dir) else store.path
    head = f"<h3>{esc(store.method)} on {esc(where.parent)}: {store.n_samples:,} samples</h3>"
    try:
        frame = store.samples_table()
        classes = store.class_summary()
    except XaiError as exc:
        return head + f'<p class="note">{esc(exc)}</p>'
    labelled = frame["correct"].notna().to_numpy()
    facts = [("samples", f"{len(frame):,}"), ("store", str(where)),
             ("mean confidence", float(frame["probability"].mean()))]
    if labelled.any():
        correct = frame["correct"].fillna(False).to_numpy(dtype=bool)[labelled]
        facts.append(("accuracy on labelled samples",
                      f"{correct.mean():.4f} ({labelled.sum():,} labelled)"))
    counts = frame["prediction_name"].value_counts()
    facts.append(("predicted classes", ", ".join(f"{k}: {v:,}" for k, v in
                                                   counts.head(MAX_CLASSES).items())
                  + (f", … {len(counts) - MAX_CLASSES} more" if len(counts) > MAX_CLASSES
                     else "")))
    if is_image(store):
        figure = image_data(_confidence_figure(frame), "Confidence of the prediction")
        return (head + table(facts) + store_classes(store, frame)
                + f'<div class="grid half">{figure}</div>' + _worth_a_look(frame, centre=False)
                + _drill_down(store, frame, samples))
    shared = time_only(store)
    figures = [image_data(_class_figure(store, classes),
                          "Per explained class: mean input and mean attribution over time "
                          "(|attribution| shaded)"),
               image_data(_where_figure(store, frame),
                          "Where the attribution concentrates: centre of |attribution| on the "
                          "time axis" + (" (one map shared by every feature: no feature's share)"
                                         if shared else " (and each feature's share of it)")),
               image_data(_confidence_figure(frame), "Confidence of the prediction")]
    return (head + table(facts) + f'<div class="grid half">{"".join(figures)}</div>'
            + _worth_a_look(frame) + _drill_down(store, frame, samples))


def time_only(store: StoredExplanation) -> bool:
    """Whether the store's explainer declared its map shared by every feature (``time_only``)."""
    return bool(dict(getattr(store, "json_extras", {}) or {}).get("time_only", False))


def _top_classes(counts: np.ndarray) -> list[int]:
    order = np.argsort(-counts, kind="stable")
    return [int(c) for c in order[:MAX_CLASSES] if counts[c] > 0]


def _class_figure(store: StoredExplanation, classes: dict[str, np.ndarray]) -> bytes:
    plt = _pyplot()
    shown = _top_classes(classes["count"])
    n_features = classes["input_mean"].shape[2]
    fig, axes = plt.subplots(len(shown), 1, figsize=(7.5, 1.9 * len(shown) + 0.6),
                             squeeze=False, sharex=True)
    steps = np.arange(classes["input_mean"].shape[1])
    for ax, c in zip(axes[:, 0], shown):
        for f in range(min(n_features, 6)):
            name = store.feature_names[f] if f < len(store.feature_names) else f"feature {f}"
            ax.plot(steps, classes["input_mean"][c, :, f], lw=1.2, label=f"input {name}")
        twin = ax.twinx()
        magnitude = _over_features(store, classes["attribution_abs_mean"][c])
        twin.fill_between(steps, 0, magnitude, color="tab:red", alpha=0.25, lw=0)
        twin.plot(steps, _over_features(store, classes["attribution_mean"][c]), color="tab:red",
                  lw=1, label="mean attribution")
        twin.set_ylabel("attribution", color="tab:red", fontsize=8)
        ax.set_title(f"class {store.class_names[c]} ({int(classes['count'][c]):,} samples)",
                     fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        twin.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    return _png(fig)


def _over_features(store: StoredExplanation, values: np.ndarray) -> np.ndarray:
    """``values [time, feature]`` summed over the features; a map shared by every feature
    (``time_only``) counted once, not once per feature."""
    return values[:, 0] if time_only(store) else values.sum(axis=1)


def _where_figure(store: StoredExplanation, frame) -> bytes:
    plt = _pyplot()
    share_cols = [c for c in frame.columns if c.startswith("share_")][:20]
    # one feature always holds all of it; a map shared by every feature gives each 1/F by copying
    several = len(share_cols) > 1 and not time_only(store)
    fig, axes = plt.subplots(1, 2 if several else 1, figsize=(9 if several else 5, 3.2),
                             squeeze=False)
    left = axes[0, 0]
    targets = frame["target"].to_numpy()
    shown = _top_classes(np.bincount(targets, minlength=len(store.class_names)))
    centre = frame["center_t"].to_numpy()
    bins = np.linspace(0, max(float(np.nanmax(centre)) if np.isfinite(centre).any() else 1, 1),
                       31)
    for c in shown:
        values = centre[(targets == c) & np.isfinite(centre)]
        left.hist(values, bins=bins, histtype="step", lw=1.4, label=store.class_names[c])
    left.set_xlabel("centre of |attribution| (time step)")
    left.set_ylabel("samples")
    left.legend(fontsize=7)
    if several:
        _share_bars(axes[0, 1], frame, targets, shown, share_cols, store.class_names)
    fig.tight_layout()
    return _png(fig)


def _share_bars(right, frame, targets, shown, share_cols, class_names) -> None:
    width = 0.8 / max(len(shown), 1)
    for k, c in enumerate(shown):
        rows = targets == c
        means = [float(frame.loc[rows, col].mean()) for col in share_cols]
        right.bar(np.arange(len(share_cols)) + k * width, means, width, label=class_names[c])
    right.set_xticks(np.arange(len(share_cols)) + 0.4 - width / 2,
                     [c[len("share_"):] for c in share_cols], rotation=30, fontsize=8)
    right.set_ylabel("mean share of |attribution|")


def _confidence_figure(frame) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    probability = frame["probability"].to_numpy()
    known = frame["correct"].notna().to_numpy()
    right = frame["correct"].fillna(False).to_numpy(dtype=bool)
    bins = np.linspace(0, 1, 26)
    if known.any():
        ax.hist(probability[right], bins=bins, alpha=0.7, label="correct")
        ax.hist(probability[known & ~right], bins=bins, alpha=0.7, label="misclassified")
        if (~known).any():
            ax.hist(probability[~known], bins=bins, alpha=0.5, label="no label")
        ax.legend(fontsize=8)
    else:
        ax.hist(probability, bins=bins)
    ax.set_xlabel("probability of the predicted class")
    ax.set_ylabel("samples")
    fig.tight_layout()
    return _png(fig)


def _worth_a_look(frame, centre: bool = True) -> str:
    """The least confident and the misclassified samples; ``centre``: with the centre of their
    |attribution| on the time axis."""
    columns = ["sample_id", "prediction_name", "probability", "label_name"]
    header = ("sample", "predicted", "probability", "true")
    if centre:
        columns, header = columns + ["center_t"], header + ("centre (t)",)
    rows = frame.nsmallest(LISTED, "probability")[columns]
    parts = [f"<h4>The {len(rows)} least confident samples</h4>",
             table([tuple(_plain(v) for v in r) for r in rows.itertuples(index=False)], header)]
    wrong = frame[frame["correct"].eq(False).fillna(False)]
    if len(wrong):
        shown = wrong.head(LISTED)[columns]
        parts += [f"<h4>Misclassified: {len(wrong):,} samples (first {len(shown)})</h4>",
                  table([tuple(_plain(v) for v in r) for r in shown.itertuples(index=False)],
                        header)]
    return "".join(parts)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _drill_down(store: StoredExplanation, frame, samples: str | None) -> str:
    """Per-sample figures of the chosen samples, drawn by the installed per-explanation
    renderers into a folder beside the store (``NAME.figures``)."""
    if not samples:
        return ""
    wrong = np.flatnonzero(frame["correct"].eq(False).fillna(False).to_numpy()).tolist()
    positions = parse_samples(samples, store.n_samples, wrong)
    if len(positions) > 64:
        raise XaiError(f"--samples selects {len(positions)} samples of {store.path.name}; "
                       f"draw at most 64 one by one (the dataset view covers them all)")
    chosen: Explanation = store.select(positions)
    out = store.path.with_name(store.path.name[:-len(".zarr")] + ".figures")
    _, warnings = render_stage("explanations", [chosen], out, formats=["png"])
    manifest = out / "manifest.json"
    entries = json.loads(manifest.read_text()).get("figures", {}) if manifest.is_file() else {}
    wanted = {int(s) for s in chosen.sample_ids}
    figures = [image(out / f"{stem}.png", entry.get("caption", ""))
               for stem, entry in sorted(entries.items(), key=lambda kv: (
                   kv[1].get("sample_id") is None, kv[1].get("sample_id") or 0, kv[0]))
               if entry.get("sample_id") in wanted and (out / f"{stem}.png").is_file()]
    notes = "".join(f'<p class="note">{esc(w)}</p>' for w in warnings)
    return (f"<h4>Drill-down: {len(positions)} chosen samples</h4>" + notes
            + f'<div class="grid half">{"".join(figures)}</div>')


def _pyplot():
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    return buffer.getvalue()
