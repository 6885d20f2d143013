"""The figures of the evaluation issue: faithfulness on GunPoint, localisation on synthetic data.

    .venv/bin/python benchmarks/evaluation_figures.py                   # trains both runs
    .venv/bin/python benchmarks/evaluation_figures.py --gunpoint-run runs/gunpoint --synthetic-run R

1. GunPoint with the hybrid (cnn-lstm-attention): every built-in method's deletion and insertion
   AUC beside the random-order baseline, and the cascading randomisation correlations
   (RUN/evaluation/auc_summary.png, perturbation_*.png, randomisation.png).
2. One synthetic variant (default synthetic-middle) with the hybrid: AUP and AUR of saliency,
   integrated gradients and both with TSR, plus the random baseline (RUN/evaluation/aup.png, aur.png).

Runs that are not given are trained into ``--out``. The tables are printed and written as CSV.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from xai_eval.runner import evaluate_run
from xaicore.data.loading import dataset_spec
from xaicore.runs.training import train

MODEL = "cnn-lstm-attention"
LOCALISATION_METHODS = ("saliency", "integrated-gradients", "tsr:saliency",
                        "tsr:integrated-gradients", "random")


def trained(run: Path | None, dataset: str, out: Path, epochs: int, seed: int) -> Path:
    """The given run, or the hybrid trained on ``dataset`` into ``out/<dataset>``."""
    if run is not None:
        return run
    run = out / dataset
    if not (run / "checkpoint.pt").is_file():
        metrics = train(dataset_spec(dataset), MODEL, run, epochs=epochs, seed=seed, force=True)
        print(f"{dataset}: test accuracy {metrics['test_accuracy']:.3f}")
    return run


def timed_evaluation(run: Path, **kwargs) -> pd.DataFrame:
    start = time.perf_counter()
    rows = evaluate_run(run, force=True, **kwargs)
    print(f"evaluated {run} in {time.perf_counter() - start:.0f} s")
    return pd.DataFrame(rows).set_index("method")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/evaluation-benchmark"))
    parser.add_argument("--gunpoint-run", type=Path)
    parser.add_argument("--synthetic-run", type=Path)
    parser.add_argument("--synthetic", default="synthetic-middle")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--synthetic-samples", type=int, default=16,
                        help="TSR explains T + (relevant T) x F masked copies per sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gunpoint = trained(args.gunpoint_run, "GunPoint", args.out, 50, args.seed)
    faithfulness = timed_evaluation(gunpoint, metrics=("deletion", "insertion", "randomisation"),
                                    samples=args.samples, seed=args.seed)
    synthetic = trained(args.synthetic_run, args.synthetic, args.out, 15, args.seed)
    localisation = timed_evaluation(synthetic, methods=LOCALISATION_METHODS,
                                    metrics=("aup", "aur", "deletion"),
                                    samples=args.synthetic_samples, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    faithfulness.to_csv(args.out / "gunpoint_faithfulness.csv")
    localisation.to_csv(args.out / f"{args.synthetic}_localisation.csv")
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(f"\nGunPoint, {MODEL}: figures in {gunpoint / 'evaluation'}\n{faithfulness}")
        print(f"\n{args.synthetic}, {MODEL}: figures in {synthetic / 'evaluation'}\n{localisation}")


if __name__ == "__main__":
    main()
