"""``predict()``: class predictions and probabilities of a trained run for new series."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from xaicore.data.inputs import open_input
from xaicore.errors import XaiError
from xaicore.files import atomic_open
from xaicore.models.checkpoints import load_run
from xaicore.models.kinds import modality_of
from xaicore.models.loaded import LoadedModel
from xaicore.plugins.boundary import call

MAX_CLASS_COLUMNS = 50  # above this many classes, write the top TOP_K classes of each sample
TOP_K = 5


def read_inputs(path: str | Path, model: LoadedModel, columns: dict | None = None
                ) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    """Series ``[n, time, feature]``, their labels as class names (or None) and the rows' names
    (or None) from an input file of any kind ``data.inputs`` reads (a long-format CSV with
    ``columns``), its labels read by the same rule."""
    path = Path(path)
    modality = modality_of(model)
    opener = getattr(modality, "open_input", None)  # optional: the kind reads its own files
    if callable(opener):
        source = call("modalities", modality.name, f"{modality.name}.open_input", opener, model,
                      path, columns or {})
        X, labels = source.read(0, source.n_rows)
        return (X, None if labels is None else [model.class_names[i] for i in labels],
                source.row_names)
    if not path.is_file() and path.suffix.lower() != ".zarr":
        raise XaiError(f"no input file at {path}")
    if path.suffix.lower() == ".csv" and model.n_features != 1 and not columns:
        raise XaiError(f"model {model.name!r} takes {model.n_features} features per time step; "
                       f"a CSV row holds one univariate series: give a long-format CSV "
                       f"(--id-column, --time-column) or an .npz with X [sample, time, feature]")
    source = open_input(path, model.class_names, model.seq_len, columns, model.n_features)
    if source.kind == "csv" and model.seq_len is not None and \
            source.row_shape[0] != model.seq_len:
        raise XaiError(f"{path} has {len(source.header)} columns but model {model.name!r} was "
                       f"trained on series of length {model.seq_len} ({model.seq_len} value "
                       f"columns, plus an optional label column)")
    X, labels = source.read(0, source.n_rows)
    return X, None if labels is None else [model.class_names[i] for i in labels], source.row_names


def predict(run_dir: str | Path, input_path: str | Path, out_path: str | Path,
            force: bool = False, columns: dict | None = None) -> Path:
    """Write one row per input series: predicted class, probability of every class (and the
    true label when the input has one; its name, ``source``, when the input names its rows:
    a folder's files); the output path. ``columns`` (``id_column``,
    ``time_column``, optionally ``label_column``) read a long-format CSV."""
    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise XaiError(f"{out_path} already exists; pass --force to replace it")
    model = load_run(run_dir)
    X, labels, row_names = read_inputs(input_path, model, columns)
    X = model.check_inputs(X)  # wrong length or channel count -> XaiError naming both
    if labels is not None and len(labels) != len(X):
        raise XaiError(f"{input_path}: {len(X)} samples but {len(labels)} labels")
    probs = model.predict_proba(X)
    names = model.class_names
    fields = ["sample"] + (["source"] if row_names is not None else []) + ["predicted"] + \
        (["true", "correct"] if labels is not None else []) + probability_columns(names)
    with atomic_open(out_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for i, p in enumerate(probs):
            predicted = names[int(p.argmax())]
            truth = [labels[i], int(labels[i] == predicted)] if labels is not None else []
            source = [row_names[i]] if row_names is not None else []
            writer.writerow([i, *source, predicted, *truth, *probability_cells(p, names)])
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
