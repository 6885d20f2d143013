"""ROAD's linear imputation of removed pixels (Rong et al. 2022, their ``NoisyLinearImputer``
without its noise): every removed pixel is the weighted mean of its eight neighbours inside the
image (direct neighbours weight 1/6, diagonal ones 1/12, renormalised at the border), the kept
pixels fixed; one sparse linear system over the removed pixels of every image plane, solved
exactly by scipy."""

from __future__ import annotations

import numpy as np

#: (row offset, column offset, weight) of the eight neighbours of a pixel
NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6), (0, 1, 1 / 6),
              (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


#: image planes whose systems are factorised together (block-diagonal: the memory of one solve)
PLANES_PER_SOLVE = 64


def impute_planes(planes: np.ndarray, removed: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``planes [n, H, W]`` with the ``removed [n, H, W]`` pixels replaced by the solution of
    ``sum_j w_j (x_i - x_j) = 0`` over each removed pixel ``i``'s neighbours ``j`` inside the
    plane; a plane with every pixel removed has no boundary value and takes ``fallback [n]``.
    Kept pixels are returned unchanged (float64)."""
    out = np.array(planes, dtype=np.float64)
    removed = np.asarray(removed, bool)
    whole = removed.reshape(len(out), -1).all(1)
    out[whole] = np.asarray(fallback, np.float64)[whole, None, None]
    solve = removed & ~whole[:, None, None]
    for start in range(0, len(out), PLANES_PER_SOLVE):
        part = slice(start, start + PLANES_PER_SOLVE)
        if solve[part].any():
            solve_planes(out[part], solve[part])
    return out


def solve_planes(planes: np.ndarray, removed: np.ndarray) -> None:
    """Fill the ``removed`` pixels of ``planes`` (float64, in place; every plane keeps a pixel)
    with the solution of their system: symmetric and diagonally dominant, so factorised in the
    natural order without pivoting, which keeps the fill within each plane's band of a row."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    _, height, width = planes.shape
    plane, row, col = np.nonzero(removed)
    unknown = np.full(removed.shape, -1, dtype=np.int64)
    unknown[plane, row, col] = np.arange(len(plane))
    diagonal = np.zeros(len(plane))
    rhs = np.zeros(len(plane))
    rows, cols, weights = [], [], []
    for dy, dx, weight in NEIGHBOURS:
        r, c = row + dy, col + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        i, p, r, c = np.flatnonzero(inside), plane[inside], r[inside], c[inside]
        diagonal[i] += weight
        j = unknown[p, r, c]
        free = j >= 0
        rows.append(i[free])
        cols.append(j[free])
        weights.append(np.full(int(free.sum()), -weight))
        np.add.at(rhs, i[~free], weight * planes[p[~free], r[~free], c[~free]])
    index = np.arange(len(plane))
    A = coo_matrix((np.concatenate([diagonal, *weights]),
                    (np.concatenate([index, *rows]), np.concatenate([index, *cols]))),
                   shape=(len(plane), len(plane))).tocsc()
    factor = splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    planes[plane, row, col] = factor.solve(rhs)


def impute_pixels(pixels: np.ndarray, removed: np.ndarray, height: int, width: int,
                  fallback: np.ndarray) -> np.ndarray:
    """Flattened images ``[n, H*W, channel]`` with their ``removed`` cells imputed channel by
    channel (``impute_planes``; ``fallback [channel]`` for a channel with no pixel kept), float32."""
    n, _, channels = pixels.shape
    planes = np.moveaxis(pixels.reshape(n, height, width, channels), 3, 1).reshape(-1, height, width)
    gone = np.moveaxis(removed.reshape(n, height, width, channels), 3, 1).reshape(-1, height, width)
    filled = impute_planes(planes, gone, np.tile(np.asarray(fallback).reshape(-1), n))
    filled = np.moveaxis(filled.reshape(n, channels, height, width), 1, 3)
    out = filled.reshape(n, height * width, channels).astype(np.float32)
    return np.where(removed, out, pixels)
