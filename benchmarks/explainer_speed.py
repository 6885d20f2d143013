"""Time of each gradient / CAM / attention explainer on the hybrid, as a ratio to plain passes.

The reference is one plain forward+backward of the same batch: the forward pass and the gradient
of the summed target logits with respect to the input (what saliency needs, nothing more).
Integrated gradients is compared with ``n_steps`` such passes. Methods and references are
interleaved within each repetition and medians are taken, so machine noise hits all alike.
``attribute`` times the explainer's own work; ``explain`` adds what every method pays in
``BaseExplainer.explain`` (building the Explanation; explainers hand back the logits of their own
forward pass, so no extra forward is needed).

Usage: .venv/bin/python benchmarks/explainer_speed.py [--repeats 7] [--batch 64] [--threads N]
GunPoint-shaped input [64, 150, 1]; untrained weights (timing does not depend on training).

Measured 2026-11-23 on the 2-core dev machine while it was quiet (2 threads, 7 repeats; plain
pass 19.6 ms), attribute / explain ratios: saliency 0.92 / 0.98, input-x-gradient 0.91 / 0.95,
gradcam 0.88 / 0.90, gradcam++ 0.90 / 0.93, cam 0.36 / 0.35, attention 0.34 / 0.34,
integrated-gradients (50 steps, vs 50 passes) 1.05 / 1.07, smoothgrad (25 vs 25) 1.03 / 1.05.
Under load (1 thread) the same ordering holds with +-20% noise. Captum's own IntegratedGradients
was 2.3-3.1x (its gradient of torch.unbind(outputs) over 3200 rows), hence xai_captum.passes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from xaicore import registry
from xaicore.model import LoadedModel, backward_safe

N_STEPS = 50
METHODS = {  # name: (options, number of plain passes it is compared with)
    "saliency": ({}, 1),
    "input-x-gradient": ({}, 1),
    "gradcam": ({}, 1),
    "gradcam++": ({}, 1),
    "cam": ({}, 1),
    "attention": ({}, 1),
    "integrated-gradients": ({"n_steps": N_STEPS}, N_STEPS),
    "smoothgrad": ({"n_samples": 25}, 25),
}


def hybrid(seq_len: int, device: torch.device) -> LoadedModel:
    torch.manual_seed(0)
    network = registry.get_model("cnn-lstm-attention")(1, seq_len, 2)
    return LoadedModel(network, name="cnn-lstm-attention", class_names=["gun", "point"],
                       feature_names=["value"], seq_len=seq_len, mean=[0.0], std=[1.0]).to(device)


def plain_pass(model: LoadedModel, x: torch.Tensor, target: torch.Tensor) -> None:
    """One forward and one backward (input gradient of the summed target logits)."""
    with torch.enable_grad(), backward_safe(model):
        leaf = x.detach().requires_grad_(True)
        score = model.module(leaf).gather(1, target[:, None]).sum()
        torch.autograd.grad(score, leaf)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ig-batch", default="", help="also time IG with these internal_batch_size "
                        "values, comma separated")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = hybrid(args.length, device)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((args.batch, args.length, 1)).astype(np.float32)).to(device)
    target = model.module(x).argmax(1).detach()

    cases: dict[str, tuple[Callable[[], object], int]] = {"plain": (lambda: plain_pass(model, x, target), 1)}
    variants = [(m, dict(METHODS[m][0]), METHODS[m][1]) for m in args.methods.split(",") if m]
    variants += [("integrated-gradients", {"n_steps": N_STEPS, "internal_batch_size": int(b)}, N_STEPS)
                 for b in args.ig_batch.split(",") if b]
    for method, options, passes in variants:
        explainer = registry.get_explainer(method)
        label = method + "".join(f" {k}={v}" for k, v in options.items() if k != "n_steps")

        def attribute(explainer=explainer, options=options):
            opts = explainer.resolve_options(options)
            with torch.enable_grad(), backward_safe(model):
                explainer.attribute(model, x, target, **opts)

        cases[f"{label} [attribute]"] = (attribute, passes)
        cases[f"{label} [explain]"] = (
            lambda explainer=explainer, options=options: explainer.explain(model, x, target, **options),
            passes)
    for fn, _ in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (fn, _) in cases.items():
            times[name].append(timed(fn, device))
    plain = statistics.median(times["plain"])
    print(f"device {device.type}, torch threads {torch.get_num_threads()}, batch "
          f"{args.batch}x{args.length}x1, {args.repeats} interleaved repeats, medians")
    print(f"plain forward+backward: {plain * 1000:.1f} ms")
    print(f"{'case':<58}{'median ms':>10}{'passes':>8}{'ratio':>8}")
    for name, (_, passes) in cases.items():
        if name == "plain":
            continue
        median = statistics.median(times[name])
        print(f"{name:<58}{median * 1000:>10.1f}{passes:>8}{median / (plain * passes):>8.2f}")


if __name__ == "__main__":
    main()
