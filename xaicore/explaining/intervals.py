"""Percentile bootstrap intervals of a mean over samples, from one seeded set of resamples."""

from __future__ import annotations

import warnings

import numpy as np


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]`` resampling indices (with replacement), the same for every method and metric."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def mean_interval(values: np.ndarray, indices: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the finite ``values`` and its percentile bootstrap interval (a resample drawing only
    undefined values, e.g. the correlation of a constant map, is left out)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return float("nan"), float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": that resample
        means = np.nanmean(values[indices], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(means, [tail, 100 - tail])
    mean = float(np.nanmean(values))
    # a percentile interval can miss the point estimate by rounding when every resample agrees
    return mean, float(min(low, mean)), float(max(high, mean))
