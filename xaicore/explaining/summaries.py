"""Dataset-level summaries of a streamed result, built batch by batch while it is written (no
second pass over the attributions).

- ``sample_columns``: one row per sample: what the model predicted and how sure it was, how much
  attribution each feature carries, and where on the time axis it concentrates.
- ``ClassTotals``: per explained class, running sums of the attributions, their absolute values
  and the inputs over ``[time, feature]``, giving the class means at the end.
- ``export_table``: the per-sample rows as Parquet and CSV, streamed from the store in blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.explaining.explanation import Explanation
from xaicore.files import atomic_path

#: Per-sample columns kept in the store under ``summary/`` (``share`` is ``[sample, feature]``).
SAMPLE_COLUMNS = ("sample_ids", "labels", "targets", "predictions", "probability",
                  "target_probability", "attribution_sum", "attribution_l1", "peak_t", "center_t",
                  "spread_t", "share")


def sample_columns(e: Explanation) -> dict[str, np.ndarray]:
    """The summary row of every sample of ``e``, vectorised over the batch.

    ``share[:, f]`` is feature f's part of the absolute attribution (rows sum to 1, or 0 when a
    sample has no attribution at all); ``center_t`` and ``spread_t`` are the mean and standard
    deviation of the time index weighted by the absolute attribution at each step, ``peak_t`` the
    step where it is largest. Padding (NaN, variable-length series) counts as no attribution.
    """
    attributions = np.nan_to_num(e.attributions.astype(np.float64))
    magnitude = np.abs(attributions)
    per_feature = magnitude.sum(axis=1)  # [n, F]
    per_step = magnitude.sum(axis=2)  # [n, T]
    l1 = per_feature.sum(axis=1)
    safe = np.where(l1 > 0, l1, 1.0)
    steps = np.arange(per_step.shape[1], dtype=np.float64)
    center = (per_step @ steps) / safe
    spread = np.sqrt(np.maximum((per_step @ steps ** 2) / safe - center ** 2, 0.0))
    rows = np.arange(e.n_samples)
    return {
        "sample_ids": e.sample_ids, "labels": e.labels, "targets": e.targets,
        "predictions": e.predictions,
        "probability": e.probabilities[rows, e.predictions].astype(np.float32),
        "target_probability": e.probabilities[rows, e.targets].astype(np.float32),
        "attribution_sum": attributions.sum(axis=(1, 2)).astype(np.float32),
        "attribution_l1": l1.astype(np.float32),
        "peak_t": per_step.argmax(axis=1).astype(np.int32),
        "center_t": np.where(l1 > 0, center, np.nan).astype(np.float32),
        "spread_t": np.where(l1 > 0, spread, np.nan).astype(np.float32),
        "share": (per_feature / safe[:, None]).astype(np.float32),
    }


class ClassTotals:
    """Running per-class sums over ``[time, feature]``, keyed by the explained class; ``valid``
    counts the samples with a value (not padding) in every cell, the divisor of the means."""

    FIELDS = ("count", "valid", "attribution_sum", "attribution_abs_sum", "input_sum")

    def __init__(self, n_classes: int, shape: tuple[int, int], rows: int = 0) -> None:
        self.rows = rows
        self.count = np.zeros(n_classes, dtype=np.int64)
        self.attribution_sum = np.zeros((n_classes, *shape), dtype=np.float64)
        self.attribution_abs_sum = np.zeros_like(self.attribution_sum)
        self.input_sum = np.zeros_like(self.attribution_sum)
        self.valid = np.zeros((n_classes, *shape), dtype=np.int64)

    def add(self, e: Explanation) -> None:
        a = e.attributions.astype(np.float64)
        np.add.at(self.count, e.targets, 1)
        for cls in np.unique(e.targets):
            rows = e.targets == cls
            self.attribution_sum[cls] += np.nansum(a[rows], axis=0)
            self.attribution_abs_sum[cls] += np.nansum(np.abs(a[rows]), axis=0)
            self.input_sum[cls] += np.nansum(e.inputs[rows].astype(np.float64), axis=0)
            self.valid[cls] += (~np.isnan(a[rows])).sum(axis=0)
        self.rows += e.n_samples

    def means(self) -> dict[str, np.ndarray]:
        """``count [class]`` and the class means ``[class, time, feature]`` over the samples with a
        value there (NaN where there is none: no sample of the class, or only padding)."""
        n = np.where(self.valid > 0, self.valid, 1).astype(np.float64)
        empty = self.valid == 0
        mean = {name: np.where(empty, np.nan, getattr(self, f"{name}_sum") / n).astype(np.float32)
                for name in ("attribution", "attribution_abs", "input")}
        return {"count": self.count.copy(), "attribution_mean": mean["attribution"],
                "attribution_abs_mean": mean["attribution_abs"], "input_mean": mean["input"]}

    def save(self, path: Path) -> None:
        """Write atomically, so a kill leaves the last complete checkpoint."""
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, rows=np.int64(self.rows),
                     **{name: getattr(self, name) for name in self.FIELDS})

    @classmethod
    def load(cls, path: Path) -> ClassTotals:
        with np.load(path, allow_pickle=False) as data:
            totals = cls(len(data["count"]), data["attribution_sum"].shape[1:], int(data["rows"]))
            for name in cls.FIELDS:
                if name in data:  # stores written before variable-length series lack "valid"
                    setattr(totals, name, data[name].copy())
            if "valid" not in data:
                totals.valid[:] = totals.count[:, None, None]
        return totals


def table_blocks(n_rows: int, read: Callable[[int, int], dict[str, np.ndarray]],
                 class_names: list[str], feature_names: list[str],
                 block: int = 65_536) -> Iterator[Any]:
    """The per-sample table as pandas DataFrames of at most ``block`` rows."""
    import pandas as pd

    names = np.asarray(class_names + [""], dtype=object)  # index -1 (no label) reads ""
    for start in range(0, n_rows, block):
        cols = read(start, min(start + block, n_rows))
        share = cols.pop("share")
        frame = pd.DataFrame({
            "sample_id": cols["sample_ids"], "label": cols["labels"],
            "label_name": names[cols["labels"]], "target": cols["targets"],
            "target_name": names[cols["targets"]], "prediction": cols["predictions"],
            "prediction_name": names[cols["predictions"]],
            "correct": pd.array(np.where(cols["labels"] >= 0,
                                         cols["labels"] == cols["predictions"], pd.NA),
                                dtype="boolean"),
            **{k: cols[k] for k in ("probability", "target_probability", "attribution_sum",
                                    "attribution_l1", "peak_t", "center_t", "spread_t")},
            **{f"share_{name}": share[:, i] for i, name in enumerate(feature_names)}})
        yield frame


def export_table(blocks: Iterator[Any], parquet: Path, csv: Path) -> None:
    """Write the blocks to ``parquet`` and ``csv``, each appearing whole or not at all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(parquet) as tmp_parquet, atomic_path(csv) as tmp_csv:
        writer = None
        try:
            for i, frame in enumerate(blocks):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp_parquet), table.schema)
                writer.write_table(table)
                frame.to_csv(tmp_csv, mode="w" if i == 0 else "a", header=i == 0, index=False)
        finally:
            if writer is not None:
                writer.close()
