"""Inputs for a trained model: the series (and labels) a user gives ``xai predict`` and
``xai explain --input``, in memory or streamed, read in row ranges without loading the whole file.

One reader serves every command, and one rule reads the labels (``class_indices``): a label is a
class name of the model when every label is one; labels are class indices where the file says so
(it carries ``class_names``, which its integer ``y`` indexes), or where no label could be read as
a class name; a file whose labels read both ways with different classes is refused, naming both
readings. (Training data defines its classes itself: ``data.loading``.)
"""

from __future__ import annotations

import csv
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from xaicore.data.dataset import pad_to, with_lengths
from xaicore.data.loading import (
    LONG_KEYS,
    csv_values,
    label_texts,
    long_columns,
    long_format_watch,
    read_long_csv,
)
from xaicore.errors import XaiError

INPUT_SUFFIXES = (".npy", ".npz", ".csv", ".zarr")


@dataclass
class InputSource:
    """Series read in row ranges: ``read(start, stop)`` gives ``X [rows, time, feature]`` float32
    (NaN after each series' length where the file gives ``lengths``) and the labels (class
    indices) or None."""

    path: str
    n_rows: int
    row_shape: tuple[int, ...]
    kind: str
    array_name: str = "X"
    labels: np.ndarray | None = None
    memory: np.ndarray | None = field(default=None, repr=False)
    lengths: np.ndarray | None = field(default=None, repr=False)
    header: list[str] = field(default_factory=list, repr=False)  # of a CSV
    file_class_names: list[str] | None = None  # the class names the file's integer labels index
    #: a name per row where the input has them (a folder's files, relative to it), else None
    row_names: list[str] | None = field(default=None, repr=False)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.kind == "npy":
            X = np.load(self.path, mmap_mode="r")[start:stop]
        elif self.kind == "zarr":
            import zarr

            X = zarr.open_array(str(Path(self.path) / self.array_name), mode="r")[start:stop]
        elif self.kind == "npz":
            X = _npz_rows(Path(self.path), self.array_name, start, stop)
        elif self.kind == "csv":
            X = _csv_rows(Path(self.path), self.header, self.row_shape[0], start, stop)
        else:  # "memory": an array already loaded (the test split)
            assert self.memory is not None
            X = self.memory[start:stop]
        X = np.asarray(X)
        if np.iscomplexobj(X) or not np.issubdtype(X.dtype, np.number):
            raise XaiError(f"{self.path} must hold real numbers, not {X.dtype}")
        X = np.array(X, dtype=np.float32)  # a writable copy of the rows (memory maps are read-only)
        if X.ndim == 2:
            X = X[:, :, None]
        if self.lengths is not None:
            X = with_lengths(X, self.lengths[start:stop], f"{self.path}: lengths")
        labels = None if self.labels is None else self.labels[start:stop]
        return X, labels

    @classmethod
    def from_array(cls, X: np.ndarray, labels: np.ndarray | None, name: str) -> InputSource:
        return cls(name, len(X), tuple(X.shape[1:]), "memory", labels=labels, memory=X)


def open_input(path: str | Path, class_names: list[str] | None = None,
               seq_len: int | None = None, columns: dict | None = None,
               n_features: int | None = None) -> InputSource:
    """An ``InputSource`` over a ``.npy`` (memory-mapped), ``.npz`` (array ``X``, read row by
    row from the archive; ``y``, ``lengths`` and ``class_names`` beside it), ``.csv`` (a header,
    then one univariate series per row, the training layout: a last column more than
    ``seq_len`` values, or one that is not a number, is the label) or a Zarr store (an array, or
    a group with ``X`` and ``y``). With ``columns`` (``id_column``, ``time_column``, optionally
    ``label_column``) a ``.csv`` is a long-format table, read into memory and padded to
    ``seq_len``; its label column is optional (``data.loading.read_long_csv`` with the model's
    ``n_features``). Labels are read by the rule of ``class_indices``."""
    columns = long_columns(*((columns or {}).get(key) for key in LONG_KEYS))
    if columns:
        source = _open_long(Path(path), columns, seq_len, n_features)
    else:
        source = _open_input(Path(path), seq_len)
    if source.labels is not None:
        if len(source.labels) != source.n_rows:
            raise XaiError(f"{source.path}: {source.n_rows} samples X but {len(source.labels)} "
                           f"labels y")
        source.labels = class_indices(source.labels, class_names, source.path,
                                      source.file_class_names)
    if source.lengths is not None and source.lengths.shape != (source.n_rows,):
        raise XaiError(f"{source.path}: lengths must hold one integer per sample "
                       f"({source.n_rows}), got shape {source.lengths.shape}")
    return source


def class_indices(labels: Any, class_names: list[str] | None, where: str,
                  file_class_names: list[str] | None = None) -> np.ndarray:
    """Labels as indices into the model's ``class_names``, by the module's one rule."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise XaiError(f"{where}: labels y must be one per sample, got shape {labels.shape}")
    if class_names is None:
        raise XaiError(f"{where}: labels need the model's class names")
    names = [str(n) for n in label_texts(class_names)]
    index = {name: i for i, name in enumerate(names)}
    shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    if file_class_names is not None:  # the file says its labels index its own class names
        if len(labels) and not np.issubdtype(labels.dtype, np.integer):
            raise XaiError(f"{where}: y must hold indices into the file's class_names, not "
                           f"{labels.dtype} values")
        out_of_range = labels[(labels < 0) | (labels >= len(file_class_names))]
        if len(out_of_range):
            raise XaiError(f"{where}: y holds class index {int(out_of_range[0])} but the file's "
                           f"class_names has {len(file_class_names)} names")
        texts = [str(t) for t in label_texts([file_class_names[i] for i in labels])]
    else:
        texts = [str(t) for t in label_texts(labels)]
    as_names = [index.get(t) for t in texts]
    if file_class_names is not None or all(i is not None for i in as_names):
        unknown = next((t for t, i in zip(texts, as_names) if i is None), None)
        if unknown is not None:
            raise XaiError(f"{where}: label {unknown!r} is not a class of the model (classes: "
                           f"{shown})")
        if file_class_names is None:
            differ = next((t for t, i in zip(texts, as_names)
                           if _index(t, len(names)) not in (None, i)), None)
            if differ is not None and all(_index(t, len(names)) is not None for t in texts):
                raise _ambiguous(where, f"label {differ!r} is class {differ!r}",
                                 f"it is class {names[int(differ)]!r}", shown)
        return np.array(as_names, dtype=np.int64)
    as_indices = [_index(t, len(names)) for t in texts]
    if all(i is not None for i in as_indices):
        named = next((t for t, i in zip(texts, as_names) if i is not None), None)
        if named is not None:
            missing = next(t for t, i in zip(texts, as_names) if i is None)
            raise _ambiguous(where, f"label {missing!r} is no class of the model",
                             f"label {named!r} is class {names[int(named)]!r}, not {named!r}",
                             shown)
        return np.array(as_indices, dtype=np.int64)
    unknown = next(t for t, i in zip(texts, as_names) if i is None)
    raise XaiError(f"{where}: label {unknown!r} is not a class of the model (classes: {shown})")


def _index(text: str, n_classes: int) -> int | None:
    """``text`` as a class index (ASCII digits below ``n_classes``), or None."""
    return int(text) if re.fullmatch(r"[0-9]+", text) and int(text) < n_classes else None


def _ambiguous(where: str, as_names: str, as_indices: str, shown: str) -> XaiError:
    return XaiError(f"{where}: labels y read two ways: as class names, {as_names}; as class "
                    f"indices, {as_indices} (classes: {shown}); store class_names in the file "
                    f"when y holds indices into them, or write y as class names")


def _open_input(path: Path, seq_len: int | None) -> InputSource:
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise XaiError(f"inputs must be a {', '.join(INPUT_SUFFIXES)} file, not {path.name!r}")
    if not path.exists():
        raise XaiError(f"no input at {path}")
    try:
        if suffix == ".npy":
            X = np.load(path, mmap_mode="r", allow_pickle=False)
            return InputSource(str(path), len(X), tuple(X.shape[1:]), "npy")
        if suffix == ".npz":
            shape, _ = _npz_header(path, "X")
            with np.load(path, allow_pickle=False) as archive:
                extra = {k: archive[k] for k in ("y", "lengths", "class_names")
                         if k in archive.files}
            return InputSource(str(path), shape[0], tuple(shape[1:]), "npz",
                               labels=_ravel(extra.get("y")), lengths=_ravel(extra.get("lengths")),
                               file_class_names=_names(extra.get("class_names")))
        if suffix == ".zarr":
            import zarr

            node: Any = zarr.open(str(path), mode="r")  # an array or a group
            grouped = hasattr(node, "members")
            array = node["X"] if grouped else node
            extra = {k: node[k][...] for k in ("y", "lengths", "class_names")
                     if grouped and k in node}
            return InputSource(str(path), array.shape[0], tuple(array.shape[1:]), "zarr",
                               "X" if grouped else "", labels=_ravel(extra.get("y")),
                               lengths=_ravel(extra.get("lengths")),
                               file_class_names=_names(extra.get("class_names")))
        return _open_csv(path, seq_len)
    except XaiError:
        raise
    except Exception as exc:  # numpy, zipfile and zarr raise many kinds on a bad file
        what = f" as {suffix[1:]} arrays" if suffix in (".npy", ".npz") else ""
        raise XaiError(f"cannot read {path}{what} ({type(exc).__name__}: {exc})") from None


def _ravel(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values).ravel()


def _names(values: Any) -> list[str] | None:
    return None if values is None else [str(v) for v in np.asarray(values).ravel()]


def _npz_header(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    with zipfile.ZipFile(path) as archive:
        if f"{name}.npy" not in archive.namelist():
            raise XaiError(f"{path} holds no array {name} (it holds "
                           f"{', '.join(n[:-4] for n in archive.namelist()) or 'nothing'})")
        with archive.open(f"{name}.npy") as handle:
            shape, fortran, dtype = _array_header(handle)
    if fortran:
        raise XaiError(f"{path}: array {name} is stored in Fortran order; save it C-ordered "
                       f"(np.ascontiguousarray) to stream it")
    return shape, dtype


def _array_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(handle)
    if dtype.hasobject:
        raise XaiError("object arrays are refused (they would need pickle)")
    return shape, fortran, dtype


def _npz_rows(path: Path, name: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of array ``name``, decompressed from the archive without the rest."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as handle:
        shape, _, dtype = _array_header(handle)
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        handle.seek(handle.tell() + start * row_bytes)
        data = handle.read((stop - start) * row_bytes)
    return np.frombuffer(data, dtype=dtype).reshape(stop - start, *shape[1:])


def _open_long(path: Path, columns: dict, seq_len: int | None,
               n_features: int | None) -> InputSource:
    if path.suffix.lower() != ".csv":
        raise XaiError(f"--id-column and --time-column read a long-format .csv file, not "
                       f"{path.name!r}")
    if not path.is_file():
        raise XaiError(f"no input at {path}")
    X, labels, _, _ = read_long_csv(path, columns["id_column"], columns["time_column"],
                                    columns.get("label_column"), n_features)
    if seq_len is not None and X.shape[1] < seq_len:
        X = pad_to(X, seq_len)
    X = X.astype(np.float32)
    return InputSource(str(path), len(X), tuple(X.shape[1:]), "memory", labels=labels, memory=X)


def _csv_lines(path: Path):
    """The non-blank rows of a CSV file, as cells."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.reader(handle):
                if any(cell.strip() for cell in row):
                    yield row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise XaiError(f"cannot read CSV {path}: {exc}") from None


def _open_csv(path: Path, seq_len: int | None) -> InputSource:
    rows = _csv_lines(path)
    header = [h.strip() for h in next(rows, [])]
    first = next(rows, None)
    if first is None:
        raise XaiError(f"{path} has no data rows (expected a header row, then one row per sample)")
    last = first[-1].strip() if len(first) == len(header) else ""
    has_label = (len(header) == seq_len + 1) if seq_len is not None else not _number(last)
    n_values = len(header) - int(has_label)
    if n_values < 1:
        raise XaiError(f"{path} has {len(header)} column(s); expected value columns, then an "
                       f"optional label column")
    labels, n_rows = [], 0
    watch = long_format_watch(path, header[:n_values])
    for line, row in enumerate([first, *rows], 2):
        n_rows += 1
        watch(row)
        if has_label:
            if len(row) != len(header):
                raise XaiError(f"{path}: ragged rows: row {line} has {len(row)} cells but the "
                               f"header has {len(header)} columns")
            if not row[-1].strip():
                raise XaiError(f"{path}: empty label at row {line}, column {header[-1]!r}")
            labels.append(row[-1].strip())
    return InputSource(str(path), n_rows, (n_values,), "csv", header=header,
                       labels=np.array(labels) if has_label else None)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rows(path: Path, header: list[str], n_values: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` (0 = the first after the header) as ``[rows, n_values]`` numbers."""
    X = np.empty((stop - start, n_values))
    rows = _csv_lines(path)
    next(rows, None)
    for i, row in enumerate(rows):
        if i >= stop:
            break
        if i >= start:
            X[i - start] = csv_values(row, header, n_values, path, i + 2)
    return X
