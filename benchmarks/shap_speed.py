"""xai's ``shap`` beside shap's GradientExplainer on the hybrid, GunPoint: time and additivity.

Both explain the same test samples for the same class (the predicted one) with the same background
(GunPoint's train split: 50 samples, below the default size of 100) in the model's logit space.
GradientExplainer runs with its default nsamples=200 and ranked_outputs=1 (the top class, which is
the predicted class). Additivity error per sample: |sum of attributions - (f(x) - E f(background))|
relative to |f(x) - E f(background)|. Runs are interleaved and medians taken, so machine noise
hits both alike.

With --accuracy N, xai's sampled values over 8 segments are also compared with exact Shapley values
of the same segment game (every coalition with every background sample) on the first N samples.

Usage: .venv/bin/python benchmarks/shap_speed.py [--run RUN_DIR] [--samples 64] [--repeats 3]
       [--accuracy 8]
Without --run, the hybrid is trained on GunPoint first (--epochs, seed 0) in a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import xaicore
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.runs.model import load_checkpoint, load_run
from xaicore.runs.training import train


def gradient_explainer(model, X: np.ndarray, background: np.ndarray) -> np.ndarray:
    """shap.GradientExplainer values for the top class, [sample, time, feature]."""
    import shap

    explainer = shap.GradientExplainer(model.module, torch.from_numpy(background).to(model.device))
    values, _ = explainer.shap_values(torch.from_numpy(X).to(model.device), ranked_outputs=1,
                                      rseed=0)
    return np.asarray(values)[..., 0]


def additivity_error(model, X: np.ndarray, background: np.ndarray, target: np.ndarray,
                     attributions: np.ndarray) -> np.ndarray:
    fx = model.logits(X).astype(np.float64)[np.arange(len(X)), target]
    expected = model.logits(background).astype(np.float64).mean(0)[target]
    delta = fx - expected
    return np.abs(attributions.astype(np.float64).sum((1, 2)) - delta) / np.abs(delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained cnn-lstm-attention GunPoint run")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--permutations", default="8,16", help="n_permutations settings of shap")
    parser.add_argument("--accuracy", type=int, default=0, metavar="N",
                        help="compare with exact Shapley values over 8 segments on N samples")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "gunpoint"
            metrics = train(dataset_spec("GunPoint"), "cnn-lstm-attention", run, epochs=args.epochs,
                            seed=0, progress=False)
            print(f"trained cnn-lstm-attention on GunPoint: test accuracy "
                  f"{metrics['test_accuracy']:.3f}")
        model = load_run(run)
        dataset = load_dataset(load_checkpoint(run / "checkpoint.pt")["dataset"])
    X = dataset.test.X[:args.samples]
    background = dataset.train.X[:100]
    target = model.logits(X).argmax(1)
    settings = [int(p) for p in args.permutations.split(",")]
    print(f"model {model.name} on {model.device}, {len(X)} samples {X.shape[1:]}, background "
          f"{len(background)}, torch threads {torch.get_num_threads()}")

    times: dict[str, list[float]] = {}
    errors: dict[str, np.ndarray] = {}
    extras: dict[str, dict] = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        values = gradient_explainer(model, X, background)
        times.setdefault("GradientExplainer", []).append(time.perf_counter() - start)
        errors["GradientExplainer"] = additivity_error(model, X, background, target, values)
        for n_permutations in settings:
            name = f"xai shap n_permutations={n_permutations}"
            start = time.perf_counter()
            explanation = xaicore.explain(model, X, method="shap", target=target,
                                          background=background, n_permutations=n_permutations)
            times.setdefault(name, []).append(time.perf_counter() - start)
            errors[name] = additivity_error(model, X, background, target,
                                            explanation.attributions)
            extras[name] = explanation.extras

    reference = statistics.median(times["GradientExplainer"])
    print(f"{'method':<32} {'median s':>9} {'speed-up':>9} {'additivity err median':>22} "
          f"{'max':>9}")
    for name, runs in times.items():
        t = statistics.median(runs)
        print(f"{name:<32} {t:9.3f} {reference / t:8.1f}x {np.median(errors[name]):22.2e} "
              f"{errors[name].max():9.2e}")
    for name, ex in extras.items():
        print(f"{name}: algorithm {ex['algorithm']}, {ex['n_model_evaluations']} model "
              f"evaluations, efficiency adjustment median "
              f"{np.median(ex['efficiency_adjustment']):.3f} of |f(x) - E f|")
    if args.accuracy:
        accuracy(model, X[:args.accuracy], background, target[:args.accuracy], settings)


def accuracy(model, X: np.ndarray, background: np.ndarray, target: np.ndarray,
             settings: list[int]) -> None:
    """Relative L2 error of sampled segment values against exact ones, over 5 seeds."""
    start = time.perf_counter()
    exact = xaicore.explain(model, X, method="shap", target=target, background=background,
                            n_segments=8, algorithm="exact").attributions.reshape(len(X), -1)
    print(f"exact Shapley values over 8 segments, {len(X)} samples: "
          f"{time.perf_counter() - start:.1f} s")
    for n_permutations in settings:
        errors = []
        for seed in range(5):
            sampled = xaicore.explain(model, X, method="shap", target=target,
                                      background=background, n_segments=8,
                                      n_permutations=n_permutations, algorithm="permutation",
                                      seed=seed).attributions.reshape(len(X), -1)
            errors.append(np.linalg.norm(sampled - exact, axis=1) / np.linalg.norm(exact, axis=1))
        print(f"n_permutations={n_permutations}: relative L2 error vs exact, median "
              f"{np.median(errors):.3f}, mean {np.mean(errors):.3f}")


if __name__ == "__main__":
    main()
