"""native-guide batched over samples and widths, beside the same search one sample per call, and
beside a one-forward-per-width loop shaped like TSInterpret's ``NativeGuideCF`` (its
``_counterfactual_generator_swap``: widen by one step, run the model on one candidate, repeat),
on the same model, samples, nearest unlike neighbours and Grad-CAM maps, in one run.

The model is cnn-lstm-attention trained on GunPoint (``--epochs``, seed 0; ``--run`` reuses a run
directory instead); the samples are the first ``--samples`` of its test split, each for its most
likely other class. The three are checked to find the same windows first, then timed in turns
``--repeats`` times: the table shows the median times and the median of each turn's ratio to the
batched search, with the range of the turns' ratios.

Usage: .venv/bin/python benchmarks/counterfactual_speed.py [--samples 32] [--repeats 5]
       [--threads 1] [--run RUN] [--epochs 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import xaicore
from xaicore.data.loading import dataset_spec


def one_width_at_a_time(model, x: np.ndarray, nun: np.ndarray, weights: np.ndarray,
                        target: int) -> tuple[int, int]:
    """The narrowest best-sum window whose copy the model predicts as ``target``, one forward per
    width."""
    steps = len(x)
    for width in range(1, steps + 1):
        sums = np.convolve(weights, np.ones(width), "valid")
        start = int(np.argmax(sums))
        candidate = x.copy()
        candidate[start:start + width] = nun[start:start + width]
        with torch.no_grad():
            predicted = int(model.module(torch.from_numpy(candidate[None])).argmax(1)[0])
        if predicted == target:
            return start, start + width
    return 0, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp()) / "gunpoint"
        xaicore.train(dataset_spec("GunPoint"), "cnn-lstm-attention", run, epochs=args.epochs,
                      seed=0, progress=False)
    model = xaicore.load_run(run)
    dataset = xaicore.load_dataset(dataset_spec("GunPoint"))
    X, train = dataset.test.X[:args.samples], dataset.train.X

    def batched():
        return xaicore.explain(model, X, method="native-guide", background=train)

    def per_sample():
        return [xaicore.explain(model, X[i:i + 1], method="native-guide", background=train)
                for i in range(len(X))]

    reference = batched()
    nun, targets = reference.extras["nearest_unlike"], reference.targets
    cam = xaicore.explain(model, nun, method="gradcam", target=targets)
    weights = np.abs(cam.attributions.astype(np.float64)).sum(2)

    def loop():
        return [one_width_at_a_time(model, X[i], nun[i], weights[i], int(targets[i]))
                for i in range(len(X))]

    windows = reference.extras["window"].tolist()
    alone = [e.extras["window"][0].tolist() for e in per_sample()]
    looped = [list(w) for w in loop()]
    if windows != alone or windows != looped:
        raise SystemExit(f"the searches differ: batched {windows}, per sample {alone}, loop {looped}")
    times: dict[str, list[float]] = {"batched": [], "per sample": [], "one width a forward": []}
    for _ in range(args.repeats):
        for name, function in (("batched", batched), ("per sample", per_sample),
                               ("one width a forward", loop)):
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    widths = np.diff(reference.extras["window"], axis=1)[:, 0]
    print(f"native-guide on {len(X)} GunPoint samples (windows of {widths.min()}-{widths.max()} "
          f"steps, median {int(np.median(widths))}), {args.threads} thread(s), {args.repeats} turns")
    print(f"{'search':<22}{'median s':>10}{'ratio to batched':>20}{'range':>18}")
    for name, values in times.items():
        ratios = np.array(values) / np.array(times["batched"])
        print(f"{name:<22}{np.median(values):>10.3f}{np.median(ratios):>20.2f}"
              f"{f'{ratios.min():.2f}-{ratios.max():.2f}':>18}")


if __name__ == "__main__":
    main()
