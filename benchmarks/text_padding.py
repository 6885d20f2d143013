"""Texts of different lengths explained in buckets of similar lengths vs in one padded batch.

Usage: python benchmarks/text_padding.py RUN [N_TEXTS] (a text run, e.g. one trained with
``xai train --dataset rotten-tomatoes --model text-cnn-lstm-attention``). Both ways are timed in
turn in one process, on the same texts, with integrated gradients at fixed steps; the
attributions must agree to float32 tolerance.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

import xaicore
from xaicore.explaining import base
from xaicore.models.checkpoints import load_run_data


def timed(model, X: np.ndarray, bucketed: bool) -> tuple[float, np.ndarray]:
    original = base.bucket_tops
    if not bucketed:  # every text in one batch padded to the longest
        base.bucket_tops = lambda lengths: torch.full_like(lengths, int(lengths.max()))
    try:
        began = time.perf_counter()
        e = xaicore.explain(model, X, method="integrated-gradients", n_steps=32,
                            integration_method="riemann_trapezoid", baseline="pad")
        return time.perf_counter() - began, e.attributions
    finally:
        base.bucket_tops = original


def main() -> None:
    run, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
    torch.set_num_threads(1)
    model, dataset = load_run_data(run)
    X = dataset.test.X[:n]
    lengths = (~np.isnan(X[..., 0])).sum(1)
    print(f"{n} texts, {lengths.mean():.1f} tokens on average, the longest {lengths.max()}; "
          f"1 thread")
    rows = {True: [], False: []}
    results = {}
    for _ in range(2):
        for bucketed in (True, False):
            seconds, results[bucketed] = timed(model, X, bucketed)
            rows[bucketed].append(seconds)
    valid = ~np.isnan(results[True])
    difference = np.abs(results[True][valid] - results[False][valid]).max()
    scale = np.abs(results[False][valid]).max()
    best = {k: min(v) for k, v in rows.items()}
    print(f"buckets of similar lengths: {best[True]:.2f} s ({n / best[True]:.1f} texts/s)")
    print(f"one padded batch:           {best[False]:.2f} s ({n / best[False]:.1f} texts/s)")
    print(f"ratio (padded / buckets): {best[False] / best[True]:.2f}; largest difference "
          f"{difference:.2e} of values up to {scale:.2e}")


if __name__ == "__main__":
    main()
