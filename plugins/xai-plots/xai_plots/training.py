"""Run-level figures: training curves and the test confusion matrix, read from a run directory."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import Option, XaiError

from .figures import check_formats, plt, save, text

CURVE_FORMATS = ("png", "svg", "eps")  # EPS for LaTeX papers
MATRIX_FORMATS = ("png", "svg")
RUN_DIR = Option("run_dir", object, None, "the run directory (default: out_dir)")


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise XaiError(f"no {path.name} in {path.parent} (is it a run directory written by "
                       f"`xai train`?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise XaiError(f"{path} holds no rows")
    return rows


def run_class_names(run_dir: Path, seen: Sequence[str]) -> list[str]:
    """Class names in model order: from metrics.json, else the checkpoint, else sorted labels."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        names = json.loads(metrics.read_text()).get("class_names")
        if names:
            return [str(n) for n in names]
    if (run_dir / "checkpoint.pt").is_file():
        from xaicore.application import load_checkpoint

        return [str(n) for n in load_checkpoint(run_dir / "checkpoint.pt")["class_names"]]
    return sorted(set(seen))


def _run_dir(out_dir: Path, run_dir: Any) -> Path:
    run_dir = Path(run_dir) if run_dir is not None else Path(out_dir)
    if not run_dir.is_dir():
        raise XaiError(f"no run directory at {run_dir}")
    return run_dir


MAX_MATRIX_CLASSES = 40


class TrainingCurves:
    """Loss and accuracy per epoch, train and test, side by side (PNG, SVG, EPS)."""

    name = "training-curves"
    stage = "run"
    options = (RUN_DIR, Option("formats", object, CURVE_FORMATS, "file formats"))
    description = "Loss and accuracy per epoch (PNG, SVG, EPS)"

    def render(self, explanations: Sequence[Any], out_dir: Path, run_dir: Any = None,
               formats: Any = CURVE_FORMATS, **options: Any) -> list[Path]:
        run_dir = _run_dir(out_dir, run_dir)
        rows = read_rows(run_dir / "history.csv")
        try:
            epoch = np.array([int(r["epoch"]) for r in rows])
            series = {k: np.array([float(r[k]) for r in rows]) for k in
                      ("train_loss", "test_loss", "train_accuracy", "test_accuracy")}
        except (KeyError, ValueError) as exc:
            raise XaiError(f"{run_dir / 'history.csv'} lacks or garbles column {exc}") from None
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, what in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.plot(epoch, series[f"train_{what}"], label=f"train {what}", linewidth=1.5)
            ax.plot(epoch, series[f"test_{what}"], label=f"test {what}", linewidth=1.5)
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.grid(color="0.88")
            ax.legend(framealpha=1.0)
        ax_loss.set_title("Loss per epoch")
        ax_acc.set_title(f"Accuracy per epoch (final test {series['test_accuracy'][-1]:.3f})")
        ax_acc.set_ylim(-0.02, 1.02)
        fig.tight_layout()
        return save(fig, Path(out_dir) / "training_curves", check_formats(formats))


def most_confused(matrix: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` classes with the most misclassified samples (as true or predicted
    class), in class order; ties go to the larger class."""
    errors = matrix.sum(0) + matrix.sum(1) - 2 * np.diag(matrix)
    order = np.lexsort((-matrix.sum(1), -errors))
    return np.sort(order[:k])


class ConfusionMatrix:
    """Counts of true (rows) against predicted (columns) test classes, with class names."""

    name = "confusion-matrix"
    stage = "run"
    options = (RUN_DIR, Option("formats", object, MATRIX_FORMATS, "file formats"))
    description = "Confusion matrix of the test split (PNG, SVG)"

    def render(self, explanations: Sequence[Any], out_dir: Path, run_dir: Any = None,
               formats: Any = MATRIX_FORMATS, **options: Any) -> list[Path]:
        import seaborn as sns

        run_dir = _run_dir(out_dir, run_dir)
        rows = read_rows(run_dir / "test_predictions.csv")
        try:
            true, pred = [r["true"] for r in rows], [r["predicted"] for r in rows]
        except KeyError as exc:
            raise XaiError(f"{run_dir / 'test_predictions.csv'} lacks column {exc}") from None
        names = run_class_names(run_dir, true + pred)
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(true + pred) - set(index))
        if unknown:
            raise XaiError(f"test_predictions.csv holds classes {unknown} the run does not know")
        matrix = np.zeros((len(names), len(names)), dtype=int)
        for t, p in zip(true, pred):
            matrix[index[t], index[p]] += 1
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        title = f"Confusion matrix, test split (accuracy {accuracy:.3f}, n={matrix.sum()})"
        if len(names) > MAX_MATRIX_CLASSES:  # thousands of cells cannot be read: the most confused
            keep = most_confused(matrix, MAX_MATRIX_CLASSES)
            title += f"\n{len(keep)} most confused of {len(names)} classes"
            matrix, names = matrix[np.ix_(keep, keep)], [names[i] for i in keep]
        size = min(4 + 0.6 * len(names), 16)
        fig, ax = plt.subplots(figsize=(size + 1.5, size))
        labels = [text(n) for n in names]
        sns.heatmap(matrix, annot=len(names) <= 30, fmt="d", cmap="Blues", cbar=True, ax=ax,
                    xticklabels=labels, yticklabels=labels, square=True)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        fig.tight_layout()
        return save(fig, Path(out_dir) / "confusion_matrix", check_formats(formats))
