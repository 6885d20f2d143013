"""Images in array files: an ``.npz`` with ``X`` ``[n, C, H, W]`` (``[n, H, W, C]`` with the layout
``NHWC``; ``[n, H, W]`` for one channel), ``y`` (class names, or indices into ``class_names``),
optionally ``X_test``/``y_test``, ``class_names`` and ``channel_names``; an ``.npy`` holds ``X``
alone (a run's unlabelled inputs). 8- and 16-bit unsigned pixels are divided by 255 and 65535,
as image files' are; other numbers are taken as they are.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import XaiError, label_texts, npz_arrays

from .reading import SMALLEST

SCALES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def pixel_scale(dtype: np.dtype, where: str) -> np.float32:
    """What stored values of ``dtype`` are divided by to give pixels in [0, 1] (1: as they are)."""
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise XaiError(f"{where} must hold real numbers, not {dtype}")
    return np.float32(SCALES.get(np.dtype(dtype), 1))


def as_pixels(X: Any, layout: str, where: str) -> np.ndarray:
    """Images of ``layout`` (or ``[n, H, W]``) as float32 ``[n, H, W, C]``, scaled by dtype."""
    X = np.asarray(X)
    scale = pixel_scale(X.dtype, where)
    if X.ndim == 3:
        X = X[..., None]
    elif X.ndim != 4:
        raise XaiError(f"{where} must be images [n, channel, height, width] ([n, height, width, "
                       f"channel] with --data layout=NHWC, [n, height, width] for one channel); "
                       f"got shape {X.shape}")
    elif layout == "NCHW":
        if X.shape[1] > 4 and X.shape[3] <= 4:
            raise XaiError(f"{where} has shape {X.shape}: {X.shape[1]} channels of "
                           f"{X.shape[2]}x{X.shape[3]} pixels read channels first; if its "
                           f"channels are last, give --data layout=NHWC")
        X = X.transpose(0, 2, 3, 1)
    if len(X) == 0:
        raise XaiError(f"{where} holds no images")
    if min(X.shape[1:3]) < SMALLEST:
        raise XaiError(f"{where} holds {X.shape[1]}x{X.shape[2]}-pixel images; images need at "
                       f"least {SMALLEST}x{SMALLEST} pixels")
    pixels = np.ascontiguousarray(X, dtype=np.float32)
    if scale != 1:
        pixels /= scale
    if not np.isfinite(pixels).all():
        i = int(np.argmin(np.isfinite(pixels).all(axis=(1, 2, 3))))
        raise XaiError(f"{where}: image {i} has a NaN or infinite pixel")
    return pixels


def read_npz(path: Path, layout: str) -> dict[str, Any]:
    """The arrays of an image ``.npz`` checked: ``X`` (pixels ``[n, H, W, C]``), ``labels`` (as
    text), optionally ``X_test``/``labels_test``, ``class_names`` and ``channel_names``."""
    arrays = npz_arrays(path, "images X and their labels y")
    names = {key: [str(v) for v in np.asarray(arrays[key]).ravel()]
             for key in ("class_names", "channel_names") if key in arrays}
    out: dict[str, Any] = dict(names)
    for x_key, y_key, suffix in (("X", "y", ""), ("X_test", "y_test", "_test")):
        if x_key in arrays:
            X = as_pixels(arrays[x_key], layout, f"{path}: {x_key}")
            out[f"X{suffix}"] = X
            out[f"labels{suffix}"] = labels_of(arrays[y_key], len(X), names.get("class_names"),
                                               f"{path}: {y_key}")
    if "X_test" in out and out["X_test"].shape[1:] != out["X"].shape[1:]:
        raise XaiError(f"{path}: X_test holds images of {out['X_test'].shape[1:]} (height, width, "
                       f"channel) but X of {out['X'].shape[1:]}")
    return out


def labels_of(y: Any, n: int, class_names: list[str] | None, where: str) -> np.ndarray:
    """Labels as text; integer labels index ``class_names`` when the file gives them."""
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise XaiError(f"{where}: {len(y)} labels for {n} images")
    if class_names and np.issubdtype(y.dtype, np.integer):
        bad = y[(y < 0) | (y >= len(class_names))]
        if len(bad):
            raise XaiError(f"{where} holds class index {int(bad[0])} but class_names has "
                           f"{len(class_names)} names")
        return np.array([class_names[i] for i in y])
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise XaiError(f"{where} holds NaN labels")
    return label_texts(y)


def stored_dtype(path: Path, kind: str, name: str) -> np.dtype:
    """The dtype an input file stores its images in, read from its header (nothing loaded)."""
    if kind == "npy":
        return np.load(path, mmap_mode="r", allow_pickle=False).dtype
    if kind == "zarr":
        import zarr

        node: Any = zarr.open(str(path), mode="r")
        return (node[name] if name else node).dtype
    fmt = np.lib.format
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as handle:
        version = fmt.read_magic(handle)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        return read(handle)[2]
