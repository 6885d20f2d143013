"""``Explanation``: the one result type every explainer returns, laid out ``[sample, time, feature]``."""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.data.dataset import series_lengths
from xaicore.errors import XaiError
from xaicore.files import atomic_open
from xaicore.plugins.stages import figure

FORMAT_VERSION = 1
AXES = ("sample", "time", "feature")
HOWS = ("sum", "abs_sum", "mean", "abs_mean")
_CORE_ARRAYS = ("attributions", "inputs", "targets", "predictions", "probabilities", "labels",
                "sample_ids", "lengths")


@dataclass
class Explanation:
    """Attributions of one method for a batch of samples, with everything needed to read them.

    ``attributions`` and ``inputs`` are ``[sample, time, feature]`` and aligned with the inputs as
    loaded (before the model's own normalisation). Variable-length series are padded: ``lengths``
    holds each sample's valid steps, and inputs and attributions are NaN after them (the padding
    is left out of every aggregate). ``targets`` are the explained class indices,
    ``labels`` the true classes where known (-1 where not). ``extras`` holds method-specific results
    (IG convergence delta, SHAP expected value, attention matrices, ...), arrays or JSON values.
    """

    attributions: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    method: str
    options: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    # labels, sample_ids and lengths may be given as None: __post_init__ fills them (-1 for
    # unknown labels, 0..n-1, the lengths found in the inputs), so they are arrays from then on
    labels: np.ndarray = None  # type: ignore[assignment]
    sample_ids: np.ndarray = None  # type: ignore[assignment]
    class_names: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=list)
    model_name: str = ""
    dataset: str = ""
    lengths: np.ndarray = None  # type: ignore[assignment]
    model_digest: str = ""  # sha256 of the checkpoint of the model explained ("" if not from one)
    #: the kind of input explained (``protocols.Modality`` name; "" when not known: the default kind)
    modality: str = ""

    def __post_init__(self) -> None:
        self.attributions = np.asarray(self.attributions, dtype=np.float32)
        self.inputs = np.asarray(self.inputs, dtype=np.float32)
        if self.attributions.ndim != 3:
            raise XaiError(f"attributions must be [sample, time, feature], got shape "
                           f"{self.attributions.shape}")
        if self.inputs.shape != self.attributions.shape:
            raise XaiError(f"inputs {self.inputs.shape} and attributions {self.attributions.shape} "
                           "must have the same shape")
        n, steps, n_features = self.attributions.shape
        self.lengths = (series_lengths(self.inputs) if self.lengths is None
                        else _vector(self.lengths, n, "lengths", np.int64))
        padding = np.arange(steps)[None, :] >= self.lengths[:, None]
        if padding.any():
            self.attributions = self.attributions.copy()
            self.inputs = self.inputs.copy()
            self.attributions[padding] = np.nan
            self.inputs[padding] = np.nan
        self.targets = _vector(self.targets, n, "targets", np.int64)
        self.predictions = _vector(self.predictions, n, "predictions", np.int64)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
        if self.probabilities.ndim != 2 or self.probabilities.shape[0] != n:
            raise XaiError(f"probabilities must be [sample, class] with {n} samples, got "
                           f"{self.probabilities.shape}")
        n_classes = self.probabilities.shape[1]
        self.labels = (np.full(n, -1, dtype=np.int64) if self.labels is None
                       else _vector(self.labels, n, "labels", np.int64))
        self.sample_ids = (np.arange(n, dtype=np.int64) if self.sample_ids is None
                           else _vector(self.sample_ids, n, "sample_ids", np.int64))
        if not self.class_names:
            self.class_names = [str(c) for c in range(n_classes)]
        if not self.feature_names:
            self.feature_names = [f"feature_{i}" for i in range(n_features)]
        if len(self.class_names) != n_classes:
            raise XaiError(f"{len(self.class_names)} class names for {n_classes} classes")
        if len(self.feature_names) != n_features:
            raise XaiError(f"{len(self.feature_names)} feature names for {n_features} features")
        for key, value in self.extras.items():
            if isinstance(value, np.ndarray) and (value.ndim == 0 or value.shape[0] != n):
                raise XaiError(f"array extra {key!r} must have the sample axis first ({n}), got "
                               f"shape {value.shape}; store whole-batch values as JSON lists")
        bad = (self.targets < 0) | (self.targets >= n_classes)
        if bad.any():
            raise XaiError(f"target class {int(self.targets[bad][0])} is out of range for "
                           f"{n_classes} classes")

    @property
    def axes(self) -> tuple[str, ...]:
        """The names of the three axes of ``attributions`` and ``inputs`` (series: sample, time,
        feature; texts: sample, token, feature), from the kind of input explained."""
        from xaicore.plugins import registry

        try:
            return tuple(registry.get_modality(self.modality or None).axes)
        except XaiError:  # the kind's plugin is not installed here: the axes by position
            return AXES if not self.modality else ("sample", "position", "feature")

    @property
    def time_only(self) -> bool:
        """True when the explainer declared its map one value per position copied to every
        feature (``extras["time_only"]``: Grad-CAM, CAM, attention), so it computes no split over
        features to show or sum."""
        return bool(self.extras.get("time_only", False))

    @property
    def kind(self) -> str:
        """What ``attributions`` hold: ``"attribution"`` (importance), or ``"counterfactual"``
        when the explainer declared them a counterfactual's change (``extras["result_kind"]``:
        ``counterfactual - input``, zero on unchanged cells, the series itself in
        ``extras["counterfactual"]``), which views draw as the series and its counterfactual."""
        return str(self.extras.get("result_kind", "attribution"))

    @property
    def n_samples(self) -> int:
        return self.attributions.shape[0]

    @property
    def target_names(self) -> list[str]:
        return [self.class_names[t] for t in self.targets]

    @property
    def prediction_names(self) -> list[str]:
        return [self.class_names[p] for p in self.predictions]

    def aggregate(self, over: str | Iterable[str] = "time", how: str = "abs_sum") -> np.ndarray:
        """Reduce attributions over one or more axes ("sample", "time", "feature"), over valid
        steps only (padding of variable-length series is left out; a mean over no valid step
        is NaN).

        ``sum`` and ``mean`` keep the sign (positive and negative evidence cancel); ``abs_sum`` and
        ``abs_mean`` measure magnitude, the usual answer to "how important is each feature"
        (``over="time"`` gives ``[sample, feature]``). An explanation whose map is shared by
        every feature (``time_only``) has no per-feature importance: reducing over time while
        keeping the features is an ``XaiError``.
        """
        names = self.axes
        if over == "time" and "time" not in names:
            over = names[1]  # the default: over the positions of any kind of input
        axes_names = (over,) if isinstance(over, str) else tuple(over)
        unknown = [a for a in axes_names if a not in names]
        if unknown or not axes_names:
            raise XaiError(f"over must name axes among {', '.join(names)}, got {over!r}")
        if how not in HOWS:
            raise XaiError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
        axes = tuple(sorted(names.index(a) for a in set(axes_names)))
        if self.time_only and self.attributions.shape[2] > 1 and 1 in axes and 2 not in axes:
            raise XaiError(f"{self.method} maps {names[1]} only: every feature holds the same "
                           f"value, so it has no per-feature importance; aggregate over "
                           f"('{names[1]}', '{names[2]}') too, or use a per-feature method (dcam, "
                           f"integrated-gradients)")
        values = np.abs(self.attributions) if how.startswith("abs_") else self.attributions
        return nan_reduce(values, axes, how.endswith("sum"))

    def to_dataframe(self):
        """A long-form pandas frame: one row per sample, valid position (its column named by the
        kind's axis: ``time``, ``token``) and feature; per-position extras of the kind (texts:
        ``tokens``, ``word_ids``) are columns beside them, so a word-level table is a groupby."""
        import pandas as pd

        n, t, f = self.attributions.shape
        s_idx, t_idx, f_idx = np.meshgrid(np.arange(n), np.arange(t), np.arange(f), indexing="ij")
        valid = (t_idx < self.lengths[s_idx]).ravel()
        s_idx, t_idx, f_idx = s_idx.ravel()[valid], t_idx.ravel()[valid], f_idx.ravel()[valid]
        names = np.asarray(self.class_names, dtype=object)
        columns = {
            "sample": s_idx,
            "sample_id": self.sample_ids[s_idx],
            self.axes[1]: t_idx,
            "feature": np.asarray(self.feature_names, dtype=object)[f_idx],
            "input": self.inputs.ravel()[valid],
            "attribution": self.attributions.ravel()[valid],
            "target": names[self.targets[s_idx]],
            "prediction": names[self.predictions[s_idx]],
            "method": self.method,
        }
        for key in self._position_extras():
            value = self.extras.get(key)
            if isinstance(value, np.ndarray) and value.shape == (n, t):
                columns[key] = value[s_idx, t_idx]
        return pd.DataFrame(columns)

    def _position_extras(self) -> tuple[str, ...]:
        """The extras the kind of input declares one value per position of (texts: ``tokens``,
        ``word_ids``)."""
        from xaicore.plugins import registry

        try:
            return tuple(getattr(registry.get_modality(self.modality or None), "position_extras", ()))
        except XaiError:
            return ()

    def plot(self, sample: int = 0, kind: str = "auto", compare: Iterable[Explanation] = ()):
        """A matplotlib figure of the sample at position ``sample``: ``"overlay"`` (the series
        coloured by its attribution), ``"heatmap"`` (feature x time), ``"auto"`` (overlay for one
        feature, series above a heatmap for several), or with ``compare`` (other explanations of
        the same samples) every method one below the other; for texts, the text coloured by its
        tokens' (``"tokens"``) or words' (``"words"``) attributions, an HTML view in Jupyter.
        Drawn by an installed renderer (xai-plots)."""
        others = list(compare)
        if not -self.n_samples <= sample < self.n_samples:
            raise XaiError(f"sample position {sample} is out of range: this explanation holds "
                           f"{self.n_samples} samples")
        from xaicore.plugins import registry

        try:
            views = tuple(registry.get_modality(self.modality or None).views)
        except XaiError:  # the kind's plugin is not installed here: the renderer decides
            views = ()
        if views and kind not in ("auto", *views):
            raise XaiError(f"kind {kind!r} is not a view of {self.axes[1]} explanations; choose "
                           f"one of auto, {', '.join(views)}")
        return figure([self, *others], sample % self.n_samples, "compare" if others else kind)

    def _repr_html_(self) -> str:
        """A compact summary for notebooks: what was explained, and where the attribution is."""
        from html import escape

        magnitude = (np.nan_to_num(self.aggregate(("sample", "feature"), "abs_mean"))
                     if self.n_samples else np.zeros(1))
        top = float(magnitude.max()) or 1.0
        points = " ".join(f"{i * 240 / max(len(magnitude) - 1, 1):.1f},"
                          f"{38 - 34 * v / top:.1f}" for i, v in enumerate(magnitude))
        labelled = np.asarray(self.labels >= 0)
        facts = [("method", self.method), ("model", self.model_name or "?"),
                 ("samples", f"{self.n_samples} x {self.attributions.shape[1]} "
                             f"{'time step' if self.axes[1] == 'time' else self.axes[1]}s x "
                             f"{self.attributions.shape[2]} features"),
                 ("classes", ", ".join(map(str, self.class_names[:10]))
                  + (" ..." if len(self.class_names) > 10 else ""))]
        if labelled.any():
            accuracy = float(np.mean(self.predictions[labelled] == self.labels[labelled]))
            facts.append(("accuracy", f"{accuracy:.3f} on {int(labelled.sum())} labelled"))
        if self.attributions.shape[2] > 1 and self.time_only:
            facts.append(("features", f"one map over {self.axes[1]} shared by every feature"))
        elif self.attributions.shape[2] > 1:
            share = self.aggregate(("sample", self.axes[1]), "abs_sum")
            order = np.argsort(-share)[:3]
            facts.append(("top features", ", ".join(
                f"{self.feature_names[f]} ({share[f] / max(share.sum(), 1e-30):.0%})"
                for f in order)))
        rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:"
                       f"left'>{escape(str(v))}</td></tr>" for k, v in facts)
        spark = (f"<svg width='250' height='42' role='img' aria-label='mean absolute attribution "
                 f"over time'><polyline fill='none' stroke='#c0392b' stroke-width='1.5' "
                 f"points='{points}'/></svg>")
        return (f"<div><b>Explanation</b><table>{rows}<tr><th style='text-align:left'>mean "
                f"|attribution| over time</th><td>{spark}</td></tr></table></div>")

    def select(self, indices) -> Explanation:
        """The explanation of a subset of samples (positions, not sample ids)."""
        idx = np.asarray(indices)
        extras = {k: v[idx] if isinstance(v, np.ndarray) else v for k, v in self.extras.items()}
        return Explanation(self.attributions[idx], self.inputs[idx], self.targets[idx],
                           self.predictions[idx], self.probabilities[idx], self.method,
                           dict(self.options), extras, self.labels[idx], self.sample_ids[idx],
                           list(self.class_names), list(self.feature_names), self.model_name,
                           self.dataset, self.lengths[idx], self.model_digest, self.modality)

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` with the core arrays, ``extra__*`` arrays and a JSON ``metadata`` entry."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays = {name: getattr(self, name) for name in _CORE_ARRAYS}
        json_extras = {}
        for key, value in self.extras.items():
            if isinstance(value, np.ndarray):
                arrays[f"extra__{key}"] = value
            else:
                json_extras[key] = _jsonable(value)
        metadata = {"format_version": FORMAT_VERSION, "method": self.method,
                    "options": _jsonable(self.options), "extras": json_extras,
                    "class_names": self.class_names, "feature_names": self.feature_names,
                    "model_name": self.model_name, "dataset": self.dataset,
                    "model_digest": self.model_digest, "modality": self.modality}
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, metadata=np.array(json.dumps(metadata)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Explanation:
        """Read a file written by ``save``; anything else gives an ``XaiError`` naming the file.

        ``xaicore.load_explanation`` also opens result stores (the folders streaming writes)."""
        path = Path(path)
        if path.is_dir():
            raise XaiError(f"{path} is a folder: a result store of streaming xai explain is opened "
                           f"lazily with xaicore.load_explanation(path)")
        if not path.is_file():
            raise XaiError(f"no explanation file at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("metadata", "attributions", "inputs", "targets",
                                       "predictions", "probabilities") if k not in data.files]
                if missing:
                    raise XaiError(f"{path} is not an xai explanation: missing {', '.join(missing)}")
                metadata = json.loads(str(data["metadata"]))
                arrays = {k: data[k] for k in data.files if k != "metadata"}
        except XaiError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError,
                zlib.error, KeyError) as exc:
            raise XaiError(f"{path} is corrupt or not an xai explanation file "
                           f"({type(exc).__name__}: {exc}); write it again with xai explain "
                           f"--method {path.stem.partition('@')[0]} --force") from None
        if not isinstance(metadata, dict) or not isinstance(metadata.get("method"), str):
            raise XaiError(f"{path} is not an xai explanation: its metadata names no method")
        if metadata.get("format_version") != FORMAT_VERSION:
            raise XaiError(f"{path} has explanation format {metadata.get('format_version')!r}; "
                           f"this xai reads format {FORMAT_VERSION}")
        extras = dict(metadata.get("extras", {}))
        extras.update({k[len("extra__"):]: v for k, v in arrays.items() if k.startswith("extra__")})
        held: dict[str, Any] = {k: arrays[k] for k in ("labels", "sample_ids", "lengths")
                                if k in arrays}  # the rest __post_init__ fills
        return cls(arrays["attributions"], arrays["inputs"], arrays["targets"],
                   arrays["predictions"], arrays["probabilities"], metadata["method"],
                   metadata.get("options", {}), extras, class_names=metadata.get("class_names", []),
                   feature_names=metadata.get("feature_names", []),
                   model_name=metadata.get("model_name", ""), dataset=metadata.get("dataset", ""),
                   model_digest=str(metadata.get("model_digest") or ""),
                   modality=str(metadata.get("modality") or ""), **held)


def nan_reduce(values: np.ndarray, axes: tuple[int, ...], total: bool) -> np.ndarray:
    """Sum (``total``) or mean over ``axes`` in float64, NaN (padding) left out."""
    values = values.astype(np.float64)
    if total:
        return np.nansum(values, axis=axes)
    count = (~np.isnan(values)).sum(axis=axes)
    return np.where(count > 0, np.nansum(values, axis=axes) / np.maximum(count, 1), np.nan)


def _vector(values: Any, n: int, name: str, dtype) -> np.ndarray:
    arr = np.asarray(values).astype(dtype)
    if arr.shape != (n,):
        raise XaiError(f"{name} must have one value per sample ({n}), got shape {arr.shape}")
    return arr


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
