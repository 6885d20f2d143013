"""Integrated gradients with n_steps="auto": nested Clenshaw-Curtis against Gauss-Legendre restarts.

    .venv/bin/python benchmarks/ig_auto.py [--run runs/gunpoint] [--repeats 2]

Both explain a trained run's whole test split (the predicted class, zero baseline), raising each
sample's rule until its completeness gap is under 1%: Clenshaw-Curtis reuses the previous rule's
nodes (33, 65, ... 1025 points), Gauss-Legendre computes each rule afresh (32, 64, ... 1024 steps).
The two are interleaved in every repeat; printed: median seconds, gradient rows (every sample's
path points over all the rules it tried), how many samples stopped at each level, how many are
still above 1%, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import xaicore
from xaicore.application import load_run_data

RULES = {"clenshaw_curtis": (33, 65, 129, 257, 513, 1025),
         "gausslegendre": (32, 64, 128, 256, 512, 1024)}


def rows(levels: tuple[int, ...], steps: np.ndarray, nested: bool) -> int:
    """Gradient rows spent: nested rules pay only each level's new points."""
    total = 0
    for i, level in enumerate(levels):
        reached = int((steps >= level).sum())
        total += reached * (level - (levels[i - 1] if nested and i else 0))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/gunpoint"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, dataset = load_run_data(args.run, "cpu")
    X = dataset.test.X
    seconds: dict[str, list[float]] = {rule: [] for rule in RULES}
    result = {}
    for _ in range(args.repeats):
        for rule in RULES:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                e = xaicore.explain(model, X, method="integrated-gradients",
                                    integration_method=rule)
            seconds[rule].append(time.perf_counter() - start)
            result[rule] = (e, len(caught))
    print(f"{len(X)} samples; {args.repeats} repeats, interleaved\n")
    print(f"{'rule':<17}{'median s':>9}{'grad rows':>11}  samples stopping at each level"
          f"{'above 1%':>10}")
    spent = {}
    for rule, levels in RULES.items():
        e, _ = result[rule]
        steps = np.asarray(e.extras["n_steps"])
        spent[rule] = rows(levels, steps, nested=rule == "clenshaw_curtis")
        delta = np.abs(np.asarray(e.extras["convergence_delta"]))
        above = int((delta > 0.01 * np.abs(np.asarray(e.extras["output_difference"]))).sum())
        stops = " ".join(f"{lv}:{int((steps == lv).sum())}" for lv in levels)
        print(f"{rule:<17}{statistics.median(seconds[rule]):>9.2f}{spent[rule]:>11,}  {stops}"
              f"{above:>10}")
    cc, gl = "clenshaw_curtis", "gausslegendre"
    print(f"\nClenshaw-Curtis / Gauss-Legendre: time "
          f"{statistics.median(seconds[cc]) / statistics.median(seconds[gl]):.2f}, "
          f"gradient rows {spent[cc] / spent[gl]:.2f}")


if __name__ == "__main__":
    main()
