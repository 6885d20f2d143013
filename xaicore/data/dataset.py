"""Datasets as arrays laid out ``[sample, time, feature]`` with class and feature names.

Variable-length series are padded to one length with NaN: the trailing time steps where every
feature is NaN are padding, and a sample's length is the number of steps before them. NaN inside
that length (or an infinite value anywhere) is an error naming the sample.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xaicore.errors import XaiError

#: what numpy raises on a file that is not the archive it claims to be (empty, truncated, junk)
UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


@dataclass
class DataSplit:
    """One split: ``X [sample, time, feature]`` float32 and ``y [sample]`` class indices."""

    X: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if np.iscomplexobj(self.X):
            raise XaiError("data must hold real numbers; complex values are refused")
        self.X = np.asarray(self.X, dtype=np.float32)
        if self.X.ndim == 2:
            self.X = self.X[:, :, None]
        if self.X.ndim != 3:
            raise XaiError(f"data must be [sample, time, feature], got shape {self.X.shape}")
        self.y = np.asarray(self.y, dtype=np.int64)
        if self.y.shape != (self.X.shape[0],):
            raise XaiError(f"{self.X.shape[0]} samples but {self.y.shape} labels")

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """The number of valid (unpadded) time steps of every sample."""
        return series_lengths(self.X)


@dataclass
class Dataset:
    """A named dataset with its train and test splits and the names that make results readable."""

    name: str
    train: DataSplit
    test: DataSplit
    class_names: list[str]
    feature_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_features = self.train.X.shape[2]
        if not self.feature_names:
            self.feature_names = ["value"] if n_features == 1 else [f"dim_{i}" for i in range(n_features)]
        if len(self.feature_names) != n_features:
            raise XaiError(f"{len(self.feature_names)} feature names for {n_features} features")
        if self.test.X.shape[1] != self.train.X.shape[1] and self.variable_length:
            steps = max(self.test.X.shape[1], self.train.X.shape[1])
            self.train.X, self.test.X = pad_to(self.train.X, steps), pad_to(self.test.X, steps)
        if self.test.X.shape[1:] != self.train.X.shape[1:]:
            raise XaiError(f"train samples are {self.train.X.shape[1:]} (time, feature) but test "
                           f"samples are {self.test.X.shape[1:]}")
        for split_name, split in (("train", self.train), ("test", self.test)):
            check_finite(split.X, f"{self.name} {split_name} split")
            if len(split) and (split.y.min() < 0 or split.y.max() >= len(self.class_names)):
                raise XaiError(f"{self.name} {split_name} split has labels outside the "
                               f"{len(self.class_names)} known classes")
        if len(np.unique(self.train.y)) < 2:
            raise XaiError(f"{self.name}: the train split has a single class "
                           f"({self.class_names[int(self.train.y[0])]!r}); a classifier needs two")

    @property
    def variable_length(self) -> bool:
        """Whether any sample is padded (its series is shorter than the padded length)."""
        return bool(np.isnan(self.train.X[:, -1]).all(-1).any()
                    or np.isnan(self.test.X[:, -1]).all(-1).any())

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        return self.train.X.shape[2]

    @property
    def seq_len(self) -> int:
        return self.train.X.shape[1]


def as_series(values: Any, what: str, n_features: int) -> np.ndarray:
    """``values`` as a non-empty, finite float32 ``[sample, time, feature]`` array (``[sample,
    time]`` is accepted when ``n_features`` is 1), or an XaiError naming ``what``."""
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    if np.iscomplexobj(values):
        raise XaiError(f"{what} must hold real numbers; complex values are refused (explain the "
                       f"real and imaginary parts as two features instead)")
    try:
        X = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise XaiError(f"{what} must be a numeric [sample, time, feature] array: {exc}") from None
    if X.ndim == 2 and n_features == 1:
        X = X[:, :, None]
    if X.ndim != 3:
        raise XaiError(f"{what} must be [sample, time, feature] with {n_features} feature(s); got "
                       f"shape {X.shape}")
    if X.shape[0] == 0:
        raise XaiError(f"{what} holds no samples")
    check_finite(X, what)
    return X


def check_finite(X: np.ndarray, what: str, first_sample: int = 0, note: str = "") -> None:
    """Refuse NaN inside a series (trailing all-NaN steps are padding) and infinite values,
    naming the first bad sample (counted from ``first_sample``), time step and feature."""
    bad = ~np.isfinite(X) & ~padding_mask(X)[:, :, None]
    if bad.any():
        s, t, f = (int(i) for i in np.argwhere(bad)[0])
        raise XaiError(f"{what} has {int(bad.sum())} NaN or infinite values (first at sample "
                       f"{first_sample + s}, time step {t}, feature {f}; only trailing steps "
                       f"NaN in every feature are padding){note}")
    empty = np.flatnonzero(series_lengths(X) == 0)
    if len(empty):
        raise XaiError(f"{what}: sample {first_sample + int(empty[0])} is NaN at every time "
                       f"step (no valid values){note}")


def padding_mask(X: np.ndarray) -> np.ndarray:
    """``[sample, time]``: True at the trailing steps where every feature is NaN (the padding)."""
    nan_step = np.isnan(X).all(axis=2)
    return np.flip(np.logical_and.accumulate(np.flip(nan_step, 1), axis=1), 1)


def series_lengths(X: np.ndarray) -> np.ndarray:
    """The valid length of every sample of ``X [sample, time, feature]`` (padding excluded)."""
    return X.shape[1] - padding_mask(X).sum(1)


def pad_to(X: np.ndarray, steps: int) -> np.ndarray:
    """``X`` padded with NaN time steps up to ``steps``."""
    extra = steps - X.shape[1]
    return X if extra <= 0 else np.concatenate(
        [X, np.full((X.shape[0], extra, X.shape[2]), np.nan, X.dtype)], axis=1)


def with_lengths(X: np.ndarray, lengths: Any, what: str) -> np.ndarray:
    """``X`` with the steps at and after each sample's length set to NaN (padding)."""
    lengths = np.asarray(lengths)
    if lengths.shape != (len(X),) or not np.issubdtype(lengths.dtype, np.integer):
        raise XaiError(f"{what}: lengths must hold one integer per sample ({len(X)}), got "
                       f"{lengths.dtype} of shape {lengths.shape}")
    bad = np.flatnonzero((lengths < 1) | (lengths > X.shape[1]))
    if len(bad):
        raise XaiError(f"{what}: sample {int(bad[0])} has length {int(lengths[bad[0]])}, outside "
                       f"1..{X.shape[1]} (the padded length)")
    X = np.array(X, dtype=np.float32)
    X[np.arange(X.shape[1])[None, :] >= lengths[:, None]] = np.nan
    return X
