"""What metrics replace removed cells of a series with: the train mean, or the series smoothed."""

from __future__ import annotations

from typing import Any

import numpy as np

from xaicore.plugin import LoadedModel, XaiError, series_lengths

SUBSTRATES = ("mean", "smooth")


def background_array(background: Any, n_features: int, what: str) -> np.ndarray:
    """Train inputs ``[n, time, feature]`` as float32, checked against the model's features."""
    X = np.asarray(background, dtype=np.float32)
    if X.ndim == 2 and n_features == 1:
        X = X[:, :, None]
    if X.ndim != 3 or X.shape[2] != n_features or X.shape[0] == 0:
        raise XaiError(f"{what}: background must be train inputs [n, time, {n_features}], got "
                       f"shape {X.shape}")
    return X


def substrate_for(model: LoadedModel, inputs: np.ndarray, kind: str, background: Any = None,
                  sigma: float | None = None) -> np.ndarray:
    """What removed cells become: the per-feature train mean, or the input smoothed along time."""
    if kind == "mean":
        if background is not None:
            mean = np.nanmean(background_array(background, inputs.shape[2], "substrate 'mean'"),
                              axis=(0, 1))
        elif model.normalisation is not None:
            mean = model.normalisation.mean.detach().cpu().numpy().reshape(-1)
        else:
            raise XaiError("substrate 'mean' needs background= (the train inputs) for a model "
                           "without stored train normalisation; or use substrate='smooth'")
        return np.where(np.isnan(inputs), np.nan, mean.astype(np.float32)).astype(np.float32)
    if kind == "smooth":
        from scipy.ndimage import gaussian_filter1d

        sigma = float(sigma) if sigma is not None else max(1.0, inputs.shape[1] / 20)
        if sigma <= 0:
            raise XaiError(f"sigma must be positive, got {sigma}")
        out = np.full_like(inputs, np.nan, dtype=np.float32)
        lengths = series_lengths(inputs)
        for length in np.unique(lengths):  # each series smoothed within its own length
            rows = lengths == length
            out[rows, :length] = gaussian_filter1d(inputs[rows, :length], sigma, axis=1,
                                                   mode="nearest")
        return out
    raise XaiError(f"substrate must be one of {', '.join(SUBSTRATES)}, not {kind!r}")
