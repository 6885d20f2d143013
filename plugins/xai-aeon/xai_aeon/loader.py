"""Loads the classification datasets aeon ships as ``xaicore.plugin.Dataset`` (nothing is downloaded)."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import Dataset, DataSplit, XaiError, takes_options

from .plugin import shipped_datasets


def data_dir() -> Path:
    """The folder of data files inside the installed aeon package."""
    import aeon

    return Path(aeon.__file__).parent / "datasets" / "data"


def class_order(labels: Any) -> list[str]:
    """Distinct labels sorted numerically when they all are numbers ("2" before "10"), else as text."""
    unique = sorted({str(v) for v in labels})
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _read(path: Path, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """A split's series, labels and metadata: from the cache when it holds this exact file,
    else parsed by aeon (whose import alone takes seconds) and cached."""
    cached = cache_file(path)
    if cached is not None and cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                return data["X"], data["y"], json.loads(str(data["meta"]))
        except Exception:  # noqa: BLE001 - damaged in any way: parse the file again, rewrite it
            pass
    X, y, meta = _parse(path, name)
    if cached is not None:
        keep_in_cache(cached, X, y, meta)
    return X, y, meta


def _parse(path: Path, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    from aeon.datasets import load_from_ts_file

    try:
        X, y, meta = load_from_ts_file(str(path), return_meta_data=True)
    except Exception as exc:  # aeon raises IOError/ValueError subclasses of its own
        raise XaiError(f"aeon could not read {path}: {exc}") from None
    if not meta.get("classlabel", True):
        raise XaiError(f"{name} is a regression dataset (numeric targets, no class labels); "
                       f"xai trains classifiers only")
    meta = {k: v for k, v in meta.items() if k in ("classlabel", "univariate")}
    if isinstance(X, list):  # variable length: [feature, time] per sample, padded with NaN
        return pad_series(X), np.asarray(y).astype(str), meta
    return np.asarray(X, dtype=np.float32), np.asarray(y).astype(str), meta


def cache_file(path: Path) -> Path | None:
    """Where the parsed arrays of ``path`` are cached: named by aeon's version and the file's
    path, size and modification time, so a changed file or aeon is parsed again. None when no
    cache folder can be made (``XAI_CACHE_DIR``, else ``$XDG_CACHE_HOME/xai``, else
    ``~/.cache/xai``)."""
    try:
        stat = path.stat()
        key = f"{version('aeon')}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        root = Path(os.environ.get("XAI_CACHE_DIR") or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xai")
        folder = root / "aeon"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError, PackageNotFoundError):
        return None
    return folder / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def keep_in_cache(cached: Path, X: np.ndarray, y: np.ndarray, meta: dict) -> None:
    """Write the arrays (no pickles) next to their final name, then move them there at once."""
    part = cached.with_name(f".{cached.name}.{os.getpid()}.part")
    try:
        with open(part, "wb") as handle:
            np.savez(handle, X=X, y=y, meta=np.array(json.dumps(meta)))
        os.replace(part, cached)
    except OSError:
        part.unlink(missing_ok=True)


def pad_series(series: list) -> np.ndarray:
    """Series of different lengths, each ``[feature, time]``, as one ``[sample, feature, time]``
    array padded with NaN after each series (``xaicore``'s padding)."""
    steps = max(np.asarray(x).shape[-1] for x in series)
    out = np.full((len(series), np.asarray(series[0]).shape[0], steps), np.nan, dtype=np.float32)
    for i, x in enumerate(series):
        out[i, :, :np.asarray(x).shape[-1]] = x
    return out


@takes_options("aeon dataset")  # none: the shipped splits as they are
def load(name: str) -> Dataset:
    """The shipped train and test splits of ``name``, laid out ``[sample, time, feature]``."""
    shipped = shipped_datasets()
    if name not in shipped:
        raise XaiError(f"{name!r} is not shipped with aeon (nothing is downloaded); shipped: "
                       f"{', '.join(shipped)}")
    folder = data_dir() / name
    X_train, y_train, meta = _read(folder / f"{name}_TRAIN.ts", name)
    X_test, y_test, _ = _read(folder / f"{name}_TEST.ts", name)
    class_names = class_order(y_train)
    unseen = sorted(set(y_test) - set(class_names))
    if unseen:
        raise XaiError(f"{name}: test labels {unseen} do not occur in the train split")
    index = {c: i for i, c in enumerate(class_names)}
    # variable-length splits are padded to one length by Dataset (to the longer split's)
    to_split = lambda X, y: DataSplit(X.transpose(0, 2, 1), np.array([index[v] for v in y]))  # noqa: E731
    n_features = X_train.shape[1]
    return Dataset(name, to_split(X_train, y_train), to_split(X_test, y_test), class_names,
                   feature_names=["value"] if n_features == 1 else [f"dim_{i}" for i in range(n_features)],
                   info={"source": "aeon", "shipped_split": True,
                         "univariate": bool(meta.get("univariate", n_features == 1))})
