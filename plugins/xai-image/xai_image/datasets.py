"""Image datasets that ship offline: scikit-learn's handwritten digits."""

from __future__ import annotations

import numpy as np

from xaicore.plugin import Dataset, DataSplit, Option, takes_options


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
