"""xai's ``kernel-shap`` and ``lime`` beside captum's ``KernelShap`` and ``Lime`` on the same model,
inputs, players, baseline and coalitions, in one run.

The model is a registered network (``--model``, default fcn) built for GunPoint-sized inputs (150
steps, 1 feature, 2 classes) with seeded random weights (speed does not depend on them); the inputs
are ``--samples`` random walks, the players 16 time segments, the baseline zero. captum is handed
xai's coalitions (KernelShap through its generator, Lime through ``perturb_func``, with LIME's
kernel as ``similarity_func`` and scikit-learn's Ridge), explains one sample at a time (it trains
one surrogate per sample) and is timed at each ``perturbations_per_eval`` of ``--per-eval``, its
fastest the reference. The results are checked equal before timing; xai and captum are timed in
turns ``--repeats`` times, and the table shows the median times and the median of the turns'
ratios with their range.

Usage: .venv/bin/python benchmarks/surrogates_speed.py [--model fcn] [--samples 16]
       [--coalitions 256] [--per-eval 32,256] [--repeats 3] [--threads 1] [--batch-size N]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch

import xaicore
from occlusion_speed import model_for, timed
from xaicore.models.loaded import LoadedModel

SEGMENTS = 16
SEGMENT = np.arange(150) * SEGMENTS // 150  # the segment of each step, as shap cuts them


def per_segment(values: np.ndarray) -> np.ndarray:
    """xai's values summed over each segment's steps (it spreads a player's value evenly)."""
    return np.stack([values[:, SEGMENT == s, 0].sum(1) for s in range(SEGMENTS)], 1)


def captum_runs(model: LoadedModel, X: np.ndarray, target: np.ndarray, coalitions: int, seed: int):
    """captum's KernelShap and Lime over the same 16 segments, handed xai's coalitions: one
    function of ``perturbations_per_eval`` each, explaining the samples one at a time."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    from xai_shap.surrogates import COSINE_WIDTH, kernel_coalitions, lime_coalitions

    x = torch.from_numpy(X)
    mask = torch.from_numpy(SEGMENT)[None, :, None]
    drawn = kernel_coalitions(SEGMENTS, coalitions, 1, seed)[0][0]
    full, empty = torch.ones(1, SEGMENTS, dtype=torch.long), torch.zeros(1, SEGMENTS, dtype=torch.long)

    def generator(self, original_inp, **kwargs):
        yield full
        yield empty
        yield from (row[None].long() for row in drawn)

    KernelShap.kernel_shap_perturb_generator = generator
    kernel = KernelShap(model.module)

    def similarity(original, perturbed, interpretable, **kwargs):
        present = float(interpretable.sum())
        d = 1 - math.sqrt(present / SEGMENTS)
        return torch.tensor([math.exp(-d ** 2 / (2 * COSINE_WIDTH ** 2))])

    lime_draws = lime_coalitions(SEGMENTS, coalitions, 1, seed)[0]
    state = {"rows": iter(())}
    lime = Lime(model.module, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity,
                perturb_func=lambda original, **kwargs: next(state["rows"])[None].long())

    def run_kernel(k: int) -> np.ndarray:
        return np.concatenate([kernel.attribute(x[i:i + 1], baselines=0.0, target=int(target[i]),
                                                feature_mask=mask, n_samples=coalitions + 2,
                                                perturbations_per_eval=k).numpy()
                               for i in range(len(x))])

    def run_lime(k: int) -> np.ndarray:
        out = []
        for i in range(len(x)):
            state["rows"] = iter(lime_draws)
            out.append(lime.attribute(x[i:i + 1], baselines=0.0, target=int(target[i]),
                                      feature_mask=mask, n_samples=coalitions,
                                      perturbations_per_eval=k).numpy())
        return np.concatenate(out)

    return {"kernel-shap": run_kernel, "lime": run_lime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--coalitions", type=int, default=256)
    parser.add_argument("--per-eval", default="32,256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="xai's rows per pass "
                        "(default: pass_rows)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    per_eval = [int(k) for k in args.per_eval.split(",")]
    model = model_for(args.model, 1)
    X = (np.random.default_rng(0).normal(size=(args.samples, 150, 1)).cumsum(1) * 0.3).astype(np.float32)
    target = model.logits(X).argmax(1)
    theirs = captum_runs(model, X, target, args.coalitions, 0)
    print(f"{args.model}, {args.samples} samples of 150 steps, {SEGMENTS} segments, "
          f"{args.coalitions} coalitions each, {args.threads} thread(s); {args.repeats} turns")
    for method, rtol in (("kernel-shap", 1e-3), ("lime", 1e-4)):  # captum's efficiency weight 1e6
        compare(method, rtol, model, X, {"n_segments": SEGMENTS, "n_samples": args.coalitions,
                                         "absent": "zero", "target": target,
                                         "batch_size": args.batch_size},
                theirs[method], per_eval, args.repeats)


def compare(method: str, rtol: float, model: LoadedModel, X: np.ndarray, options: dict,
            theirs: Callable[[int], np.ndarray], per_eval: list[int], repeats: int) -> None:
    """Check xai equals captum, then time them in turns and print one row."""
    ours = xaicore.explain(model, X, method=method, **options)
    first = np.searchsorted(SEGMENT, np.arange(SEGMENTS))  # captum gives each cell its player's
    expected = theirs(max(per_eval))[:, first, 0]
    gap = float(np.abs(per_segment(ours.attributions) - expected).max()
                / max(np.abs(expected).max(), 1e-12))
    if gap > rtol:
        raise SystemExit(f"{method}: xai and captum differ (max relative gap {gap:.2e})")
    mine: list[float] = []
    captum: dict[int, list[float]] = {k: [] for k in per_eval}
    for _ in range(repeats):
        mine.append(timed(lambda: xaicore.explain(model, X, method=method, **options)))
        for k in per_eval:
            captum[k].append(timed(lambda k=k: theirs(k)))
    fastest = min(captum, key=lambda k: float(np.median(captum[k])))
    ratios = np.asarray(mine) / np.asarray(captum[fastest])
    print(f"{method:<12} xai {np.median(mine):7.3f} s   captum {np.median(captum[fastest]):7.3f} s "
          f"(perturbations_per_eval={fastest})   ratio {np.median(ratios):.2f}x "
          f"(turns {ratios.min():.2f}-{ratios.max():.2f})", flush=True)

if __name__ == "__main__":
    main()
