"""Texts of different lengths explained in groups of one length cut to it (xai's way), in buckets
of similar lengths (the longest at most 1.25x the shortest) and in one batch padded to the longest.

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


def bucket_tops(lengths: torch.Tensor, ratio: float = 1.25) -> torch.Tensor:
    """Each length raised to the longest of its bucket (sorted lengths cut into buckets whose
    longest is at most ``ratio`` times their shortest)."""
    values = sorted(set(lengths.tolist()))
    tops: dict[int, int] = {}
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and values[end + 1] <= ratio * values[start]:
            end += 1
        tops.update({value: values[end] for value in values[start:end + 1]})
        start = end + 1
    return torch.tensor([tops[value] for value in lengths.tolist()], device=lengths.device)


WAYS = {"groups of one length (xai)": None,
        "buckets of similar lengths": bucket_tops,
        "one batch padded to the longest": lambda lengths: torch.full_like(lengths, int(lengths.max()))}


def timed(model, X: np.ndarray, way: str) -> tuple[float, np.ndarray]:
    original = base.padded_lengths
    if WAYS[way] is not None:  # the groups the explainer sees, by the length it cuts them to
        regroup = WAYS[way]
        base.padded_lengths = lambda x: None if original(x) is None else regroup(original(x))
    try:
        began = time.perf_counter()
        e = xaicore.explain(model, X, method="integrated-gradients", n_steps=32,
                            integration_method="riemann_trapezoid", baseline="pad")
        return time.perf_counter() - began, e.attributions
    finally:
        base.padded_lengths = original


def main() -> None:
    run, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
    torch.set_num_threads(1)
    model, dataset = load_run_data(run)
    X = dataset.test.X[:n]
    lengths = (~np.isnan(X[..., 0])).sum(1)
    print(f"{n} texts, {lengths.mean():.1f} tokens on average, the longest {lengths.max()}; "
          f"1 thread")
    rows: dict[str, list[float]] = {way: [] for way in WAYS}
    results = {}
    for _ in range(2):
        for way in WAYS:
            seconds, results[way] = timed(model, X, way)
            rows[way].append(seconds)
    ours = next(iter(WAYS))
    valid = ~np.isnan(results[ours])
    scale = np.abs(results[ours][valid]).max()
    for way in WAYS:
        best = min(rows[way])
        difference = np.abs(results[way][valid] - results[ours][valid]).max()
        print(f"{way:<34} {best:6.2f} s  {n / best:6.1f} texts/s  {best / min(rows[ours]):.2f}x "
              f"xai's time; largest difference {difference:.1e} of values up to {scale:.1e}")


if __name__ == "__main__":
    main()
