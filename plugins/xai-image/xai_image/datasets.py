"""Image datasets: scikit-learn's handwritten digits, which ship offline, and the user's own
images (a folder per class or an ``.npz``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xaicore.plugin import (
    Dataset,
    DataSplit,
    Option,
    XaiError,
    class_order,
    source_digest,
    stratified_split,
    takes_options,
)

from .arrays import read_npz
from .folders import folder_images, split_folders
from .reading import CHANNEL_NAMES, LAYOUTS, MODES, RESAMPLING, Decoder, Reading, parse_size


@takes_options("dataset digits",
               Option("scale", int, 4, "nearest-neighbour upsampling factor of the 8x8 images (4: "
                      "32x32)", min=1, max=16),
               Option("seed", int, 0, "seed of the stratified train/test split", min=0, max=2**32 - 1),
               Option("test_size", float, 0.25, "share of each class held out for test", min=0.05,
                      max=0.95))
def load_digits(name: str, scale: int = 4, seed: int = 0, test_size: float = 0.25) -> Dataset:
    """The 1,797 handwritten digits scikit-learn ships (8x8, grey levels 0-16 read as 0-1),
    each pixel repeated ``scale`` x ``scale`` times, split per class with ``seed``."""
    from sklearn.datasets import load_digits as digits
    from sklearn.model_selection import train_test_split

    data = digits()
    images = np.asarray(data.images, np.float32) / 16.0
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, height, width = images.shape
    X = images.reshape(n, height * width, 1)
    y = np.asarray(data.target, np.int64)
    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed, stratify=y)
    return Dataset(name, DataSplit(X[train], y[train]), DataSplit(X[test], y[test]),
                   [str(c) for c in data.target_names], ["grey"],
                   {"height": height, "width": width})


IMAGES = (
    Option("path", str, None, "an image folder (ROOT/<class>/*.png, one subfolder per class; "
           "ROOT/train and ROOT/test are the split when both exist) or an .npz of images"),
    Option("test", str, None, "its test folder or .npz (default: ROOT/test, else a seeded "
           "stratified split)"),
    Option("size", object, None, "resize every image file to N x N or HxW pixels, e.g. 32 or "
           "48x64 (default: the images must share one size)"),
    Option("resample", str, "bilinear", "the filter resizing uses", choices=RESAMPLING),
    Option("mode", str, None, "convert every image file to L (greyscale) or RGB (default: the "
           "images must be all greyscale or all colour)", choices=MODES),
    Option("layout", str, "NCHW", "the axes of X in an .npz: NCHW, or NHWC (channels last)",
           choices=LAYOUTS),
    Option("seed", int, 0, "seed of the stratified train/test split", min=0, max=2**32 - 1),
    Option("test_size", float, 0.25, "share of each class held out for test", min=1e-9, max=0.99),
    Option("sha256", str, None, "the digest of the folder or file a run was trained on: data "
           "changed since is refused"),
    Option("test_sha256", str, None, "the digest of its test folder or file"),
)
SPEC_KEYS = ("path", "test", "sha256", "test_sha256")  # set by the command line, not by --data


@takes_options("dataset images", *IMAGES)
def load_image_files(name: str, path: str | None = None, test: str | None = None,
                     size: Any = None, resample: str = "bilinear", mode: str | None = None,
                     layout: str = "NCHW", seed: int = 0, test_size: float = 0.25,
                     sha256: str | None = None, test_sha256: str | None = None) -> Dataset:
    """Labelled images from the user's folder (read with Pillow by the size and colour rule) or
    ``.npz`` file; a folder or file changed since a run was trained on it is refused."""
    if path is None:
        raise XaiError("dataset images needs path= (a folder with one subfolder of images per "
                       "class, or an .npz of images)")
    root, held_out = Path(path), None if test is None else Path(test)
    for where, digest in ((root, sha256), (held_out, test_sha256)):
        if where is not None and not where.exists():
            raise XaiError(f"no image folder or .npz at {where}")
        if where is not None and digest is not None and source_digest(where) != digest:
            raise XaiError(f"{where} has changed since the run was trained on it (its sha256 "
                           f"differs); restore the original images or train a new run on these")
    reading = Reading(parse_size(size), resample, mode, layout)
    if root.is_dir():
        return folder_dataset(root, held_out, reading, seed, test_size)
    if root.suffix.lower() == ".npz":
        return array_dataset(root, held_out, reading, seed, test_size)
    raise XaiError(f"{root} is neither a folder of images nor an .npz of images X and labels y"
                   f"{' (an .npy holds no labels)' if root.suffix.lower() == '.npy' else ''}")


def image_spec(path: Path, test: Path | None, columns: dict, seed: int, test_size: float,
               data: dict) -> dict:
    """The spec of the ``images`` dataset for the user's folder or ``.npz`` (absolute paths with
    their digests, so a run refuses data changed since it was trained)."""
    given = [key for key, value in columns.items() if value is not None]
    if given:
        raise XaiError(f"--{given[0].replace('_', '-')} reads a table; the classes of images are "
                       f"their subfolders' names (or y in an .npz)")
    fixed = [key for key in SPEC_KEYS if key in data]
    if fixed:
        raise XaiError(f"--data {fixed[0]}= is set by --dataset and --test")
    spec = {"name": "images", "seed": int(seed), "test_size": float(test_size), **data}
    for key, where in (("path", path), ("test", test)):
        if where is None:
            continue
        where = Path(where).expanduser()
        if not where.exists():
            raise XaiError(f"no image folder or .npz at {where}")
        spec[key] = str(where.resolve())
        spec["sha256" if key == "path" else "test_sha256"] = source_digest(where)
    return spec


def folder_dataset(root: Path, test: Path | None, reading: Reading, seed: int,
                   test_size: float) -> Dataset:
    """The images of a folder per class, with the test folder's or a seeded stratified split."""
    train_root, test_root = split_folders(root, test)
    files, labels = folder_images(train_root)
    assert labels is not None  # labels_required
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise XaiError(f"{train_root} has one class folder ({classes[0]}/); a classifier needs at "
                       f"least 2")
    held_files, held_labels = folder_images(test_root) if test_root else ([], [])
    unknown = sorted(set(held_labels or ()) - set(classes))
    if unknown:
        raise XaiError(f"test folder {test_root} has class folders the train folder {train_root} "
                       f"lacks: {', '.join(unknown[:5])}")
    decoder = Decoder(reading)
    X = decode_all(decoder, files + held_files)
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index[label] for label in [*labels, *(held_labels or ())]], np.int64)
    if test_root is None:
        train, held = stratified_split(y, test_size, seed, classes, str(root))
    else:
        train, held = np.arange(len(files)), np.arange(len(files), len(X))
    mode = reading.mode or str(decoder.colour)
    return image_dataset(root.name, X, y, train, held, classes, CHANNEL_NAMES[mode], reading)


def decode_all(decoder: Decoder, files: list[Path]) -> np.ndarray:
    """The pixels ``[n, H, W, C]`` of every file, each checked against the first by the rule."""
    first = decoder.decode(files[0])
    X = np.empty((len(files), *first.shape), np.float32)
    X[0] = first
    for i, file in enumerate(files[1:], 1):
        X[i] = decoder.decode(file)
    return X


def array_dataset(path: Path, test: Path | None, reading: Reading, seed: int,
                  test_size: float) -> Dataset:
    """The images of an ``.npz`` (``arrays.read_npz``), its test split from ``X_test``, a test
    file or a seeded stratified split."""
    if reading.size is not None or reading.mode is not None:
        raise XaiError(f"size= and mode= convert image files; the images of {path} are taken as "
                       f"they are")
    arrays = read_npz(path, reading.layout)
    if test is not None:
        if "X_test" in arrays:
            raise XaiError(f"{path} already holds a test split (X_test); do not pass a test file")
        held = read_npz(test, reading.layout)
        if held["X"].shape[1:] != arrays["X"].shape[1:]:
            raise XaiError(f"test file {test} holds images of {held['X'].shape[1:]} (height, "
                           f"width, channel) but {path} of {arrays['X'].shape[1:]}")
        arrays["X_test"], arrays["labels_test"] = held["X"], held["labels"]
    classes = arrays.get("class_names") or class_order(arrays["labels"])
    if len(set(arrays["labels"])) < 2:
        raise XaiError(f"{path}: every image has the label {arrays['labels'][0]!r}; a classifier "
                       f"needs at least two classes")
    index = {name: i for i, name in enumerate(classes)}
    parts = [arrays["labels"], arrays.get("labels_test", np.array([], str))]
    unknown = sorted(set(map(str, np.concatenate(parts))) - set(index))
    if unknown:
        raise XaiError(f"{test or path}: labels {', '.join(map(repr, unknown[:5]))} are not "
                       f"among the classes {', '.join(classes)}")
    y = np.array([index[str(label)] for part in parts for label in part], np.int64)
    n = len(arrays["X"])
    if "X_test" in arrays:
        X = np.concatenate([arrays["X"], arrays["X_test"]])
        train, held_idx = np.arange(n), np.arange(n, len(X))
    else:
        X = arrays["X"]
        train, held_idx = stratified_split(y, test_size, seed, classes, str(path))
    channels = X.shape[3]
    names = arrays.get("channel_names") or (
        CHANNEL_NAMES["L" if channels == 1 else "RGB"] if channels in (1, 3) else
        [f"channel_{i}" for i in range(channels)])
    if len(names) != channels:
        raise XaiError(f"{path}: {len(names)} channel_names for {channels} channels")
    return image_dataset(path.stem, X, y, train, held_idx, classes, names, reading)


def image_dataset(name: str, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                  classes: list[str], channels: list[str], reading: Reading) -> Dataset:
    """The Dataset of pixels ``X [n, H, W, C]``, flattened to ``[n, H*W, C]``, with its rule."""
    n, height, width, depth = X.shape
    flat = X.reshape(n, height * width, depth)
    return Dataset(name, DataSplit(flat[train], y[train]), DataSplit(flat[test], y[test]),
                   list(classes), list(channels),
                   {"height": height, "width": width, "reading": reading.record()})
