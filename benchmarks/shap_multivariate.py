"""Time of ``shap``'s default on BasicMotions (6 features x 8 segments = 48 players) against the
previous default and against Owen values, in one run.

The previous default was the sampled estimate with 300 pairs in one round (``algorithm='sampled',
max_pairs=300`` computes exactly that); the default now raises each sample's pairs in rounds until
its relative standard error is at most 5%. ``algorithm='owen'`` (exact Owen values, a different
solution) is timed beside them. For each it prints the time, the model rows and the relative
standard error (``||standard error|| / ||values||`` per sample: max and median), then the ratios
of the times. It also prints what the first round projects the rounds will need (the error falls
as 1 / sqrt(pairs)).

Usage: .venv/bin/python benchmarks/shap_multivariate.py [--run RUN_DIR] [--samples 4]
       [--threads 1] [--epochs 200]
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
    parser.add_argument("--samples", type=int, default=4, help="test samples explained")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs without --run")
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
        relative = np.asarray(previous["relative_standard_error"])
        n_background, m = previous["background_size"], 6 * previous["n_segments"]
        pairs = 300 * (relative / TARGET) ** 2
        rows = n_background * 2 * m + 2 * pairs
        print(f"projected from the first round: {np.median(pairs):,.0f} pairs per sample (median; "
              f"max {pairs.max():,.0f}) for {TARGET:.0%}, {rows.sum():,.0f} model rows")
        default, default_time = explain(model, X, background)
        print(line("default (sampled, rounds to 5%)", default, default_time, n))
        owen, owen_time = explain(model, X, background, algorithm="owen")
        print(line("owen", owen, owen_time, n))
        print(f"\ndefault / previous default time: {default_time / previous_time:.1f}x (model rows "
              f"{default['n_model_evaluations'] / previous['n_model_evaluations']:.1f}x); "
              f"owen / default: {owen_time / default_time:.2f}x (model rows "
              f"{owen['n_model_evaluations'] / default['n_model_evaluations']:.2f}x)")


if __name__ == "__main__":
    main()
