"""xai's ``window-occlusion`` and ``feature-ablation`` beside captum's ``Occlusion`` and
``FeatureAblation`` on the same model, inputs, windows, masks and baselines, in one run.

The model is a registered network (``--model``: the demo's cnn-lstm-attention, or fcn) built for
GunPoint-sized inputs (150 steps, 1 feature, 2 classes) with its default parameters and seeded
random weights (speed does not depend on the weights); the inputs are ``--samples`` random walks.
captum is timed at each ``perturbations_per_eval`` of ``--per-eval`` and its fastest is the
reference; xai and captum are timed in turns ``--repeats`` times (a shared machine's load moves
from minute to minute): the table shows the median times and the median of each turn's ratio, with
the range of the turns' ratios. The results are checked equal before timing.
Cases: occlusion windows of 10 steps every 5 (the default), and of 15 every 5 steps x 2 of 3
features every 1 (on a 3-feature model); ablation of every cell alone (the default), and of 10 time
segments x feature groups ``0,1;2`` (3 features).

Usage: .venv/bin/python benchmarks/occlusion_speed.py [--model cnn-lstm-attention] [--samples 32]
       [--per-eval 1,8,32,128,1024] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import xaicore
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry


def model_for(name: str, n_features: int) -> LoadedModel:
    torch.manual_seed(0)
    network = registry.get_model(name)(n_features, 150, 2)
    model = LoadedModel(network, name=name, class_names=["1", "2"],
                        feature_names=[f"f{i}" for i in range(n_features)], seq_len=150,
                        mean=[0.0] * n_features, std=[1.0] * n_features)
    model.module.eval()
    return model


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def case(label: str, model: LoadedModel, X: np.ndarray, method: str, options: dict,
         captum_call: Callable[[int], torch.Tensor], per_eval: list[int], repeats: int) -> None:
    """Check xai equals captum, then time them in turns (xai, captum at each size, again), so
    both see the same load of a shared machine; captum's fastest size by its median time."""
    ours = xaicore.explain(model, X, method=method, **options)
    theirs = captum_call(max(per_eval)).detach().numpy()
    gap = float(np.abs(ours.attributions - theirs).max() / max(np.abs(theirs).max(), 1e-12))
    if gap > 1e-4:
        raise SystemExit(f"{label}: xai and captum differ (max relative gap {gap:.2e})")
    mine, captum = [], {k: [] for k in per_eval}
    for _ in range(repeats):
        mine.append(timed(lambda: xaicore.explain(model, X, method=method, **options)))
        for k in per_eval:
            captum[k].append(timed(lambda k=k: captum_call(k)))
    fastest = min(captum, key=lambda k: float(np.median(captum[k])))
    ratios = np.asarray(mine) / np.asarray(captum[fastest])  # each turn's, under one load
    print(f"{label:<46} xai {np.median(mine):7.3f} s   captum {np.median(captum[fastest]):7.3f} s "
          f"(perturbations_per_eval={fastest})   ratio {np.median(ratios):.2f}x "
          f"(turns {ratios.min():.2f}-{ratios.max():.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn-lstm-attention")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--per-eval", default="1,8,32,128,1024")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    per_eval = [int(k) for k in args.per_eval.split(",")]
    rng = np.random.default_rng(0)
    print(f"{args.model}, {args.samples} samples of 150 steps, {args.threads} thread(s); "
          f"{args.repeats} turns")
    for features in (1, 3):
        X = (rng.normal(size=(args.samples, 150, features)).cumsum(1) * 0.3).astype(np.float32)
        cases(model_for(args.model, features), X, per_eval, args.repeats)


def cases(model: LoadedModel, X: np.ndarray, per_eval: list[int], repeats: int) -> None:
    """The occlusion case and the ablation case of one model (1 feature: the defaults; 3: windows
    and groups over features)."""
    from captum.attr import FeatureAblation, Occlusion

    features = X.shape[2]
    x = torch.from_numpy(X)
    target = torch.from_numpy(model.logits(X).argmax(1))
    zero = torch.zeros_like(x)
    window, feature_window = (10, 1) if features == 1 else (15, 2)
    occlusion = Occlusion(model.module)
    case(f"window-occlusion {window}x{feature_window} every 5x1, {features} feature(s)", model, X,
         "window-occlusion", {"window": window, "feature_window": feature_window, "stride": 5,
                              "target": target.numpy()},
         lambda k: occlusion.attribute(x, sliding_window_shapes=(window, feature_window),
                                       strides=(5, 1), baselines=zero, target=target,
                                       perturbations_per_eval=k), per_eval, repeats)
    if features == 1:
        options: dict = {}
        mask = torch.arange(150)[:, None]
        label = "feature-ablation, every cell alone"
    else:
        options = {"segments": 10, "groups": "0,1;2"}
        mask = (torch.arange(150) * 10 // 150)[:, None] * 2 + torch.tensor([0, 0, 1])[None]
        label = "feature-ablation, 10 segments x groups 0,1;2"
    ablation = FeatureAblation(model.module)
    case(label, model, X, "feature-ablation", {**options, "target": target.numpy()},
         lambda k: ablation.attribute(x, baselines=zero, target=target,
                                      feature_mask=mask[None].expand_as(x), perturbations_per_eval=k),
         per_eval, repeats)

if __name__ == "__main__":
    main()
