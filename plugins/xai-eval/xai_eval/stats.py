"""Uncertainty of the scores and the verdict against the random baseline.

Every per-sample score gets a percentile bootstrap interval of its mean over samples. A method is
compared with the random baseline on the same samples: the per-sample difference (oriented so that
positive means "better than random", using the metric's direction) is resampled with the same
bootstrap indices, and the verdict follows from its interval: above zero, below zero, or straddling
it. The indices come from one seeded generator, so the same run and seed give the same numbers.
"""

from __future__ import annotations

import warnings

import numpy as np

BETTER, SAME, WORSE, BASELINE = ("better than random", "not distinguishable", "worse than random",
                                 "baseline")
VERDICT_ORDER = {BETTER: 0, SAME: 1, WORSE: 2, BASELINE: 3}


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


def paired_verdict(method: np.ndarray, baseline: np.ndarray, higher_is_better: bool,
                   indices: np.ndarray, level: float = 0.95) -> dict:
    """Paired comparison with the baseline on the same samples.

    ``gain`` is the mean per-sample improvement over random (positive = better, in the metric's
    direction) with its bootstrap interval; ``p`` is the two-sided Wilcoxon signed-rank p-value.
    """
    diff = np.asarray(method, np.float64) - np.asarray(baseline, np.float64)
    if not higher_is_better:
        diff = -diff
    gain, low, high = mean_interval(diff, indices, level)
    p = float("nan")
    finite = diff[np.isfinite(diff)]
    if finite.size and np.any(finite != 0):
        from scipy.stats import wilcoxon

        p = float(wilcoxon(finite, zero_method="zsplit").pvalue)
    verdict = SAME if not np.isfinite(gain) else BETTER if low > 0 else WORSE if high < 0 else SAME
    return {"gain": gain, "gain_low": low, "gain_high": high, "p": p, "verdict": verdict}


def overall_verdict(verdicts: list[str]) -> str:
    """One verdict from the per-metric ones: better (or worse) on some metric and worse (or better)
    on none; anything else, conflicting or indistinct, is "not distinguishable"."""
    if BETTER in verdicts and WORSE not in verdicts:
        return BETTER
    if WORSE in verdicts and BETTER not in verdicts:
        return WORSE
    return SAME
