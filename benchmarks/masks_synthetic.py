"""extremal-mask and dynamask beside integrated-gradients and window-occlusion on the synthetic
ground-truth sets: seconds per sample and AUP/AUR, in one run.

For each set (xai-eval's ``synthetic-*``, Ismail et al. 2020) an fcn is trained briefly (one
thread), its test samples are explained by every method at its defaults (window-occlusion with
``--window`` steps) on the same batch, and each map is scored with ``xai evaluate``'s AUP and AUR
against the set's mask. Methods are timed one after another on the same samples (each after a
warm-up call on two of them); the machine's load hits them alike only when it is steady, so read
the ratios with that in mind.

Usage: .venv/bin/python benchmarks/masks_synthetic.py [--sets synthetic-middle,...] [--n-test 32]
       [--seq-len 50] [--features 10] [--epochs 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import xaicore
from xai_eval.localisation import AUPMetric, AURMetric

SETS = ("synthetic-middle", "synthetic-small", "synthetic-rare-time", "synthetic-rare-feature")
METHODS = ("integrated-gradients", "window-occlusion", "extremal-mask", "dynamask")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--n-test", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of each fcn")
    parser.add_argument("--window", type=int, default=5, help="window-occlusion's window")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="xai-masks-"))
    print(f"{'set':24} {'method':22} {'s/sample':>9} {'AUP':>6} {'AUR':>6}   (test acc)")
    for name in args.sets.split(","):
        spec = {"name": name, "n_train": 800, "n_test": args.n_test, "seq_len": args.seq_len,
                "n_features": args.features, "signal": 1.0, "seed": 0}
        run = root / name
        metrics = xaicore.train(spec, "fcn", run, epochs=args.epochs, progress=False,
                                params={"filters": [16, 32, 16], "kernel_sizes": [7, 5, 3]})
        model, dataset = xaicore.load_run(run), xaicore.load_dataset(spec)
        X, mask = dataset.test.X, dataset.info["mask_test"]
        for method in METHODS:
            options = {"background": dataset.train.X} if method == "window-occlusion" else {}
            if method == "window-occlusion":
                options |= {"window": args.window, "stride": max(1, args.window // 2)}
            if method in ("extremal-mask", "dynamask"):
                options["progress"] = False
            xaicore.explain(model, X[:2], method=method, **options)  # warm-up
            start = time.perf_counter()
            e = xaicore.explain(model, X, method=method, target="predicted", **options)
            seconds = (time.perf_counter() - start) / len(X)
            aup = AUPMetric().evaluate(model, e, mask=mask)["aup"]
            aur = AURMetric().evaluate(model, e, mask=mask)["aur"]
            print(f"{name:24} {method:22} {seconds:9.4f} {aup:6.3f} {aur:6.3f}   "
                  f"({metrics['test_accuracy']:.2f})", flush=True)


if __name__ == "__main__":
    main()
