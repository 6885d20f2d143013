"""Chunked result stores: one Zarr v3 group per method, written batch by batch, read lazily.

A store holds what an ``.npz`` explanation holds, chunked along samples: ``attributions`` and
``inputs`` ``[sample, time, feature]``, ``targets``, ``predictions``, ``labels``, ``sample_ids``,
``probabilities [sample, class]``, per-sample array extras under ``extras/``, and the metadata in
the group's attributes. Rows are written in order, a checkpoint's worth at a time (``flush``);
``rows_written`` counts those on disk and ``complete`` turns true only after the last one, so a
store cut short (kill -9, Ctrl-C) is never read as complete and ``--resume`` continues it from
``rows_written``.

While rows are written, the dataset summaries of ``summaries.py`` are built: the per-sample
columns under ``summary/``, the per-class running sums checkpointed to ``class_totals.npz``
(resuming continues from that checkpoint's row count), and at the end the class means under
``summary/class/`` and the per-sample table beside the store (``NAME.samples.parquet`` and
``.csv``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.errors import XaiError
from xaicore.explaining.explanation import FORMAT_VERSION, Explanation, _jsonable
from xaicore.explaining.summaries import (
    SAMPLE_COLUMNS,
    ClassTotals,
    export_table,
    sample_columns,
    table_blocks,
)
from xaicore.files import atomic_path

SUFFIX = ".zarr"
ROW_ARRAYS = ("attributions", "inputs", "targets", "predictions", "probabilities", "labels",
              "sample_ids")
TOTALS = "class_totals.npz"
#: Explained rows wait in memory and are written together (a checkpoint) every this many seconds,
#: or sooner when they reach ``FLUSH_BYTES``: a kill loses at most that much work (``--resume``
#: explains it again), and the store is written in few large writes instead of many small ones.
CHECKPOINT_SECONDS = 10.0
FLUSH_BYTES = 16 << 20
#: Per-sample arrays of at most ``SMALL_ROW_BYTES`` a row (ids, classes, summary columns) are
#: chunked ``SMALL_CHUNK_ROWS`` rows at a time: one chunk per batch would cost Zarr its Python
#: overhead and a file per array and batch, most of a batch's writing time for small rows. A
#: checkpoint rewrites the partly filled chunk holding rows already on disk; Zarr >= 3.1.3 writes
#: every chunk file atomically (a temporary file renamed into place), so a kill cannot damage them.
SMALL_ROW_BYTES = 64
SMALL_CHUNK_ROWS = 65_536


def _zarr():
    import zarr

    return zarr


def table_paths(path: str | Path) -> tuple[Path, Path]:
    """The per-sample summary table written beside the store: ``NAME.samples.parquet``/``.csv``."""
    path = Path(path)
    stem = path.name[:-len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    return (path.with_name(f"{stem}.samples.parquet"), path.with_name(f"{stem}.samples.csv"))


def is_store(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "zarr.json").is_file()


class StoreWriter:
    """Creates (or reopens, to resume) a store of ``n_rows`` samples and appends batches to it."""

    def __init__(self, path: Path, n_rows: int, chunk_rows: int, metadata: dict,
                 checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.path, self.n_rows, self.chunk_rows = Path(path), int(n_rows), int(chunk_rows)
        self.metadata = metadata
        self.checkpoint_seconds = checkpoint_seconds
        self.group: Any = None  # the open zarr group, set by create and resume
        self.totals: ClassTotals | None = None
        self.arrays: dict[str, Any] = {}
        self.pending: list[dict[str, np.ndarray]] = []  # explained batches not yet written
        self.pending_rows = self.pending_bytes = 0
        self.saved = time.monotonic()

    @classmethod
    def create(cls, path: Path, n_rows: int, chunk_rows: int, metadata: dict, force: bool,
               checkpoint_seconds: float = CHECKPOINT_SECONDS) -> StoreWriter:
        """A new empty store at ``path``; an existing one is replaced only with ``force``."""
        path = Path(path)
        if path.exists():
            if not force:
                state = "complete" if is_complete(path) else "incomplete"
                raise XaiError(f"{path} exists ({state}); use --force to overwrite it"
                               + ("" if state == "complete" else " or --resume to continue it"))
            if not is_store(path):
                raise XaiError(f"{path} exists and is not an xai result store; not replacing it")
            shutil.rmtree(path)
        for table in table_paths(path):  # the old store's table must not outlive it
            table.unlink(missing_ok=True)
        writer = cls(path, n_rows, chunk_rows, metadata, checkpoint_seconds)
        with atomic_path(path) as tmp:  # the store appears with its attributes, or not at all
            _zarr().open_group(str(tmp), mode="w", attributes={
                "xai_store": 1, "format_version": FORMAT_VERSION, "metadata": _jsonable(metadata),
                "n_rows": writer.n_rows, "chunk_rows": writer.chunk_rows, "rows_written": 0,
                "complete": False})
        writer.group = _zarr().open_group(str(path), mode="r+")
        return writer

    @classmethod
    def resume(cls, path: Path, n_rows: int, metadata: dict,
               checkpoint_seconds: float = CHECKPOINT_SECONDS) -> StoreWriter:
        """Reopen an incomplete store made for the same input and method."""
        attrs = store_attrs(path)
        if attrs["complete"]:
            raise XaiError(f"{path} is already complete; use --force to compute it again")
        if attrs["n_rows"] != n_rows or attrs["metadata"].get("method") != metadata.get("method"):
            raise XaiError(f"{path} was started for {attrs['n_rows']} samples of "
                           f"{attrs['metadata'].get('method')!r}, not {n_rows} of "
                           f"{metadata.get('method')!r}; use --force to start it again")
        started = attrs["metadata"].get("job") or {}
        if metadata.get("job") and not started:
            raise XaiError(f"{path} was started by an xai that did not record its job (input, "
                           f"model, options), so --resume cannot tell it is the same one; "
                           f"start it again with --force")
        differs = [key for key, value in metadata.get("job", {}).items()
                   if started.get(key) != value]
        if differs:
            what = {"input": "the input data", "model_digest": "the run's model",
                    "options": "the method's options", "target": "the target"}
            changed = ", ".join(what.get(k, k) for k in differs)
            raise XaiError(f"{path} was started for another job ({changed} changed since); "
                           f"--resume continues only the same job: run the same command as "
                           f"before, or start again with --force")
        writer = cls(path, n_rows, attrs["chunk_rows"], attrs["metadata"], checkpoint_seconds)
        writer.group = _zarr().open_group(str(path), mode="r+")
        # the rows the class totals cover are the ones kept; later rows are explained again
        totals = path / TOTALS
        writer.totals = ClassTotals.load(totals) if totals.is_file() else None
        if writer.totals is not None and writer.totals.rows > writer.rows_written:
            writer.totals = None  # counts rows that never reached the disk: start again
        kept = writer.totals.rows if writer.totals is not None else 0
        writer.group.attrs["rows_written"] = min(kept, writer.rows_written)
        return writer

    @property
    def rows_written(self) -> int:
        """Rows on disk (explained rows waiting to be written are not counted)."""
        return int(self.group.attrs["rows_written"])

    @property
    def next_row(self) -> int:
        return self.rows_written + self.pending_rows

    def append_from(self, start: int, explanation: Explanation) -> None:
        """Take the rows of ``explanation`` (rows ``start...`` of the input) not yet taken."""
        taken = self.next_row
        if start > taken:
            raise XaiError(f"{self.path}: rows {taken}..{start} are missing")
        if start + explanation.n_samples <= taken:
            return
        if start < taken:
            explanation = explanation.select(np.arange(taken - start, explanation.n_samples))
        self.append(explanation)

    def append(self, explanation: Explanation) -> None:
        """Take the next rows; they are written at the next checkpoint (``flush``)."""
        start = self.next_row
        if start + explanation.n_samples > self.n_rows:
            raise XaiError(f"{self.path}: {start + explanation.n_samples} rows for a store of "
                           f"{self.n_rows}")
        arrays = {name: getattr(explanation, name) for name in ROW_ARRAYS}
        arrays.update({f"extras/{k}": v for k, v in explanation.extras.items()
                       if isinstance(v, np.ndarray)})
        arrays.update({f"summary/{k}": v for k, v in sample_columns(explanation).items()})
        if start == 0:
            json_extras = {k: _jsonable(v) for k, v in explanation.extras.items()
                           if not isinstance(v, np.ndarray)}
            self.group.attrs["json_extras"] = json_extras
            self.totals = None
        if self.totals is None:
            self.totals = ClassTotals(explanation.probabilities.shape[1],
                                      explanation.attributions.shape[1:], start)
        self.totals.add(explanation)
        self.pending.append(arrays)
        self.pending_rows += explanation.n_samples
        self.pending_bytes += sum(v.nbytes for v in arrays.values())
        if (self.pending_bytes >= FLUSH_BYTES
                or time.monotonic() - self.saved >= self.checkpoint_seconds):
            self.flush()

    def flush(self) -> None:
        """Write the rows taken so far, then move ``rows_written`` and checkpoint the class
        totals (a kill between the two resumes from the older of them)."""
        if self.pending:
            start = self.rows_written
            stop = start + self.pending_rows
            write_rows([self._fitted(name, _joined([batch[name] for batch in self.pending], name))
                        for name in self.pending[0]], start, stop)
            self.group.attrs["rows_written"] = stop
            self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        if self.totals is not None:
            self.totals.save(self.path / TOTALS)
        self.saved = time.monotonic()

    def finish(self) -> None:
        """Write the class means and the per-sample table, then mark the store complete."""
        self.flush()
        if self.rows_written != self.n_rows or self.totals is None \
                or self.totals.rows != self.n_rows:
            raise XaiError(f"{self.path}: {self.rows_written} of {self.n_rows} rows written")
        for name, values in self.totals.means().items():
            self.group.create_array(f"summary/class/{name}", data=values, overwrite=True)
        meta = self.metadata
        names = [str(c) for c in meta.get("class_names", [])]
        export_table(table_blocks(self.n_rows, self.summary_rows, names,
                                  [str(f) for f in meta.get("feature_names", [])]),
                     *table_paths(self.path))
        self.group.attrs["complete"] = True

    def summary_rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {k: self.group[f"summary/{k}"][start:stop] for k in SAMPLE_COLUMNS}

    def _fitted(self, name: str, values: np.ndarray) -> tuple[Any, np.ndarray]:
        """The store's array ``name`` and ``values`` fitted to each other: a per-sample extra on a
        time axis is as wide as the longest series of its batch (variable-length input), so the
        array grows to the widest batch so far and a narrower batch is padded with NaN."""
        array = self._array(name, values)
        if values.shape[1:] == tuple(array.shape[1:]):
            return array, values
        if values.ndim != array.ndim or not name.startswith("extras/"):
            raise XaiError(f"{self.path}: {name} of shape {values.shape[1:]} per sample does not "
                           f"fit the store's {tuple(array.shape[1:])}")
        widest = tuple(max(a, b) for a, b in zip(array.shape[1:], values.shape[1:]))
        if widest != tuple(array.shape[1:]):
            array.resize((array.shape[0], *widest))
        return array, _padded(values, widest, name)

    def _array(self, name: str, values: np.ndarray):
        """The store's array ``name``, opened (or created) once per writer."""
        if name not in self.arrays:
            if name in self.group:
                self.arrays[name] = self.group[name]
            else:
                shape = (self.n_rows, *values.shape[1:])
                small = values[:1].nbytes <= SMALL_ROW_BYTES
                chunks = (max(self.chunk_rows, SMALL_CHUNK_ROWS) if small else self.chunk_rows,
                          *values.shape[1:])
                text = values.dtype.kind == "U"  # token strings: any width, in every batch
                self.arrays[name] = self.group.create_array(
                    name, shape=shape, chunks=chunks, dtype=str if text else values.dtype,
                    fill_value=_fill(name, values.dtype))
        return self.arrays[name]


def _joined(parts: list[np.ndarray], name: str) -> np.ndarray:
    """Batches of one array as one, each padded to the widest (a time-shaped extra of
    variable-length input)."""
    if len(parts) == 1:
        return parts[0]
    widest = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    return np.concatenate([_padded(p, widest, name) for p in parts])


def _padded(values: np.ndarray, widest: tuple[int, ...], name: str) -> np.ndarray:
    if widest == values.shape[1:]:
        return values
    return np.pad(values, [(0, 0)] + [(0, w - v) for w, v in zip(widest, values.shape[1:])],
                  constant_values=_fill(name, values.dtype))


def _fill(name: str, dtype: np.dtype) -> float | str:
    """What a never-written cell holds: NaN in a float extra (which may widen later, for
    variable-length input), "" in a text one, else 0."""
    if dtype.kind == "U":
        return ""
    return np.nan if name.startswith("extras/") and np.issubdtype(dtype, np.floating) else 0


def write_rows(arrays: list[tuple[Any, np.ndarray]], start: int, stop: int) -> None:
    """``array[start:stop] = values`` for every array at once: one trip through Zarr's event loop
    instead of one per array, so the chunks are encoded and written concurrently."""
    import asyncio

    from zarr.core.sync import sync

    async def write_all() -> None:
        await asyncio.gather(*(array.async_array.setitem(slice(start, stop), values)
                               for array, values in arrays))

    sync(write_all())


def store_attrs(path: str | Path) -> dict:
    """The attributes of the store at ``path``; an XaiError when it is none."""
    path = Path(path)
    if not is_store(path):
        raise XaiError(f"no xai result store at {path}")
    try:
        attrs = dict(_zarr().open_group(str(path), mode="r").attrs)
    except Exception as exc:  # zarr raises many kinds on a damaged store
        raise XaiError(f"{path} is a damaged result store ({type(exc).__name__}: {exc})") from None
    if attrs.get("xai_store") != 1 or not isinstance(attrs.get("metadata"), dict) or any(
            key not in attrs for key in ("n_rows", "chunk_rows", "rows_written", "complete")):
        raise XaiError(f"{path} is not an xai result store")
    return attrs


def is_complete(path: str | Path) -> bool:
    try:
        return bool(store_attrs(path)["complete"])
    except XaiError:
        return False


class StoredExplanation:
    """A complete store, opened lazily: arrays are Zarr arrays read chunk by chunk on access.

    ``attributions[i:j]`` reads only the chunks holding rows ``i..j``; ``select`` and ``load``
    return an in-memory ``Explanation``; ``to_xarray`` (with xarray installed) a lazy dataset.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        attrs = store_attrs(self.path)
        if not attrs["complete"]:
            raise XaiError(f"{self.path} is incomplete ({attrs['rows_written']} of "
                           f"{attrs['n_rows']} samples written); finish it with xai explain "
                           f"--resume, or start it again with --force")
        self.group = _zarr().open_group(str(self.path), mode="r")
        meta = attrs["metadata"]
        self.method = str(meta.get("method", ""))
        self.options = dict(meta.get("options", {}))
        self.class_names = list(meta.get("class_names", []))
        self.feature_names = list(meta.get("feature_names", []))
        self.model_name = str(meta.get("model_name", ""))
        self.dataset = str(meta.get("dataset", ""))
        self.model_digest = str(meta.get("model_digest") or "")
        self.modality = str(meta.get("modality") or "")
        self.json_extras = dict(attrs.get("json_extras", {}))

    def __getattr__(self, name: str):
        if name in ROW_ARRAYS:
            return self.group[name]
        raise AttributeError(name)

    @property
    def n_samples(self) -> int:
        return int(self.group["attributions"].shape[0])

    @property
    def extras(self) -> dict[str, Any]:
        arrays = dict(self.group["extras"].arrays()) if "extras" in self.group else {}
        return {**self.json_extras, **arrays}

    def class_summary(self) -> dict[str, np.ndarray]:
        """Per explained class: ``count`` and the means over its samples of the attributions, their
        absolute values and the inputs, ``[class, time, feature]`` (NaN where count is 0)."""
        group = self.group["summary/class"]
        return {name: group[name][...] for name in ("count", "attribution_mean",
                                                     "attribution_abs_mean", "input_mean")}

    def samples_table(self, columns: list[str] | None = None):
        """The per-sample summary table (a pandas DataFrame), read from ``NAME.samples.parquet``."""
        import pandas as pd

        parquet = table_paths(self.path)[0]
        if not parquet.is_file():
            raise XaiError(f"{parquet} is missing; write it again with xai explain --force")
        return pd.read_parquet(parquet, columns=columns)

    def select(self, indices) -> Explanation:
        """The samples at ``indices`` (positions) as an in-memory ``Explanation``."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise XaiError(f"{self.path} holds {self.n_samples} samples; position "
                           f"{int(idx.max())} is out of range")

        def rows(array):  # reads only the chunks holding the selected rows
            return array.get_orthogonal_selection((idx,) + (slice(None),) * (array.ndim - 1))

        extras = {**self.json_extras,
                  **{k: _in_memory(rows(v)) for k, v in self.extras.items() if hasattr(v, "shape")}}
        return Explanation(rows(self.attributions), rows(self.inputs), rows(self.targets),
                           rows(self.predictions), rows(self.probabilities), self.method,
                           dict(self.options), extras, rows(self.labels), rows(self.sample_ids),
                           list(self.class_names), list(self.feature_names), self.model_name,
                           self.dataset, model_digest=self.model_digest, modality=self.modality)

    def load(self) -> Explanation:
        """Every sample in memory."""
        return self.select(np.arange(self.n_samples))

    def to_xarray(self):
        """An ``xarray.Dataset`` over the store's arrays (lazy with dask installed)."""
        try:
            import xarray as xr
        except ImportError:
            raise XaiError("to_xarray needs xarray, which is not installed: pip install xarray "
                           "(and dask for lazy arrays); the store's arrays are also open as zarr "
                           "arrays, e.g. stored.attributions") from None

        return xr.open_zarr(str(self.path), consolidated=False)

    def __repr__(self) -> str:
        return (f"<StoredExplanation {self.method!r}: {self.n_samples} samples at {self.path}, "
                f"{json.dumps(self.class_names)[:60]}>")


def _in_memory(values: np.ndarray) -> np.ndarray:
    """Rows read from the store; text (token strings, stored at any width) as a plain unicode
    array, which ``Explanation.save`` writes without pickling."""
    if values.dtype.kind != "T":
        return values
    width = max((len(text) for text in values.ravel().tolist()), default=1)
    return values.astype(f"U{max(width, 1)}")


def load_explanation(path: str | Path) -> Explanation | StoredExplanation:
    """The result at ``path``: an ``Explanation`` from an ``.npz`` file, or a result store (a
    ``.zarr`` folder written by streaming ``xai explain``) opened lazily."""
    return StoredExplanation(path) if Path(path).is_dir() else Explanation.load(path)
