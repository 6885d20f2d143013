"""Time of ``shap``'s default on BasicMotions (6 features x 8 segments = 48 players) against the
previous default, in one run.

The previous default was the sampled estimate with 300 pairs in one round (``algorithm='sampled',
max_pairs=300`` computes exactly that); the default is now exact Owen values over the features,
then the time segments (``algorithm='auto'`` on a multivariate series). For each it prints the
time, the model rows and the relative standard error (``||standard error|| / ||values||`` per
sample: max and median), then the ratio of the times. It also projects what the sampled estimate
would need to reach the 5% target on every sample, from its first round (the error falls as
1 / sqrt(pairs)), and with ``--sampled-samples N`` runs the sampled rounds to the target on the
first N samples to check the projection.

Usage: .venv/bin/python benchmarks/shap_multivariate.py [--run RUN_DIR] [--samples 8]
       [--threads 1] [--epochs 200] [--sampled-samples 0]
Without --run, cnn-lstm-attention is trained on BasicMotions (seed 0) in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import xaicore
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.models.checkpoints import load_checkpoint, load_run
from xaicore.runs.training import train

TARGET = 0.05


def explain(model, X: np.ndarray, background: np.ndarray, **options) -> tuple[dict, float]:
    """The extras of one explanation and its seconds (warnings kept quiet: they are printed)."""
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = xaicore.explain(model, X, method="shap", background=background, **options)
    return e.extras, time.perf_counter() - began


def line(name: str, extras: dict, seconds: float, n: int) -> str:
    relative = np.asarray(extras["relative_standard_error"])
    return (f"| {name} | {extras['algorithm']} | {seconds:.1f} | {seconds / n:.2f} | "
            f"{extras['n_model_evaluations']:,} | {relative.max():.3f} | {np.median(relative):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a BasicMotions run (default: train one)")
    parser.add_argument("--samples", type=int, default=8, help="test samples explained")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs without --run")
    parser.add_argument("--sampled-samples", type=int, default=0,
                        help="run the sampled rounds to the 5%% target on this many samples")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        run = args.run
        if run is None:
            run = Path(folder) / "basicmotions"
            metrics = train(dataset_spec("BasicMotions"), "cnn-lstm-attention", run,
                            epochs=args.epochs, seed=0, progress=False)
            print(f"trained cnn-lstm-attention on BasicMotions: test accuracy "
                  f"{metrics['test_accuracy']:.3f}")
        model = load_run(run)
        dataset = load_dataset(load_checkpoint(run / "checkpoint.pt")["dataset"])
        X, background = dataset.test.X[:args.samples], dataset.train.X
        n = len(X)
        explain(model, X[:1], background, algorithm="sampled", max_pairs=300)  # warm-up
        print(f"{n} samples of BasicMotions {X.shape[1:]}, {len(background)} background samples, "
              f"{args.threads} torch thread(s)\n")
        print("| configuration | algorithm | time (s) | s per sample | model rows | "
              "relative SE max | median |")
        print("|---|---|---|---|---|---|---|")
        previous, previous_time = explain(model, X, background, algorithm="sampled", max_pairs=300)
        print(line("previous default (sampled, 300 pairs)", previous, previous_time, n))
        default, default_time = explain(model, X, background)
        print(line("default", default, default_time, n))
        print(f"\ndefault / previous default time: {default_time / previous_time:.1f}x "
              f"(model rows: {default['n_model_evaluations'] / previous['n_model_evaluations']:.1f}x)")
        relative = np.asarray(previous["relative_standard_error"])
        n_background, m = previous["background_size"], 6 * previous["n_segments"]
        pairs = 300 * (relative / TARGET) ** 2
        rows = n_background * 2 * m + 2 * pairs
        per_row = previous_time / previous["n_model_evaluations"]
        print(f"sampled to {TARGET:.0%} on every sample, projected from its first round: "
              f"{np.median(pairs):,.0f} pairs per sample (median; max {pairs.max():,.0f}), "
              f"{rows.sum():,.0f} model rows, about {rows.sum() * per_row:,.0f} s "
              f"({rows.sum() * per_row / default_time:.1f}x the default)")
        if args.sampled_samples:
            k = args.sampled_samples
            sampled, sampled_time = explain(model, X[:k], background, algorithm="sampled",
                                            max_pairs=10_000_000)
            print(line(f"sampled rounds to {TARGET:.0%} ({k} samples)", sampled, sampled_time, k))


if __name__ == "__main__":
    main()
