"""Structural similarity (SSIM) of 1-D and 2-D attribution maps, in numpy.

SSIM after Wang, Bovik, Sheikh and Simoncelli (2004), "Image quality assessment: from error
visibility to structural similarity", IEEE Transactions on Image Processing 13(4), 600-612, eq. 13:

    SSIM(x, y) = (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2))

with C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03 and L the data range (1 for maps
normalised to [0, 1]). The means, variances and covariance are local: over a uniform window of 7
cells along each axis (scikit-image's default, which Adebayo et al. 2018 used; clipped to an axis
shorter than 7), with population (1/N) moments, at every position where the window fits; the
map's SSIM is the mean over those positions. A time series map ``[time, feature]`` is a 2-D map
(``[time]`` a 1-D one); an image map ``[H*W pixels, channel]`` is one ``[H, W]`` map per channel.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from xaicore.plugin import XaiError

K1, K2 = 0.01, 0.03
WINDOW = 7


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, window: int = WINDOW) -> float:
    """The mean SSIM of two maps of one shape, ``[n]`` or ``[n, m]``."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim not in (1, 2) or not x.size:
        raise XaiError(f"ssim compares two 1-D or 2-D maps of one shape; got {x.shape} and {y.shape}")
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    size = tuple(min(window, n) for n in x.shape)
    wx, wy = sliding_window_view(x, size), sliding_window_view(y, size)
    axes = (-2, -1)
    mx, my = wx.mean(axes), wy.mean(axes)
    vx, vy = wx.var(axes), wy.var(axes)
    cov = ((wx - mx[..., None, None]) * (wy - my[..., None, None])).mean(axes)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    local = (2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(local.mean())


def normalised(attributions: np.ndarray) -> np.ndarray:
    """``|attributions|`` divided by its largest value, in [0, 1] (a map of zeros stays zeros)."""
    magnitude = np.abs(np.asarray(attributions, dtype=np.float64))
    top = magnitude.max() if magnitude.size else 0.0
    return magnitude / top if top > 0 else magnitude


def ssim_rows(a: np.ndarray, b: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Per sample of ``[sample, position, channel]`` maps: the SSIM of the normalised absolute maps
    over the positions valid in both (padding is NaN); NaN for a sample with NaN inside them.
    With ``grid = (H, W)`` (images: the positions are H*W pixels, row-major) the SSIM of each
    channel's ``[H, W]`` map, averaged over the channels."""
    out = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(np.asarray(a), np.asarray(b))):
        valid = ~(np.isnan(x).all(1) | np.isnan(y).all(1))
        x, y = x[valid], y[valid]
        if not (len(x) and np.isfinite(x).all() and np.isfinite(y).all()):
            continue
        x, y = normalised(x), normalised(y)
        if grid is None:
            out[i] = ssim(x, y)
        else:
            out[i] = np.mean([ssim(x[:, c].reshape(grid), y[:, c].reshape(grid))
                              for c in range(x.shape[1])])
    return out
