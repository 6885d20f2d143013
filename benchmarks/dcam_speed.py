"""dcam against gradcam on the same batches, side by side: what a dimension-wise map costs.

fcn (the published sizes, untrained: timing does not depend on training) explains a batch of
``[batch, 100, F]`` series (BasicMotions' length) for F = 3 and 6 features: gradcam (one forward
and one backward), dcam exact (one backward and 2^F - 1 coalition forwards) and dcam sampled
(``permutations`` orderings, F - 1 forwards each). Cases are interleaved within each repetition
and medians taken, so machine noise hits all alike; the ratio to gradcam is printed per case.

Usage: .venv/bin/python benchmarks/dcam_speed.py [--repeats 5] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import xaicore
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

LENGTH = 100


def fcn(n_features: int) -> LoadedModel:
    torch.manual_seed(0)
    network = registry.get_model("fcn")(n_features, LENGTH, 4)
    return LoadedModel(network, name="fcn", class_names=list("abcd"),
                       feature_names=[f"f{i}" for i in range(n_features)], seq_len=LENGTH,
                       mean=np.zeros(n_features), std=np.ones(n_features))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for n_features in (3, 6):
        model = fcn(n_features)
        X = rng.standard_normal((args.batch, LENGTH, n_features)).astype(np.float32)
        cases = {"gradcam": {"method": "gradcam"},
                 "dcam exact": {"method": "dcam", "baseline": "zero", "algorithm": "exact"},
                 "dcam sampled (16 orderings)": {"method": "dcam", "baseline": "zero",
                                                 "algorithm": "sampled", "permutations": 16}}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for options in cases.values():  # warm-up
            xaicore.explain(model, X[:4], **options)
        for _ in range(args.repeats):
            for name, options in cases.items():
                start = time.perf_counter()
                xaicore.explain(model, X, **options)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["gradcam"])
        print(f"fcn, [{args.batch}, {LENGTH}, {n_features}], {args.threads} thread(s):")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:30s} {median * 1e3:8.1f} ms  {args.batch / median:8.0f} rows/s  "
                  f"{median / base:5.1f}x gradcam")


if __name__ == "__main__":
    main()
