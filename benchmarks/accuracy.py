"""Train the target model/dataset pairs with the default recipes; print test accuracy and time.

    .venv/bin/python benchmarks/accuracy.py            # the pairs with accuracy targets
    .venv/bin/python benchmarks/accuracy.py --all      # plus fcn, resnet and transformer
    .venv/bin/python benchmarks/accuracy.py --seeds 0,1,2 --out runs/bench

Figures come from each run's metrics.json (``seconds`` is the training loop's wall time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from xaicore.data.loading import dataset_spec
from xaicore.runs.training import train

# (model, dataset, target test accuracy, time limit in seconds or None)
TARGETS = [
    ("cnn-lstm-attention", "GunPoint", 0.98, 60.0),
    ("cnn-lstm-attention", "BasicMotions", 1.00, None),
    ("cnn-lstm-attention", "ItalyPowerDemand", 0.96, None),
    ("inception-time", "GunPoint", 0.99, None),
]
EXTRA = [("fcn", "GunPoint", None, None), ("resnet", "GunPoint", None, None),
         ("transformer", "GunPoint", None, None), ("transformer", "BasicMotions", None, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also fcn, resnet and transformer")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--out", type=Path, help="keep the run directories here")
    parser.add_argument("--only", help="only this model (e.g. inception-time)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = [p for p in TARGETS + (EXTRA if args.all else []) if not args.only or p[0] == args.only]
    root = args.out or Path(tempfile.mkdtemp(prefix="xai-bench-"))
    header = f"{'model':20} {'dataset':17} {'seed':>4} {'test acc':>9} {'train acc':>9} " \
             f"{'epochs':>6} {'seconds':>8}  target"
    print(header)
    print("-" * len(header), flush=True)
    for model, dataset, target, limit in pairs:
        accs = []
        for seed in seeds:
            run = root / f"{model}-{dataset}-s{seed}"
            train(dataset_spec(dataset), model, run, seed=seed, force=True, progress=False)
            m = json.loads((run / "metrics.json").read_text())
            accs.append(m["test_accuracy"])
            verdict = ""
            if target is not None:
                ok = m["test_accuracy"] >= target - 1e-9 and (limit is None or m["seconds"] < limit)
                verdict = (f">= {target:.2f}" + (f" in < {limit:.0f} s" if limit else "") +
                           ("  ok" if ok else "  MISSED"))
            print(f"{model:20} {dataset:17} {seed:>4} {m['test_accuracy']:9.4f} "
                  f"{m['train_accuracy']:9.4f} {m['epochs']:6d} {m['seconds']:8.1f}  {verdict}",
                  flush=True)
        if len(seeds) > 1:
            print(f"{'':20} {'mean':17} {'':>4} {statistics.mean(accs):9.4f}", flush=True)
    print(f"runs in {root}")


if __name__ == "__main__":
    main()
