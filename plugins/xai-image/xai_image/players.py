"""The players of images for perturbation games: SLIC superpixels (scikit-image) or a grid of
square patches, as a player id per pixel."""

from __future__ import annotations

import warnings

import numpy as np

from xaicore.plugin import XaiError

#: each unit with the options its players take, the default first
UNITS = {"superpixels": ("n_segments", "compactness"), "patches": ("patch",)}
SUPERPIXELS = 16  # SLIC's target count when none is given
GREY_COMPACTNESS, LAB_COMPACTNESS = 0.1, 10.0  # for intensities scaled to [0, 1]; for CIELAB


def image_players(images: np.ndarray, unit: str | None, *, n_segments: int | None = None,
                  compactness: float | None = None, patch: int | None = None) -> tuple[str, np.ndarray]:
    """The unit used and the player of every pixel ``[sample, H*W]`` of ``images [sample, H, W,
    channel]`` (ids from 0, all of a pixel's channels one player). ``unit`` None: superpixels, or
    patches with a warning when scikit-image is not installed."""
    if unit is None:
        try:
            import skimage.segmentation  # noqa: F401 - only whether it imports
        except ImportError:
            warnings.warn("scikit-image is not installed, so the players of images are grid patches "
                          "instead of superpixels (pip install 'xai-image[superpixels]')",
                          UserWarning, stacklevel=4)
            unit = "patches"
        else:
            unit = "superpixels"
    if unit == "patches":
        return unit, patches(images.shape[1], images.shape[2], patch, len(images))
    return unit, superpixels(images, SUPERPIXELS if n_segments is None else n_segments, compactness)


def patches(height: int, width: int, patch: int | None, n: int) -> np.ndarray:
    """Row-major ids of ``patch x patch`` squares (default a quarter of the shorter side; the last
    row and column of squares cut at the edges), the same for each of the ``n`` images."""
    side = max(1, min(height, width) // 4) if patch is None else patch
    if side > max(height, width):
        raise XaiError(f"patch {side} is larger than the {height}x{width} images")
    columns = -(-width // side)
    grid = (np.arange(height)[:, None] // side) * columns + np.arange(width)[None, :] // side
    return np.broadcast_to(grid.reshape(1, -1), (n, height * width)).astype(np.int64)


def superpixels(images: np.ndarray, n_segments: int, compactness: float | None) -> np.ndarray:
    """SLIC superpixels of each image (deterministic: a regular grid of seeds), its pixels scaled
    to [0, 1] first; three channels are segmented in CIELAB. Ids renumbered from 0 in the order
    superpixels first appear."""
    try:
        from skimage.segmentation import slic
    except ImportError:
        raise XaiError("players=superpixels needs scikit-image (pip install 'xai-image[superpixels]'); "
                       "players=patches needs nothing") from None
    colour = images.shape[3] == 3
    if compactness is None:
        compactness = LAB_COMPACTNESS if colour else GREY_COMPACTNESS
    out = np.empty(images.shape[:3], dtype=np.int64)
    for i, image in enumerate(images.astype(np.float64)):
        low, span = image.min(), np.ptp(image)
        scaled = (image - low) / span if span > 0 else np.zeros_like(image)
        labels = slic(scaled if images.shape[3] > 1 else scaled[..., 0], n_segments=n_segments,
                      compactness=compactness, channel_axis=-1 if images.shape[3] > 1 else None,
                      convert2lab=colour, start_label=0)
        _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
        out[i] = np.argsort(np.argsort(first))[inverse].reshape(labels.shape)
    return out.reshape(len(images), -1)
