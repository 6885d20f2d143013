"""The public ``xaicore.explain`` path against captum's same methods and plain passes, side by side.

Every case explains the class the model predicts for a GunPoint-shaped batch ([64, 150, 1]) of
the hybrid: ``xaicore.explain(model, X, method, target="predicted")`` (numpy in, ``Explanation``
out), captum's ``Saliency``, ``InputXGradient``, ``LayerGradCam`` (on the same layer, upsampled as
ours) and ``IntegratedGradients`` (50 steps, at several ``internal_batch_size`` settings), each with
the forward pass a captum user needs first to find the predicted class, and the plain pass: one
forward and the input gradient of the summed target logits. Cases are interleaved within each
repetition and medians are taken, so machine noise hits all alike.

Targets: saliency, gradcam and input-x-gradient through ``xaicore.explain`` at most 1.1x
one plain pass; integrated gradients (50 steps) at most 1.0x captum's best setting.

Usage: .venv/bin/python benchmarks/explainer_speed.py [--repeats 7] [--batch 64] [--threads N]
Untrained weights (timing does not depend on training).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import xaicore
from xaicore.models.devices import backward_safe
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

N_STEPS = 50
IG_BATCHES = (None, 128, 256, 512, 1024)  # captum's internal_batch_size settings (None: all 3200 rows)


def hybrid(seq_len: int, device: torch.device) -> LoadedModel:
    torch.manual_seed(0)
    network = registry.get_model("cnn-lstm-attention")(1, seq_len, 2)
    return LoadedModel(network, name="cnn-lstm-attention", class_names=["gun", "point"],
                       feature_names=["value"], seq_len=seq_len, mean=[0.0], std=[1.0]).to(device)


def plain_pass(model: LoadedModel, x: torch.Tensor) -> None:
    """One forward and one backward (input gradient of the summed predicted-class logits)."""
    with torch.enable_grad(), backward_safe(model):
        leaf = x.detach().requires_grad_(True)
        logits = model.module(leaf)
        torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), leaf)


def captum_cases(model: LoadedModel, x: torch.Tensor) -> dict[str, tuple[Callable, int]]:
    """Captum's methods as a captum user calls them: a forward for the predicted class, then
    ``attribute`` (with the model in train mode for the LSTM's backward, as ours)."""
    from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    def predicted():
        with torch.no_grad():
            return model.module(x).argmax(1)

    def run(make):
        def call():
            target = predicted()
            with torch.enable_grad(), backward_safe(model):
                make(target)
        return call

    cases = {
        "saliency [captum]": (run(lambda t: Saliency(model.module).attribute(
            x, target=t, abs=True)), 1),
        "input-x-gradient [captum]": (run(lambda t: InputXGradient(model.module).attribute(
            x, target=t)), 1),
        "gradcam [captum]": (run(lambda t: LayerAttribution.interpolate(
            LayerGradCam(model.module, model.gradcam_layer()).attribute(
                x, target=t, relu_attributions=True), (x.shape[1],), "linear")), 1),
    }
    for size in IG_BATCHES:
        cases[f"integrated-gradients [captum internal_batch_size={size}]"] = (
            run(lambda t, size=size: IntegratedGradients(model.module).attribute(
                x, baselines=torch.zeros_like(x), target=t, n_steps=N_STEPS,
                internal_batch_size=size, return_convergence_delta=True)), N_STEPS)
    return cases


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # untrained weights: IG deltas are not the point
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = hybrid(args.length, device)
    X = np.random.default_rng(0).standard_normal((args.batch, args.length, 1)).astype(np.float32)
    x = torch.from_numpy(X).to(device)

    cases: dict[str, tuple[Callable[[], object], int]] = {"plain": (lambda: plain_pass(model, x), 1)}
    for method, options, passes in (("saliency", {}, 1), ("input-x-gradient", {}, 1),
                                    ("gradcam", {}, 1), ("gradcam++", {}, 1), ("cam", {}, 1),
                                    ("attention", {}, 1),
                                    ("integrated-gradients", {"n_steps": N_STEPS}, N_STEPS),
                                    ("smoothgrad", {"n_samples": 25}, 25)):
        cases[f"{method} [xaicore.explain]"] = (
            lambda method=method, options=options: xaicore.explain(model, X, method=method,
                                                                   **options), passes)
    cases.update(captum_cases(model, x))
    for fn, _ in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (fn, _) in cases.items():
            times[name].append(timed(fn, device))
    median = {name: statistics.median(values) for name, values in times.items()}
    plain = median["plain"]
    print(f"device {device.type}, torch threads {torch.get_num_threads()}, batch "
          f"{args.batch}x{args.length}x1, {args.repeats} interleaved repeats, medians")
    print(f"plain forward+backward: {plain * 1000:.1f} ms")
    print(f"{'case':<62}{'median ms':>10}{'passes':>8}{'x plain':>9}")
    for name, (_, passes) in cases.items():
        if name != "plain":
            print(f"{name:<62}{median[name] * 1000:>10.1f}{passes:>8}"
                  f"{median[name] / (plain * passes):>9.2f}")
    captum_ig = min(v for k, v in median.items() if k.startswith("integrated-gradients [captum"))
    print(f"integrated-gradients: xaicore.explain / captum's best setting = "
          f"{median['integrated-gradients [xaicore.explain]'] / captum_ig:.2f}")


if __name__ == "__main__":
    main()
