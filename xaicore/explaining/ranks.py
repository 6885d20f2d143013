"""Rank agreement between attribution maps."""

from __future__ import annotations

import numpy as np


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of every row of ``a`` with the same row of ``b``, over the cells that are
    not NaN (padding) in either; average ranks for ties; NaN for a row that is constant on a side."""
    import pandas as pd

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    missing = np.isnan(a) | np.isnan(b)
    ra = pd.DataFrame(np.where(missing, np.nan, a)).rank(axis=1).to_numpy(copy=True)
    rb = pd.DataFrame(np.where(missing, np.nan, b)).rank(axis=1).to_numpy(copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ra -= np.nanmean(ra, axis=1, keepdims=True)
        rb -= np.nanmean(rb, axis=1, keepdims=True)
        denom = np.sqrt(np.nansum(ra ** 2, axis=1) * np.nansum(rb ** 2, axis=1))
        return np.where(denom > 0, np.nansum(ra * rb, axis=1) / denom, np.nan)


def top_k_overlap(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Per row, the share of ``a``'s ``k`` largest cells that are among ``b``'s ``k`` largest, where
    ``k`` is ``fraction`` of the cells not NaN in either (at least 1); ties are broken by position
    (the earlier cell first); NaN for a row with no such cell."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    out = np.full(len(a), np.nan)
    for row, (x, y) in enumerate(zip(a, b)):
        valid = ~(np.isnan(x) | np.isnan(y))
        m = int(valid.sum())
        if m == 0:
            continue
        k = max(1, int(round(fraction * m)))
        top_x = np.argsort(-x[valid], kind="stable")[:k]
        top_y = np.argsort(-y[valid], kind="stable")[:k]
        out[row] = len(np.intersect1d(top_x, top_y)) / k
    return out
