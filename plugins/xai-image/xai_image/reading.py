"""How image files become pixels: the rule a run records (size, resampling filter, colour mode,
array layout) and the decoding of one file with Pillow (imported when a file is read).

Pixels are float32 in [0, 1]: 8-bit values divided by 255, 16-bit greyscale by 65535, as
torchvision's ``ToTensor`` does. A file is converted to the rule's mode first, then resized to
its size, as torchvision's ``ImageFolder`` loader and ``Resize`` do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import XaiError

#: the image files a folder is read for (torchvision's ``IMG_EXTENSIONS`` and GIF), any case
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
RESAMPLING = ("bilinear", "nearest", "bicubic", "lanczos")
MODES = ("L", "RGB")
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_NAMES = {"L": ["grey"], "RGB": ["red", "green", "blue"]}
DEEP = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # one channel of more than 8 bits
GREY = ("1", "L", "LA", "La", *DEEP)
SMALLEST, LARGEST = 2, 16384  # pixels per side


@dataclass(frozen=True)
class Reading:
    """The rule images are read by. ``size`` ``(height, width)``: every image is resized to it
    with the ``resample`` filter (None: the images must already share one size); ``mode`` (``L``
    or ``RGB``): every image is converted to it (None: the images must share one colour, all
    greyscale or all colour); ``layout``: the axes of an array file (``NCHW`` or ``NHWC``)."""

    size: tuple[int, int] | None = None
    resample: str = "bilinear"
    mode: str | None = None
    layout: str = "NCHW"

    def record(self) -> dict[str, Any]:
        """The rule as the checkpoint keeps it (JSON)."""
        return {"size": None if self.size is None else list(self.size), "resample": self.resample,
                "mode": self.mode, "layout": self.layout}

    @classmethod
    def recorded(cls, entry: Any) -> Reading:
        """The rule a checkpoint kept; a run without one (the digits) has the strict rule: no
        resizing, no colour conversion."""
        if not isinstance(entry, dict):
            return cls()
        size = entry.get("size")
        return cls(None if size is None else (int(size[0]), int(size[1])),
                   str(entry.get("resample", "bilinear")), entry.get("mode"),
                   str(entry.get("layout", "NCHW")))


def parse_size(value: Any) -> tuple[int, int] | None:
    """The ``size`` option as ``(height, width)``: ``N`` (N x N), ``"HxW"`` or ``[H, W]``."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        height = width = value
    elif match:
        height, width = int(match[1]), int(match[2] or match[1])
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        height, width = value
    else:
        raise XaiError(f"dataset images: option 'size' must be N (N x N pixels) or HxW (height x "
                       f"width), e.g. size=32 or size=48x64, not {value!r}")
    if not (SMALLEST <= min(height, width) and max(height, width) <= LARGEST):
        raise XaiError(f"dataset images: option 'size' must be {SMALLEST} to {LARGEST} pixels per "
                       f"side, not {height}x{width}")
    return height, width


def open_image(path: Path) -> Any:
    """The image at ``path`` decoded whole, so that a truncated or unreadable file is refused
    here, naming it; an image smaller than 2x2 pixels is refused too."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on a bad file
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise XaiError(f"{path}: cannot read the image ({reason}); it is truncated or not an "
                       f"image file") from None
    width, height = image.size
    if min(width, height) < SMALLEST:
        raise XaiError(f"{path} is a {height}x{width}-pixel image; images need at least "
                       f"{SMALLEST}x{SMALLEST} pixels")
    return image


def colour_of(image: Any, path: Path) -> str:
    """``L`` for a greyscale image (a palette of greys included), ``RGB`` for a colour one."""
    if image.mode == "F":
        raise XaiError(f"{path} holds 32-bit floating-point pixels, which have no fixed range; "
                       f"save it with 8 or 16 bits per channel")
    if image.mode in GREY:
        return "L"
    if image.mode in ("P", "PA"):
        rgb = np.asarray(image.convert("RGB"))
        return "L" if (rgb == rgb[..., :1]).all() else "RGB"
    return "RGB"


def pixels(image: Any, mode: str, size: tuple[int, int] | None, resample: str,
           path: Path) -> np.ndarray:
    """``image`` as float32 ``[height, width, channel]`` in [0, 1], converted to ``mode`` and
    resized to ``size`` (when given and different) with the ``resample`` filter."""
    from PIL import Image

    method = getattr(Image.Resampling, resample.upper())
    if image.mode in DEEP:
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise XaiError(f"{path} holds pixel values outside 0..65535")
        grey = values.astype(np.float32) / np.float32(65535)
        if size is not None and grey.shape != size:
            grey = np.asarray(Image.fromarray(grey).resize((size[1], size[0]), method))
        return np.repeat(grey[..., None], 3 if mode == "RGB" else 1, axis=2)
    converted = image.convert(mode)
    if size is not None and converted.size != (size[1], size[0]):
        converted = converted.resize((size[1], size[0]), method)
    out = np.asarray(converted, dtype=np.float32) / np.float32(255)
    return out[..., None] if out.ndim == 2 else out


class Decoder:
    """Reads image files by a ``Reading``, each checked against a reference: the model's size
    and colour for a run's inputs (``model`` names it), else the first file read (training)."""

    def __init__(self, reading: Reading, size: tuple[int, int] | None = None,
                 colour: str | None = None, model: str | None = None) -> None:
        self.reading = reading
        self.size, self.colour, self.model = size, colour, model
        self.first: Path | None = None

    def decode(self, path: Path) -> np.ndarray:
        """The pixels ``[height, width, channel]`` of the file at ``path``."""
        image = open_image(path)
        size, colour = (image.size[1], image.size[0]), colour_of(image, path)
        if self.first is None and self.model is None:  # training: the first file is the reference
            self.first = path
            self.size, self.colour = self.reading.size or size, self.reading.mode or colour
        if self.reading.size is None and size != self.size:
            assert self.size is not None
            raise XaiError(self.mismatch(path, f"{size[0]}x{size[1]} pixels",
                                         f"{self.size[0]}x{self.size[1]}", "size"))
        if self.reading.mode is None and colour != self.colour:
            raise XaiError(self.mismatch(path, describe(colour, image.mode),
                                         describe(str(self.colour)), "mode"))
        mode = self.reading.mode or colour
        return pixels(image, mode, self.reading.size and self.size, self.reading.resample, path)

    def mismatch(self, path: Path, found: str, expected: str, rule: str) -> str:
        """The one line for an image unlike the reference, with the rule that would fix it."""
        fix = {"size": ("size=HxW", "resize"), "mode": ("mode=L or --data mode=RGB", "convert")}[rule]
        if self.model is None:
            return (f"{path} is {found} but {self.first} is {expected}; give --data {fix[0]} to "
                    f"{fix[1]} every image")
        return (f"{path} is {found} but model {self.model!r} reads {expected} images, and its run "
                f"was trained without a rule to {fix[1]} them (--data {rule}=)")


def describe(colour: str, mode: str | None = None) -> str:
    """``greyscale`` or ``colour``, with the file's Pillow mode when it says more."""
    word = "greyscale" if colour == "L" else "colour"
    return f"{word} ({mode})" if mode and mode not in ("L", "RGB") else word
