"""``predict()``: class predictions and probabilities of a trained run for new series."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from xaicore.data.dataset import UNREADABLE, with_lengths
from xaicore.data.loading import csv_columns, label_texts, read_csv
from xaicore.errors import XaiError
from xaicore.files import atomic_open
from xaicore.runs.model import LoadedModel, load_run

MAX_CLASS_COLUMNS = 50  # above this many classes, write the top TOP_K classes of each sample
TOP_K = 5


def read_inputs(path: str | Path, model: LoadedModel) -> tuple[np.ndarray, list[str] | None]:
    """Series ``[n, time, feature]`` and their labels (or None) from a CSV or npz file.

    A CSV is the training layout: one univariate series per row, optionally followed by a label
    column (told apart by the column count). An npz holds ``X`` and optionally ``y`` and
    ``lengths`` (variable-length series).
    """
    path = Path(path)
    if not path.is_file():
        raise XaiError(f"no input file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if model.n_features != 1:
            raise XaiError(f"model {model.name!r} takes {model.n_features} features per time step; "
                           f"a CSV row holds one univariate series: give an .npz with X "
                           f"[sample, time, feature]")
        n = csv_columns(path)
        if model.seq_len is not None and n not in (model.seq_len, model.seq_len + 1):
            raise XaiError(f"{path} has {n} columns but model {model.name!r} was trained on series "
                           f"of length {model.seq_len} ({model.seq_len} value columns, plus an "
                           f"optional label column)")
        X, labels, _, _ = read_csv(path, has_label=n == (model.seq_len or 0) + 1)
        return X, None if labels is None else list(label_texts(labels))
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except UNREADABLE as exc:
            raise XaiError(f"cannot read {path} as npz arrays: {type(exc).__name__}: "
                           f"{exc}") from None
        if "X" not in arrays:
            raise XaiError(f"{path} holds no array X (it holds {', '.join(arrays) or 'nothing'})")
        labels = None
        if "y" in arrays:
            y = np.asarray(arrays["y"]).ravel()
            if np.issubdtype(y.dtype, np.integer) and len(y) and y.min() >= 0 \
                    and y.max() < model.n_classes:
                labels = [model.class_names[i] for i in y]
            else:
                labels = list(label_texts(y))
        X = arrays["X"]
        if "lengths" in arrays:  # variable-length series: the steps after each length are padding
            X = with_lengths(np.asarray(X)[:, :, None] if np.ndim(X) == 2 else X,
                             arrays["lengths"], f"{path}: lengths")
        return X, labels
    raise XaiError(f"{path}: inputs must be a .csv or .npz file")


def predict(run_dir: str | Path, input_path: str | Path, out_path: str | Path,
            force: bool = False) -> Path:
    """Write one row per input series: predicted class, probability of every class (and the
    true label when the input has one); the output path."""
    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise XaiError(f"{out_path} already exists; pass --force to replace it")
    model = load_run(run_dir)
    X, labels = read_inputs(input_path, model)
    X = model.check_inputs(X)  # wrong length or channel count -> XaiError naming both
    if labels is not None and len(labels) != len(X):
        raise XaiError(f"{input_path}: {len(X)} samples but {len(labels)} labels")
    probs = model.predict_proba(X)
    names = model.class_names
    fields = ["sample", "predicted"] + (["true", "correct"] if labels is not None else []) + \
        probability_columns(names)
    with atomic_open(out_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for i, p in enumerate(probs):
            predicted = names[int(p.argmax())]
            truth = [labels[i], int(labels[i] == predicted)] if labels is not None else []
            writer.writerow([i, predicted, *truth, *probability_cells(p, names)])
    return out_path


def probability_columns(names: list[str]) -> list[str]:
    """Column names of the class probabilities: one per class, or the top ``TOP_K`` when there
    are more than ``MAX_CLASS_COLUMNS`` classes (so a file stays proportional to its samples)."""
    if len(names) <= MAX_CLASS_COLUMNS:
        return [f"prob_{c}" for c in names]
    return [f"{kind}_{k + 1}" for k in range(TOP_K) for kind in ("class", "prob")]


def probability_cells(p: np.ndarray, names: list[str]) -> list[str]:
    if len(names) <= MAX_CLASS_COLUMNS:
        return [f"{v:.6f}" for v in p]
    top = np.argsort(-p, kind="stable")[:TOP_K]
    return [cell for i in top for cell in (names[int(i)], f"{p[i]:.6f}")]
