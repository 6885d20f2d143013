"""Synthetic datasets with known informative cells, after Ismail et al. (NeurIPS 2020).

Every sample is ``seq_len x n_features`` of N(0, 1) noise; inside an informative box the values are
drawn from N(+signal, 1) for class "positive" and N(-signal, 1) for class "negative". The box is
placed as in the paper's 50 x 50 benchmark, scaled to the chosen size (fractions of each axis,
start and length). The ground truth is kept with the data: ``info["mask_train"]`` and
``info["mask_test"]`` are boolean ``[sample, time, feature]`` arrays. Generation is seeded.

``synthetic-one-channel`` is a multivariate set whose label one known feature carries
(``info["carrier"]``, the middle feature): every feature holds a window of a fifth of the series
at a random place, shifted by +signal or -signal; on the carrier the sign is the class, on every
other feature it is drawn at random (a distractor as strong as the evidence). Its mask is the
carrier's window, so a map that gives every feature the same value can place at most 1/F of its
mass inside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xaicore.plugin import Dataset, DataSplit, Option, XaiError, takes_options

#: (time start, time length, feature start, feature length) as fractions of each axis.
BOXES = {
    "synthetic-middle": (0.2, 0.6, 0.2, 0.6),
    "synthetic-small": (0.36, 0.28, 0.36, 0.28),
    "synthetic-rare-time": (0.44, 0.12, 0.1, 0.8),
    "synthetic-rare-feature": (0.1, 0.8, 0.44, 0.12),
    "synthetic-moving": (None, 0.6, None, 0.6),
}
ONE_CHANNEL = "synthetic-one-channel"
WINDOW = 0.2  # its windows' length, a fraction of the series
OPTIONS: tuple[Option, ...] = (
    Option("n_train", int, 800, "train samples", min=4, max=10_000_000),
    Option("n_test", int, 200, "test samples", min=4, max=10_000_000),
    Option("seq_len", int, 50, "time steps per sample", min=1, max=1_000_000),
    Option("n_features", int, 10, "features per time step", min=1, max=100_000),
    Option("signal", float, 1.0, "mean shift inside the informative box", min=0.0, max=1000.0),
    Option("seed", int, 0, "seed of the generator", min=0, max=2**32 - 1),
)


def span(start: float | None, length: float, size: int) -> tuple[float | None, int]:
    """Start fraction and length in cells (at least one cell) of a box along one axis."""
    return start, max(1, min(size, round(length * size)))


def generate(name: str, n: int, seq_len: int, n_features: int, signal: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X [n, time, feature]``, labels ``y`` (half of each class) and the boolean ground-truth mask."""
    t_start, t_len = span(BOXES[name][0], BOXES[name][1], seq_len)
    f_start, f_len = span(BOXES[name][2], BOXES[name][3], n_features)
    y = rng.permutation(np.arange(n) % 2)
    X = rng.standard_normal((n, seq_len, n_features)).astype(np.float32)
    mask = np.zeros(X.shape, dtype=bool)
    for i in range(n):
        t0 = (rng.integers(0, seq_len - t_len + 1) if t_start is None
              else min(round(t_start * seq_len), seq_len - t_len))
        f0 = (rng.integers(0, n_features - f_len + 1) if f_start is None
              else min(round(f_start * n_features), n_features - f_len))
        mask[i, t0:t0 + t_len, f0:f0 + f_len] = True
    X += np.where(mask, np.where(y == 1, signal, -signal)[:, None, None], 0).astype(np.float32)
    return X, y, mask


def carrier_of(n_features: int) -> int:
    """The feature that carries the label of ``synthetic-one-channel``: the middle one."""
    return n_features // 2


def generate_one_channel(n: int, seq_len: int, n_features: int, signal: float,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X``, ``y`` and the mask of ``synthetic-one-channel``: one shifted window per feature,
    the carrier's sign the class, the others' signs random; the mask is the carrier's window."""
    length = max(1, min(seq_len, round(WINDOW * seq_len)))
    y = rng.permutation(np.arange(n) % 2)
    X = rng.standard_normal((n, seq_len, n_features)).astype(np.float32)
    starts = rng.integers(0, seq_len - length + 1, size=(n, n_features))
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n, n_features))
    carrier = carrier_of(n_features)
    signs[:, carrier] = np.where(y == 1, 1.0, -1.0)
    windows = np.arange(seq_len)[None, :, None] - starts[:, None, :]
    inside = (windows >= 0) & (windows < length)  # [n, time, feature]
    X += np.where(inside, signal * signs[:, None, :], 0.0).astype(np.float32)
    mask = inside & (np.arange(n_features) == carrier)[None, None, :]
    return X, y, mask


@takes_options("synthetic dataset", *OPTIONS)
def load(name: str, **opts: Any) -> Dataset:
    """One synthetic variant; options ``n_train``, ``n_test``, ``seq_len``, ``n_features``, ``signal``,
    ``seed`` (declared in ``OPTIONS``)."""
    if name not in BOXES and name != ONE_CHANNEL:
        raise XaiError(f"unknown synthetic dataset {name!r}; variants: "
                       f"{', '.join([*BOXES, ONE_CHANNEL])}")
    rng = np.random.default_rng(opts["seed"])
    shape = (opts["seq_len"], opts["n_features"], opts["signal"])
    if name == ONE_CHANNEL:
        X_train, y_train, mask_train = generate_one_channel(opts["n_train"], *shape, rng)
        X_test, y_test, mask_test = generate_one_channel(opts["n_test"], *shape, rng)
        known = {"carrier": carrier_of(opts["n_features"])}
    else:
        X_train, y_train, mask_train = generate(name, opts["n_train"], *shape, rng)
        X_test, y_test, mask_test = generate(name, opts["n_test"], *shape, rng)
        known = {}
    return Dataset(name, DataSplit(X_train, y_train), DataSplit(X_test, y_test),
                   ["negative", "positive"], [f"f{i}" for i in range(shape[1])],
                   info={"source": "synthetic", "options": opts, "mask_train": mask_train,
                         "mask_test": mask_test, **known})
