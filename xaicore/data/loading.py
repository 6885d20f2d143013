"""Datasets from a spec: a registered name (aeon's UCR/UEA sets...), a CSV file or an ``.npz`` file.

A spec is a small JSON-able dict stored in the checkpoint, so a run reloads exactly its own splits:
``{"name": "GunPoint"}`` or ``{"name": "/abs/train.csv", "test": "/abs/test.csv" | None,
"seed": 0, "test_size": 0.25}``.

**CSV layout**: a header row, then one row per sample; every column but the last holds
a number, the last column holds the class label (any text). A row of F numbers is one *univariate*
series of F time steps, in column order: the header names of those columns become the time-step
names (``Dataset.info["time_names"]``), the single feature is named ``"value"``, and the label
column's header is kept as ``info["label_column"]``. Multivariate series go in an ``.npz`` file
or a long-format CSV.

**Long-format CSV** (the spec has ``id_column`` and ``time_column``, optionally ``label_column``):
one row per sample and time step. Rows are grouped into samples by the id column (samples in the
order their ids first occur), ordered by the time column (numbers or ISO dates) within a sample;
the label column (the last column unless named) must be the same on every row of a sample, and
every other column is a feature, named by its header. Samples of different lengths are NaN-padded.
A wide read of a file whose id- or time-like column (``id``, ``time``, ...) repeats is refused.

**npz layout**: ``X`` ``[n, time, feature]`` (or ``[n, time]`` for univariate), ``y`` (class
indices into ``class_names``, or labels as text or numbers), optionally ``X_test``/``y_test``,
``class_names`` and ``feature_names``, and for variable-length series ``lengths`` (and
``lengths_test``): one valid length per sample, the steps after it are padding.

**Variable-length series** are padded with NaN: trailing steps NaN in every feature are padding
(in a CSV, trailing empty or NaN cells before the label). NaN inside a series is an error.

Without a test file (or ``X_test`` in the npz) the samples are split into train and test with a
seeded stratified split (``test_size`` of every class goes to test).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.data.dataset import UNREADABLE, Dataset, DataSplit, check_finite, with_lengths
from xaicore.errors import XaiError
from xaicore.files import file_digest
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.plugins.options import resolve

FILE_SUFFIXES = (".csv", ".npz")
LONG_KEYS = ("id_column", "time_column", "label_column")
LONG_NAMES = ("id", "sample_id", "sample", "time", "t", "timestamp", "step")  # looked for in wide reads


def long_columns(id_column: str | None = None, time_column: str | None = None,
                 label_column: str | None = None) -> dict:
    """The long-format columns as spec entries (empty for a wide table); checked to go together."""
    if id_column is None and time_column is None:
        if label_column is not None:
            raise XaiError("--label-column goes with --id-column and --time-column (a long-format "
                           "CSV); a wide CSV's label is its last column")
        return {}
    if id_column is None or time_column is None:
        raise XaiError("a long-format CSV needs both --id-column and --time-column")
    named = [c for c in (id_column, time_column, label_column) if c is not None]
    if len(set(named)) != len(named):
        raise XaiError(f"--id-column, --time-column and --label-column must name different "
                       f"columns (got {', '.join(map(repr, named))})")
    columns = {"id_column": str(id_column), "time_column": str(time_column)}
    if label_column is not None:
        columns["label_column"] = str(label_column)
    return columns


def dataset_spec(name_or_path: str | Path, test: str | Path | None = None, seed: int = 0,
                 test_size: float = 0.25, id_column: str | None = None,
                 time_column: str | None = None, label_column: str | None = None) -> dict:
    """The spec for a registered dataset name or a CSV/npz path (paths are made absolute); a
    long-format CSV names its id and time columns (and optionally its label column)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    columns = long_columns(id_column, time_column, label_column)
    is_file = path.suffix.lower() in FILE_SUFFIXES or path.exists() or "/" in text
    if columns and path.suffix.lower() != ".csv":
        raise XaiError(f"--id-column and --time-column read a long-format .csv file, not {text!r}")
    if not is_file:
        if test is not None:
            raise XaiError(f"{text!r} is a registered dataset with its own test split; --test "
                           f"only goes with a CSV or npz file")
        registry.get_entry("datasets", text)  # UnknownNameError with close matches
        return {"name": text}
    if not path.is_file():
        raise XaiError(f"no dataset file at {path}")
    if not 0 < test_size < 1:
        raise XaiError(f"test_size must be between 0 and 1 (got {test_size})")
    if test is not None:
        test = Path(test).expanduser()
        if not test.is_file():
            raise XaiError(f"no test file at {test}")
        if test.suffix.lower() != path.suffix.lower():
            raise XaiError(f"the test file {test} must have the same format as {path}")
        test = str(test.resolve())
    spec = {"name": str(path.resolve()), "test": test, "seed": int(seed),
            "test_size": float(test_size), "sha256": file_digest(path), **columns}
    if test is not None:
        spec["test_sha256"] = file_digest(test)
    return spec


def check_unchanged(spec: dict) -> None:
    """Refuse a dataset file whose bytes differ from those the run was trained on."""
    for key, digest_key in (("name", "sha256"), ("test", "test_sha256")):
        if spec.get(digest_key) and spec.get(key) and Path(spec[key]).is_file() \
                and file_digest(spec[key]) != spec[digest_key]:
            raise XaiError(f"{spec[key]} has changed since the run was trained on it (its sha256 "
                           f"differs); restore the original file or train a new run on this one")


def load_dataset(spec: dict | str | Path) -> Dataset:
    """The dataset a spec (or a registered name such as ``"GunPoint"``, or a CSV/npz path) names,
    with its train and test splits."""
    if isinstance(spec, (str, Path)):
        spec = dataset_spec(spec)
    name = spec.get("name") if isinstance(spec, dict) else None
    if not name:
        raise XaiError(f"a dataset spec needs a 'name' (got {spec!r})")
    path = Path(name)
    if path.suffix.lower() not in FILE_SUFFIXES:
        loader = registry.get_dataset(name)
        options = resolve(f"dataset {name}", loader, {k: v for k, v in spec.items() if k != "name"})
        dataset = call("datasets", name, f"the loader of dataset {name!r}", loader, name, **options)
        if not isinstance(dataset, Dataset):
            raise XaiError(f"the loader of dataset {name!r} returned {type(dataset).__name__}, "
                           f"not an xaicore.data.dataset.Dataset")
        return dataset
    if not path.is_file():
        raise XaiError(f"no dataset file at {path}")
    check_unchanged(spec)
    columns = long_columns(*(spec.get(key) for key in LONG_KEYS))
    reader: Callable[[Path], tuple[np.ndarray, Any, dict, Any]]
    if columns and path.suffix.lower() != ".csv":
        raise XaiError(f"{path}: id_column and time_column read a long-format .csv file")
    if columns:
        def reader(file: Path) -> tuple[np.ndarray, Any, dict, None]:
            return read_long_csv(file, columns["id_column"], columns["time_column"],
                                 columns.get("label_column"))
    else:
        reader = read_csv if path.suffix.lower() == ".csv" else read_npz
    X, labels, info, test = reader(path)
    labels = label_texts(labels)
    if test is not None:
        test = (test[0], label_texts(test[1]))
    if spec.get("test"):
        if test is not None:
            raise XaiError(f"{path} already holds a test split (X_test); do not pass a test file")
        X_test, labels_test, test_info, _ = reader(Path(spec["test"]))
        if columns and test_info["feature_names"] != info["feature_names"]:
            raise XaiError(f"test file {spec['test']} has the feature columns "
                           f"{', '.join(test_info['feature_names'])} but {path} has "
                           f"{', '.join(info['feature_names'])}")
        if X_test.shape[2:] != X.shape[2:] or (X_test.shape[1] != X.shape[1] and not columns):
            raise XaiError(f"test file {spec['test']} has samples of shape {X_test.shape[1:]} "
                           f"(time, feature) but {path} has {X.shape[1:]}")
        test = (X_test, label_texts(labels_test), spec["test"])
    elif test is not None:
        test = (*test, f"{path} (X_test)")
    class_names = info.pop("class_names", None) or class_order(labels)
    if len(set(map(str, labels))) < 2:
        raise XaiError(f"{path}: every sample has the label {str(labels[0])!r}; a classifier "
                       f"needs at least two classes")
    y = encode(labels, class_names, str(path))
    if test is None:
        train_idx, test_idx = stratified_split(y, float(spec.get("test_size", 0.25)),
                                               int(spec.get("seed", 0)), class_names, str(path))
        train, held_out = DataSplit(X[train_idx], y[train_idx]), DataSplit(X[test_idx], y[test_idx])
    else:
        X_test, labels_test, where = test
        train, held_out = DataSplit(X, y), DataSplit(X_test, encode(labels_test, class_names, where))
    feature_names = info.pop("feature_names", None)
    return Dataset(path.stem, train, held_out, class_names, feature_names or [], info)


def label_texts(labels: Any) -> np.ndarray:
    """Labels as text, with integer-valued numbers written one way (``1``, ``1.0`` -> ``"1"``)."""
    out = []
    for value in np.asarray(labels).ravel():
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            out.append(text)
            continue
        out.append(str(int(number)) if math.isfinite(number) and number == int(number) else text)
    return np.array(out)


def class_order(labels: Any) -> list[str]:
    """Distinct labels as text, sorted numerically when all are numbers ("2" before "10")."""
    unique = sorted({str(v) for v in np.asarray(labels).ravel()})
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def encode(labels: np.ndarray, class_names: list[str], where: str) -> np.ndarray:
    """Class indices of ``labels``; a label outside ``class_names`` is an error naming it."""
    index = {c: i for i, c in enumerate(class_names)}
    text = [str(v) for v in np.asarray(labels).ravel()]
    unseen = sorted(set(text) - set(index))
    if unseen:
        raise XaiError(f"{where}: labels {', '.join(map(repr, unseen[:5]))} do not occur in the "
                       f"training data (classes: {', '.join(class_names)})")
    return np.array([index[v] for v in text], dtype=np.int64)


def stratified_split(y: np.ndarray, test_size: float, seed: int, class_names: list[str],
                     where: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with about ``test_size`` of every class in test (seeded)."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for c in range(len(class_names)):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise XaiError(f"{where}: class {class_names[c]!r} has {len(idx)} sample(s); a "
                           f"train/test split needs at least 2 per class (or pass a test file)")
        n_test = min(len(idx) - 1, max(1, int(round(len(idx) * test_size))))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train)), np.sort(np.array(test))


def read_csv(path: Path, has_label: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict, None]:
    """``X [n, time, 1]``, labels and names from a CSV in the CSV layout (see module docstring);
    without ``has_label`` every column holds a value and the labels are None."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise XaiError(f"cannot read CSV {path}: {exc}") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise XaiError(f"{path} has no data rows (expected a header row, then one row per sample)")
    header = [h.strip() for h in rows[0]]
    n_values = len(header) - int(has_label)
    if n_values < 1:
        raise XaiError(f"{path} has {len(header)} column(s); expected value columns then a label "
                       f"column")
    X = np.empty((len(rows) - 1, n_values), dtype=np.float64)
    labels = []
    watch = long_format_watch(path, header[:n_values])
    for row in rows[1:]:  # before any cell is read as a number: an id column is not one
        watch(row)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        X[i] = csv_values(row, header, n_values, path, line)
        if has_label:
            label = row[-1].strip()
            if not label:
                raise XaiError(f"{path}: empty label at row {line}, column {header[-1]!r}")
            labels.append(label)
    info = {"source": str(path), "time_names": header[:n_values], "feature_names": ["value"]}
    if has_label:
        info["label_column"] = header[-1]
    return X[:, :, None], np.array(labels) if has_label else None, info, None


def long_format_watch(path: Path | str, names: list[str]) -> Callable[[list[str]], None]:
    """A check called on each row of a wide read: a column named like an id or time column
    (``LONG_NAMES``, any case) whose values repeat across rows means the table is long-format."""
    watched = [(j, name) for j, name in enumerate(names) if name.strip().lower() in LONG_NAMES]
    seen: dict[int, set[str]] = {j: set() for j, _ in watched}

    def watch(row: list[str]) -> None:
        for j, name in watched:
            value = row[j].strip() if j < len(row) else ""
            if value in seen[j]:
                raise XaiError(f"{path} looks like a long-format table (one row per sample and "
                               f"time step: column {name!r} repeats); give --id-column and "
                               f"--time-column, or rename the column if each row is one series")
            seen[j].add(value)

    return watch


def read_long_csv(path: Path, id_column: str, time_column: str, label_column: str | None = None,
                  n_features: int | None = None) -> tuple[np.ndarray, np.ndarray | None, dict, None]:
    """``X [n, time, feature]`` (NaN-padded), labels and names from a long-format CSV (see the
    module docstring). For training (``n_features`` None) the label column is ``label_column`` or
    the last column; for a model's inputs it is ``label_column``, else the last column when the
    file has one column more than the model's ``n_features`` features, else there is none."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise XaiError(f"cannot read CSV {path}: {exc}") from None
    if len(rows) < 2:
        raise XaiError(f"{path} has no data rows (expected a header row, then one row per sample "
                       f"and time step)")
    header = [h.strip() for h in rows[0]]
    for option, name in (("--id-column", id_column), ("--time-column", time_column),
                         ("--label-column", label_column)):
        if name is not None and name not in header:
            raise XaiError(f"{path} has no column {name!r} ({option}); its columns are "
                           f"{', '.join(header)}")
    rest = [h for h in header if h not in (id_column, time_column)]
    if label_column is None and n_features is None:
        label_column = header[-1]
        if label_column in (id_column, time_column):
            raise XaiError(f"{path}: the last column {label_column!r} is the id or time column; "
                           f"name the label column with --label-column")
    elif label_column is None and n_features is not None and len(rest) == n_features + 1:
        label_column = rest[-1]
    features = [h for h in rest if h != label_column]
    if not features:
        raise XaiError(f"{path} has no feature column besides {id_column!r}, {time_column!r} and "
                       f"the label {label_column!r}")
    at = {name: j for j, name in enumerate(header)}
    i_id, i_time = at[id_column], at[time_column]
    i_label = None if label_column is None else at[label_column]
    i_features = [at[name] for name in features]
    samples: dict[str, list[tuple[float, int, list[float]]]] = {}
    labels: dict[str, tuple[str, int]] = {}
    times: dict[tuple[str, float], int] = {}
    time_kinds: set[str] = set()
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise XaiError(f"{path}: ragged rows: row {line} has {len(row)} cells but the header "
                           f"has {len(header)} columns")
        sample = row[i_id].strip()
        if not sample:
            raise XaiError(f"{path}: an empty cell at row {line}, column {id_column!r}")
        time, kind = _time_value(row[i_time], path, line, time_column)
        time_kinds.add(kind)
        if len(time_kinds) > 1:
            raise XaiError(f"{path}: column {time_column!r} mixes numbers and dates (row {line}); "
                           f"write every time one way")
        if (sample, time) in times:
            raise XaiError(f"{path}: row {line} repeats sample {sample!r} at time "
                           f"{row[i_time].strip()} of row {times[sample, time]} (column "
                           f"{time_column!r}); each sample has one row per time step")
        times[sample, time] = line
        values = [_feature_value(row[j], path, line, header[j]) for j in i_features]
        if i_label is not None:
            label = row[i_label].strip()
            if not label:
                raise XaiError(f"{path}: empty label at row {line}, column {label_column!r}")
            first = labels.setdefault(sample, (label, line))
            if first[0] != label:
                raise XaiError(f"{path}: sample {sample!r} has the label {first[0]!r} at row "
                               f"{first[1]} but {label!r} at row {line} (column {label_column!r}); "
                               f"a sample's label must be the same on all its rows")
        samples.setdefault(sample, []).append((time, line, values))
    steps = max(len(series) for series in samples.values())
    X = np.full((len(samples), steps, len(features)), np.nan)
    for i, series in enumerate(samples.values()):
        series.sort()
        X[i, :len(series)] = [values for _, _, values in series]
    info = {"source": str(path), "feature_names": features, "id_column": id_column,
            "time_column": time_column, "sample_ids": list(samples)}
    if label_column is None:
        return X, None, info, None
    info["label_column"] = label_column
    return X, np.array([labels[s][0] for s in samples]), info, None


def _time_value(cell: str, path: Path | str, line: int, column: str) -> tuple[float, str]:
    """A time cell as a number to order by, and its kind ("number" or "date")."""
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text).timestamp(), "date"
        except ValueError:
            what = "an empty cell" if not text else f"{text!r}, neither a number nor an ISO date,"
            raise XaiError(f"{path}: {what} at row {line}, column {column!r}") from None
    if not math.isfinite(value):
        raise XaiError(f"{path}: time {text} at row {line}, column {column!r}")
    return value, "number"


def _feature_value(cell: str, path: Path | str, line: int, column: str) -> float:
    """A feature cell as a number; a missing, non-numeric or infinite one is an error."""
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        what = "an empty cell" if not text else f"non-numeric cell {text!r}"
        raise XaiError(f"{path}: {what} at row {line}, column {column!r} (every column but the "
                       f"id, time and label columns is a feature)") from None
    if not math.isfinite(value):
        raise XaiError(f"{path}: {text} (missing or infinite) at row {line}, column {column!r} "
                       f"(a long-format sample ends where its rows end: no padding cells)")
    return value


def csv_values(row: list[str], header: list[str], n_values: int, path: Path | str,
               line: int) -> np.ndarray:
    """The ``n_values`` numbers of a CSV row (trailing empty or NaN cells: padding, NaN); a
    ragged row, an empty cell inside the series or a non-number is an error naming row and
    column."""
    if len(row) != len(header):
        raise XaiError(f"{path}: ragged rows: row {line} has {len(row)} cells but the header "
                       f"has {len(header)} columns")
    values = np.full(n_values, np.nan)
    cells = row[:n_values]
    length = len(cells)  # trailing empty or NaN cells are padding
    while length > 1 and cells[length - 1].strip().lower() in ("", "nan"):
        length -= 1
    for j, cell in enumerate(cells[:length]):
        try:
            value = float(cell)
        except ValueError:
            what = "an empty cell" if not cell.strip() else f"non-numeric cell {cell.strip()!r}"
            raise XaiError(f"{path}: {what} at row {line}, column {header[j]!r}") from None
        if not math.isfinite(value):
            raise XaiError(f"{path}: {cell.strip()} (NaN or infinite) at row {line}, column "
                           f"{header[j]!r} (only trailing cells of a row may be NaN: padding)")
        values[j] = value
    return values


def csv_columns(path: Path) -> int:
    """The number of columns in the header row of a CSV file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return len(next(csv.reader(f), []))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise XaiError(f"cannot read CSV {path}: {exc}") from None


def npz_arrays(path: Path, what: str = "") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (pickles refused), checked to hold ``X`` and ``y`` and either both
    or neither of ``X_test``/``y_test``; ``what`` names ``X`` and ``y`` in the error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except UNREADABLE as exc:
        raise XaiError(f"cannot read {path} as npz arrays (pickled objects are refused): "
                       f"{type(exc).__name__}: {exc}") from None
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise XaiError(f"{path} lacks array(s) {', '.join(missing)}{f' ({what})' if what else ''}; "
                       f"it holds {', '.join(arrays) or 'nothing'}")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise XaiError(f"{path} must hold both X_test and y_test, or neither")
    return arrays


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, dict, tuple | None]:
    """Arrays ``X``, ``y`` and the optional ``X_test``/``y_test``, ``class_names``, ``feature_names``."""
    arrays = npz_arrays(path)
    info: dict[str, Any] = {"source": str(path)}
    for key in ("class_names", "feature_names"):
        if key in arrays:
            info[key] = [str(v) for v in np.asarray(arrays[key]).ravel()]
    X = _npz_X(arrays["X"], path, "X", arrays.get("lengths"))
    labels = _npz_labels(arrays["y"], len(X), info.get("class_names"), path, "y")
    test = None
    if "X_test" in arrays:
        X_test = _npz_X(arrays["X_test"], path, "X_test", arrays.get("lengths_test"))
        if X_test.shape[2:] != X.shape[2:] or (X_test.shape[1] != X.shape[1]
                                               and "lengths" not in arrays):
            raise XaiError(f"{path}: X_test samples are {X_test.shape[1:]} (time, feature) but X "
                           f"samples are {X.shape[1:]}")
        test = (X_test, _npz_labels(arrays["y_test"], len(X_test), info.get("class_names"),
                                    path, "y_test"))
    return X, labels, info, test


def _npz_X(X: np.ndarray, path: Path, key: str, lengths: np.ndarray | None = None) -> np.ndarray:
    """``X`` as ``[sample, time, feature]``, padded with NaN after the ``lengths`` when given."""
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise XaiError(f"{path}: {key} must hold real numbers, not {X.dtype}")
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3 or X.shape[0] == 0:
        raise XaiError(f"{path}: {key} must be [sample, time, feature] or [sample, time] with at "
                       f"least one sample; got shape {X.shape}")
    if lengths is not None:
        X = with_lengths(X, lengths, f"{path}: lengths of {key}")
    check_finite(X, f"{path}: {key}")
    return X


def _npz_labels(y: np.ndarray, n: int, class_names: list[str] | None, path: Path,
                key: str) -> np.ndarray:
    """Labels as text; integer labels index ``class_names`` when the file gives them."""
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise XaiError(f"{path}: {n} samples but {len(y)} labels in {key}")
    if class_names and np.issubdtype(y.dtype, np.integer):
        if y.min() < 0 or y.max() >= len(class_names):
            raise XaiError(f"{path}: {key} holds class index {int(y.max() if y.max() >= 0 else y.min())}"
                           f" but class_names has {len(class_names)} names")
        return np.array([class_names[i] for i in y])
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise XaiError(f"{path}: {key} holds NaN labels")
    return np.array([str(v) for v in y])
