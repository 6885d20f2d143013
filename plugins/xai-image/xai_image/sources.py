"""A run's image inputs for ``xai explain --input`` and ``xai predict --input``, read in row ranges
(constant memory, any engine): a folder of image files (class subfolders, whose names label them,
or a flat folder), one image file, or an array file (``.npz``, ``.npy`` or Zarr, ``X`` of images,
labels in ``y``). Image files are read by the run's recorded rule (``reading.Reading``) to the
model's size and colour; every file is decoded once when the input is opened, so a bad one is
refused before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import InputSource, LoadedModel, XaiError, open_input

from .arrays import pixel_scale, stored_dtype
from .folders import folder_images, is_image
from .reading import SUFFIXES, Decoder, Reading

ARRAY_SUFFIXES = (".npz", ".npy", ".zarr")


@dataclass
class ImageFiles(InputSource):
    """Image files, decoded by ``decoder`` when their rows are read."""

    files: list[str] = field(default_factory=list, repr=False)
    decoder: Decoder | None = field(default=None, repr=False)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        assert self.decoder is not None
        X = np.stack([self.decoder.decode(Path(file)) for file in self.files[start:stop]])
        labels = None if self.labels is None else self.labels[start:stop]
        return X.reshape(len(X), *self.row_shape), labels


@dataclass
class ImageArrays(InputSource):
    """Images in an array file, ``[n, C, H, W]`` (``channels_first``) or ``[n, H, W, C]`` /
    ``[n, H, W]`` / ``[n, H*W, C]``, their rows flattened to ``[H*W, C]`` pixels as read."""

    channels_first: bool = True
    scale: float = 1.0

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        X, labels = super().read(start, stop)
        if self.channels_first:
            X = X.transpose(0, 2, 3, 1)
        X = np.ascontiguousarray(X.reshape(len(X), *self.row_shape))
        if self.scale != 1:
            X /= np.float32(self.scale)
        return X, labels


def open_images(model: LoadedModel, path: Path, columns: dict) -> InputSource:
    """The input at ``path`` for image ``model`` (see the module docstring)."""
    given = [key for key, value in columns.items() if value is not None]
    if given:
        raise XaiError(f"--{given[0].replace('_', '-')} reads a table; image inputs are labelled "
                       f"by their class subfolders (or y in an array file)")
    if not path.exists():
        raise XaiError(f"no input at {path}")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return array_input(model, path)
    if path.is_dir():
        files, labels = folder_images(path, labels_required=False)
    elif is_image(path):
        files, labels = [path], None
    else:
        raise XaiError(f"image inputs are a folder of images, an image file ({', '.join(SUFFIXES)})"
                       f" or an array file ({', '.join(ARRAY_SUFFIXES)}), not {path.name!r}")
    indices = None
    if labels is not None:
        unknown = sorted(set(labels) - set(model.class_names))
        if unknown:
            raise XaiError(f"{path / unknown[0]}: class {unknown[0]!r} is not a class of model "
                           f"{model.name!r} ({', '.join(model.class_names)})")
        indices = np.array([model.class_names.index(label) for label in labels], np.int64)
    decoder = model_decoder(model, path)
    for file in files:  # every file decoded once: a bad one is refused before anything is written
        decoder.decode(file)
    height, width = model.image_size
    return ImageFiles(str(path), len(files), (height * width, model.n_features), "images",
                      labels=indices, files=[str(file) for file in files], decoder=decoder,
                      row_names=[relative(Path(file), path) for file in files])


def relative(file: Path, root: Path) -> str:
    """A file's name relative to the input folder (a single file: its own name)."""
    return file.name if file == root else file.relative_to(root).as_posix()


def model_decoder(model: LoadedModel, path: Path) -> Decoder:
    """The decoder of image files for ``model``: its run's rule, its size and colour."""
    modes = {1: "L", 3: "RGB"}
    if model.n_features not in modes:
        raise XaiError(f"{path}: model {model.name!r} reads {model.n_features}-channel images; "
                       f"image files give 1 (greyscale) or 3 (RGB): give it an array file")
    reading = Reading.recorded(getattr(model, "image_reading", None))
    if reading.mode is not None and reading.mode != modes[model.n_features]:
        raise XaiError(f"the run of model {model.name!r} converts images to {reading.mode} but the "
                       f"model reads {model.n_features} channels")
    return Decoder(reading, model.image_size, modes[model.n_features], model.name)


def array_input(model: LoadedModel, path: Path) -> ImageArrays:
    """The images of an array file, their labels read by the core's rule for input files."""
    base = open_input(path, model.class_names)
    height, width = model.image_size
    channels = model.n_features
    shape = tuple(base.row_shape)
    fits = [layout for layout, want in (("NCHW", (channels, height, width)),
                                        ("NHWC", (height, width, channels))) if shape == want]
    flat = [(height * width, channels)] + ([(height, width)] if channels == 1 else [])
    if not fits and shape not in flat:  # [n, H*W, C] and [n, H, W] read as channels last
        raise XaiError(f"{path} holds images of shape {shape} but model {model.name!r} reads "
                       f"[n, {channels}, {height}, {width}] (or [n, {height}, {width}, "
                       f"{channels}]) images")
    preferred = Reading.recorded(getattr(model, "image_reading", None)).layout
    layout = preferred if preferred in fits else (fits or ["NHWC"])[0]
    scale = pixel_scale(stored_dtype(path, base.kind, base.array_name), str(path))
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(InputSource)}
    values["row_shape"] = (height * width, channels)
    return ImageArrays(**values, channels_first=layout == "NCHW", scale=float(scale))
