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
