"""Evaluation figures: deletion/insertion curves per method against random, AUC summary, randomisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xaicore.plugin import atomic_path, figure_size

from .stats import BETTER, SAME, UNINFORMATIVE, WORSE, label

FORMATS = ("png", "svg")
MAX_TICKS = 40  # labelled ticks on an axis; a longer list is labelled at every k-th position


def labelled_ticks(ax, labels: list[str], **style) -> None:
    """x ticks at every position, labelled at most ``MAX_TICKS`` of them evenly."""
    step = -(-len(labels) // MAX_TICKS) if labels else 1
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels([name if k % step == 0 else "" for k, name in enumerate(labels)], **style)


def _save(fig, path: Path) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
            fig.savefig(tmp, format=fmt, dpi=130, bbox_inches="tight")
        paths.append(path.with_suffix(f".{fmt}"))
    return paths


def safe(name: str) -> str:
    """A method name usable as a file name (``tsr:saliency`` -> ``tsr_saliency``)."""
    return "".join(c if c.isalnum() or c in "-_+" else "_" for c in name)


def perturbation_figure(method: str, deletion: dict | None, insertion: dict | None, out: Path):
    """Deletion and insertion curves of one method beside its random-order baseline."""
    import matplotlib.pyplot as plt

    panels = [(t, c) for t, c in (("deletion", deletion), ("insertion", insertion)) if c]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, curve) in zip(axes[0], panels):
        x = np.asarray(curve["fraction"])
        auc = np.trapezoid(curve["curve"], x)
        auc_r = np.trapezoid(curve["random_curve"], x)
        ax.plot(x, curve["curve"], label=f"{method} (AUC {auc:.3f})", color="tab:blue")
        ax.plot(x, curve["random_curve"], label=f"random order (AUC {auc_r:.3f})",
                color="tab:gray", linestyle="--")
        ax.set_xlabel(f"fraction of cells {'removed' if title == 'deletion' else 'inserted'}")
        ax.set_ylabel("target-class probability")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths = _save(fig, out)
    plt.close(fig)
    return paths


VERDICT_COLOURS = {BETTER: "tab:green", WORSE: "tab:red", SAME: "tab:gray",
                   UNINFORMATIVE: "lightgray"}


def auc_summary_figure(rows: list[dict], out: Path, directions: dict[str, bool]) -> list[Path]:
    """Every score compared with random (``directions``: score -> higher is better) of every
    method with its 95% interval, coloured by its per-metric verdict, in front of the random
    baseline's mean and interval (the band behind the bars)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    keys = dict.fromkeys(key[:-len("_vs_random")] for r in rows for key in r
                         if key.endswith("_vs_random"))
    panels = [k for k in keys if any(np.isfinite(r.get(k, np.nan)) for r in rows)]
    if not panels:
        return []
    methods = [r for r in rows if r["method"] != "random"]
    random = next((r for r in rows if r["method"] == "random"), {})
    fig, axes = plt.subplots(len(panels), 1, figsize=figure_size(max(5.0, 2 + 0.55 * len(methods)),
                                                            1.2 + 2.2 * len(panels)),
                             squeeze=False, sharex=True)
    idx = np.arange(len(methods))
    for ax, key in zip(axes[:, 0], panels):
        mean = np.array([r.get(key, np.nan) for r in methods], dtype=float)
        low = np.array([r.get(f"{key}_low", np.nan) for r in methods], dtype=float)
        high = np.array([r.get(f"{key}_high", np.nan) for r in methods], dtype=float)
        if key in random:
            ax.axhspan(random.get(f"{key}_low", random[key]), random.get(f"{key}_high", random[key]),
                       color="black", alpha=0.12, linewidth=0)
            ax.axhline(random[key], color="black", linestyle="--", linewidth=1)
        verdicts = [r.get(f"{key}_vs_random") for r in methods]
        ax.bar(idx, mean, 0.6, color=[VERDICT_COLOURS.get(v, "tab:blue") for v in verdicts],
               # as lists: matplotlib converts a [2, 1] array's rows with a deprecated cast
               yerr=np.vstack([mean - low, high - mean]).clip(0).tolist(), capsize=3)
        if key.endswith("_auc"):
            ax.set_ylim(0, 1.02)
        useless = ", uninformative on this run" if UNINFORMATIVE in verdicts else ""
        ax.set_title(f"{label(key)} ({'higher' if directions.get(key) else 'lower'} is better"
                     f"{useless})", fontsize=10)
    labelled_ticks(axes[-1, 0], [f"{r['method']} (n={r['samples']})" if "samples" in r
                                 else r["method"] for r in methods], rotation=45, ha="right",
                   fontsize=8)
    axes[0, 0].legend(handles=[Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()]
                      + [Patch(color="black", alpha=0.3, label="random baseline: mean, 95% interval")],
                      fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def method_style(index: int, method: str) -> dict:
    """Distinct colours for up to 20 methods; the random baseline dashed in black."""
    import matplotlib

    if method == "random":
        return {"color": "black", "linestyle": "--"}
    return {"color": matplotlib.colormaps["tab20"](index % 20), "linestyle": "-"}


def randomisation_figure(curves: dict, out: Path) -> list[Path]:
    """Spearman correlation with the trained model's maps as layers are randomised, per method."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4))
    layers: list[str] = []
    lowest = 0.0
    for i, (method, curve) in enumerate(curves.items()):
        layers = curve["layers"] if len(curve["layers"]) > len(layers) else layers
        values = np.asarray(curve["correlation"], dtype=float)
        lowest = min(lowest, float(np.nanmin(values)) if np.isfinite(values).any() else 0.0)
        ax.plot(np.arange(len(values)), values, marker="o", label=method, **method_style(i, method))
    labelled_ticks(ax, [f"…{name}" for name in layers], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("randomised from the output down to layer")
    ax.set_ylabel("Spearman correlation of |attributions|")
    ax.axhline(0, color="gray", linewidth=0.6)
    ax.set_ylim(min(-0.1, lowest - 0.05), 1.05)
    ax.set_title("Cascading model-parameter randomisation (lower = depends on the model)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def localisation_figure(curves: dict, metric: str, out: Path) -> list[Path]:
    """Saliency-weighted precision or recall against the mass level, per method."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (method, curve) in enumerate(curves.items()):
        ax.plot(curve["level"], curve["curve"], marker="o", label=method, **method_style(i, method))
    ax.set_xlabel("fraction of saliency mass selected")
    ax.set_ylabel("precision" if metric == "aup" else "recall")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{metric.upper()}: saliency-weighted {'precision' if metric == 'aup' else 'recall'}")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def summary_figure(rows: list[dict], out_dir: Path, directions: dict[str, bool]) -> list[Path]:
    """The scores against the random band (``auc_summary``), under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    return auc_summary_figure(rows, out_dir / "auc_summary", directions)


def render_all(rows: list[dict], curves: dict, out_dir: Path,
               directions: dict[str, bool]) -> list[Path]:
    """Every evaluation figure the computed curves allow, under ``out_dir``."""
    paths = summary_figure(rows, out_dir, directions)
    deletion, insertion = curves.get("deletion", {}), curves.get("insertion", {})
    for by_method in (deletion, insertion):  # the evaluation scores random as a method of its own
        if "random" in by_method:
            for curve in by_method.values():
                curve.setdefault("random_curve", by_method["random"]["curve"])
    for method in dict.fromkeys([*deletion, *insertion]):
        paths += perturbation_figure(method, deletion.get(method), insertion.get(method),
                                     out_dir / f"perturbation_{safe(method)}")
    if curves.get("randomisation"):
        paths += randomisation_figure(curves["randomisation"], out_dir / "randomisation")
    for metric in ("aup", "aur"):
        if curves.get(metric):
            paths += localisation_figure(curves[metric], metric, out_dir / metric)
    return paths
