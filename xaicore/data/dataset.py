"""Datasets as arrays laid out ``[sample, time, feature]`` with class and feature names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xaicore.errors import XaiError


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
    """Refuse NaN or infinite values, naming the first bad sample (counted from
    ``first_sample``), time step and feature."""
    bad = ~np.isfinite(X)
    if bad.any():
        s, t, f = (int(i) for i in np.argwhere(bad)[0])
        raise XaiError(f"{what} has {int(bad.sum())} NaN or infinite values (first at sample "
                       f"{first_sample + s}, time step {t}, feature {f}){note}")
