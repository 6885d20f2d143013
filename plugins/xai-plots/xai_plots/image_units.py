"""What an image explanation shows: each sample as an ``H x W`` image and its attribution as an
``H x W`` map, the bound of a map's colour scale (its colours are ``colours.py``'s), overlays,
8-bit images and PNG bytes. Pure numpy functions of an ``Explanation`` of the image input kind
(``[sample, H*W pixels, channel]``, row-major, ``extras["image_size"] = [H, W]``)."""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import numpy as np

from xaicore.plugin import Explanation, XaiError

from .colours import POSITIVE_LEVELS, SIGNED_LEVELS, Scale, colour_table

#: The share of a map's pixels, those of the largest |attribution|, that saturate its colour scale
#: (captum's ``visualize_image_attr`` default): a few extreme pixels would leave the rest pale.
SATURATED = 0.02


def is_image(explanation: Any) -> bool:
    """Whether ``explanation`` (or a result store) explains images (pixels of two spatial axes)."""
    return explanation.modality == "images"


def image_size(e: Explanation) -> tuple[int, int]:
    """``(H, W)`` of the explanation's images: ``extras["image_size"]``, or the side of a square
    when an older file does not record it; an XaiError when neither fits its pixels."""
    pixels = e.attributions.shape[1]
    given = e.extras.get("image_size")
    if given is not None:
        height, width = (int(v) for v in np.asarray(given).ravel()[:2])
    else:
        height = width = math.isqrt(pixels)
    if height * width != pixels:
        raise XaiError(f"the explanation of {e.method!r} holds {pixels} pixels per image, which "
                       f"are not {height}x{width}; explain again with xai explain --force to "
                       f"record its images' size")
    return height, width


def image_of(e: Explanation, i: int) -> np.ndarray:
    """Sample position ``i``'s image ``[H, W, channel]`` as it was explained (before the model's
    standardisation)."""
    height, width = image_size(e)
    return e.inputs[i].reshape(height, width, -1)


def heatmap_of(e: Explanation, i: int) -> np.ndarray:
    """Sample position ``i``'s attribution per pixel ``[H, W]``: the sum over its channels (a map
    broadcast over the channels, like Grad-CAM's, is shown once)."""
    height, width = image_size(e)
    values = np.asarray(e.attributions[i], dtype=np.float64).reshape(height, width, -1)
    if values.shape[2] > 1 and (values == values[..., :1]).all():
        return values[..., 0]
    return values.sum(axis=2)


def scale_of(values: np.ndarray, is_signed: bool) -> Scale:
    """The scale of one map: the |value| that ``SATURATED`` of its pixels exceed (its largest
    |value| when that is 0; 1e-30 for an all-zero map)."""
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size:
        return Scale(is_signed, 1e-30)
    bound = float(np.quantile(finite, 1 - SATURATED))
    return Scale(is_signed, max(bound if bound > 0 else float(finite.max()), 1e-30))


def weight(levels: np.ndarray, is_signed: bool) -> np.ndarray:
    """How strongly each level is drawn over the image, in [0, 1]: |value| over the bound."""
    q = np.asarray(levels, dtype=np.float64)
    if is_signed:
        return np.abs(q - SIGNED_LEVELS) / SIGNED_LEVELS
    return q / POSITIVE_LEVELS


def display_range(images: list[np.ndarray]) -> tuple[float, float]:
    """One grey-level range for every image shown together (their smallest and largest pixel)."""
    finite = [im[np.isfinite(im)] for im in images]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(1)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return low, high if high > low else low + 1.0


def image_levels(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``image [H, W, C]`` as uint8 over ``[low, high]``: RGB for 3 channels, else grey (the mean
    of the channels)."""
    shown = image if image.shape[2] == 3 else image.mean(axis=2, keepdims=True)
    scaled = (np.nan_to_num(np.asarray(shown, dtype=np.float64), nan=low) - low) / (high - low)
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def grey_of(levels: np.ndarray) -> np.ndarray:
    """The grey level ``[H, W]`` (float) of uint8 image levels, as the overlays draw them
    (ITU-R BT.601 luma of RGB)."""
    q = np.asarray(levels, dtype=np.float64)
    if q.shape[2] == 3:
        return q @ np.array([0.299, 0.587, 0.114])
    return q[..., 0]


def overlay_levels(grey: np.ndarray, levels: np.ndarray, is_signed: bool,
                   opacity: float) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: the grey image with each pixel's colour over it at ``opacity``
    times its weight (so that a pixel of no attribution shows the image alone)."""
    table = colour_table(is_signed).astype(np.float64)
    w = opacity * weight(levels, is_signed)[..., None]
    out = grey[..., None] * (1 - w) + table[levels] * w
    return np.rint(out).astype(np.uint8)


def pooled(values: np.ndarray, factor: int) -> np.ndarray:
    """``values [H, W]`` (or ``[H, W, C]``) averaged over ``factor x factor`` blocks (the last
    ones partial)."""
    if factor <= 1:
        return values
    height, width = values.shape[:2]
    rows, cols = -(-height // factor), -(-width // factor)
    padded = np.full((rows * factor, cols * factor, *values.shape[2:]), np.nan)
    padded[:height, :width] = values
    blocks = padded.reshape(rows, factor, cols, factor, *values.shape[2:])
    return np.nanmean(blocks, axis=(1, 3))


def png_bytes(levels: np.ndarray) -> bytes:
    """uint8 ``[H, W]`` (grey), ``[H, W, 1]`` or ``[H, W, 3]`` (RGB) as a PNG file's bytes (no
    colour profile: browsers and readers take the levels as they are), each row stored as its
    difference from the row above (PNG's "Up" filter), which smooth images compress well."""
    q = np.ascontiguousarray(np.asarray(levels, dtype=np.uint8))
    if q.ndim == 3 and q.shape[2] == 1:
        q = q[..., 0]
    height, width = q.shape[:2]
    colour = 2 if q.ndim == 3 else 0
    flat = q.reshape(height, -1)
    up = np.diff(flat, axis=0, prepend=np.zeros((1, flat.shape[1]), np.uint8))  # filter "Up", mod 256
    rows = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b""))
