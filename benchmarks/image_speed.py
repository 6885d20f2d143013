"""Grad-CAM and integrated gradients on images: ``xaicore.explain`` against captum, pytorch-grad-cam
and a plain forward+backward, side by side on one ResNet-18.

    .venv/bin/python benchmarks/image_speed.py           # pytorch-grad-cam is not installed: skipped
    .venv-bench/bin/python benchmarks/image_speed.py     # every part (``make bench-env``)
    .venv/bin/python benchmarks/image_speed.py --repeats 7 --ig-images 32 --threads 2

The network is plugins/xai-image's ``ResNet18`` (``image-resnet18``: small stem, ``--channels`` 64
by default), randomly initialised (seeded; BatchNorm in eval mode with seeded running statistics),
on a batch of ``--batch`` seeded random images of 3 x ``--size`` x ``--size``. xai wraps it with
an identity standardisation (mean 0, std 1), so xai's model and the network the others are given
compute the same logits from the same images. Every method explains the same classes (the ones
the network predicts, found once before timing; pytorch-grad-cam as ``ClassifierOutputTarget``).

Grad-CAM, on the network's Grad-CAM layer ``layer4.1.conv2`` (an 8x8 map for 64x64 images):
  xai       ``xaicore.explain(model, X, method="gradcam", target=classes)`` (numpy in)
  captum    ``LayerAttribution.interpolate(LayerGradCam(...).attribute(..., relu_attributions=True),
            (H, W), "bilinear")``, compared with xai's maps (the same ReLU and upsampling)
  pytorch-grad-cam  ``GradCAM(network, [layer])(x, targets)``: ReLU, each map min-max scaled,
            resized by cv2 (bilinear) and min-max scaled again; compared with xai's
            ``normalize="minmax"`` maps (min-max of the upsampled map: bilinear upsampling is
            affine, so both scalings give the same map up to pytorch-grad-cam's 1e-7 guard)
  plain     one forward and the input gradient of the summed target logits.
Integrated gradients (zero baseline, the first ``--ig-images`` images): xai at ``--ig-steps``
Gauss-Legendre steps (captum's default rule; compared with captum's), at its default rows per
pass and at ``--xai-ig-batches``, and at ``n_steps="auto"``
(Clenshaw-Curtis raised per image until the completeness gap is under 1%), against captum's
``IntegratedGradients`` at several ``internal_batch_size`` settings, with its convergence delta
(xai reports each image's completeness gap); ratios against its best.

Cases are interleaved within each repetition after a warm-up, and medians are taken, so machine
noise hits all alike. Goals: xai's Grad-CAM at most 1.1x the plain pass and 1.0x pytorch-grad-cam
with maps equal to 1e-5; integrated gradients at most 1.0x captum's best setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

import xaicore
from xai_image.modality import image_model
from xai_image.networks import ResNet18

LAYER = "layer4.1.conv2"
CLASSES = 10


def seeded_norms(network: nn.Module) -> nn.Module:
    """Eval mode, with BatchNorm's running statistics and affine parameters drawn from the torch
    seed, so BatchNorm is not the identity."""
    for norm in network.modules():
        if isinstance(norm, nn.BatchNorm2d):
            assert norm.running_mean is not None and norm.running_var is not None
            norm.running_mean.uniform_(-0.1, 0.1)
            norm.running_var.uniform_(0.5, 1.5)
            norm.weight.data.uniform_(0.5, 1.5)
            norm.bias.data.uniform_(-0.1, 0.1)
    return network.eval()


def resnet(channels: int, size: int) -> nn.Module:
    """xai's ResNet18 (small stem) for ``size x size`` RGB images, seeded."""
    torch.manual_seed(0)
    return seeded_norms(ResNet18(3, size, size, CLASSES, channels=channels))


def plain_pass(network: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> None:
    """One forward and the input gradient of the summed target logits."""
    leaf = x.detach().requires_grad_(True)
    torch.autograd.grad(network(leaf).gather(1, classes[:, None]).sum(), leaf)


def worst_relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Per image: the largest difference relative to the image's largest value (theirs)."""
    ours, theirs = ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1)
    scale = np.maximum(np.abs(theirs).max(1), 1e-30)
    return float((np.abs(ours - theirs).max(1) / scale).max())


def report_check(name: str, worst: float, goal: float) -> None:
    print(f"  {name}: {worst:.1e}{'' if worst <= goal else f'  > {goal:g}!'}")


def grad_cam_package() -> type | None:
    """pytorch-grad-cam's ``GradCAM`` and its target, or None with a message when not installed."""
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError:
        print("pytorch-grad-cam is not installed here: its part is skipped (run this script with "
              ".venv-bench/bin/python after `make bench-env`)")
        return None
    return GradCAM


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def medians(cases: dict[str, Callable[[], object]], repeats: int,
            warm_up: tuple[str, ...] | None = None) -> dict[str, float]:
    """Median seconds of each case after a warm-up (each case, or the cases named in
    ``warm_up``), in ``repeats`` interleaved rounds."""
    for name, fn in cases.items():
        if warm_up is None or name in warm_up:
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ig-images", type=int, default=4,
                        help="images integrated gradients explains (the first of the batch; 0: skip it)")
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--ig-repeats", type=int, default=3)
    parser.add_argument("--xai-ig-batches", default="32",
                        help="internal_batch_size settings xai is also timed at (beside its default)")
    parser.add_argument("--ig-batches", default="32,64,128",
                        help="captum's internal_batch_size settings tried (comma-separated)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # random weights: IG's gaps are not the point
    network = resnet(args.channels, args.size)
    model = image_model(network, args.size, args.size, name="image-resnet18",
                        class_names=[str(c) for c in range(CLASSES)],
                        feature_names=["red", "green", "blue"], mean=[0.0] * 3, std=[1.0] * 3,
                        hyperparameters=getattr(network, "params", {}))
    X = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size),
                                                 dtype=np.float32)
    x = torch.from_numpy(X)
    with torch.no_grad():
        classes = network(x).argmax(1)
    target = classes.numpy()
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; ResNet18 channels={args.channels} (small "
          f"stem), batch {args.batch}x3x{args.size}x{args.size}, Grad-CAM on {LAYER}")
    grad_cam(model, network, X, x, classes, target, args.repeats)
    if args.ig_images > 0:
        integrated_gradients(model, network, X[:args.ig_images], x[:args.ig_images],
                             classes[:args.ig_images], args)


def grad_cam(model, network: nn.Module, X: np.ndarray, x: torch.Tensor, classes: torch.Tensor,
             target: np.ndarray, repeats: int) -> None:
    """Grad-CAM's table and checks."""
    from captum.attr import LayerAttribution, LayerGradCam

    layer = network.get_submodule(LAYER)
    size = X.shape[2:]

    def xai(normalize: str = "none") -> np.ndarray:
        out = xaicore.explain(model, X, method="gradcam", target=target, normalize=normalize)
        return out.attributions[..., 0].reshape(len(X), *size)

    def captum() -> np.ndarray:
        maps = LayerGradCam(network, layer).attribute(x, target=classes, relu_attributions=True)
        return LayerAttribution.interpolate(maps, size, "bilinear")[:, 0].detach().numpy()

    cases: dict[str, Callable[[], object]] = {
        "plain forward+backward": lambda: plain_pass(network, x, classes),
        "gradcam [xaicore.explain]": xai,
        "gradcam [captum LayerGradCam + interpolate]": captum,
    }
    GradCAM = grad_cam_package()
    if GradCAM is not None:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(c)) for c in target]

        def theirs() -> np.ndarray:
            with GradCAM(model=network, target_layers=[layer]) as cam:
                return cam(input_tensor=x, targets=targets)

        cases["gradcam [pytorch-grad-cam]"] = theirs
        cases["gradcam minmax [xaicore.explain]"] = lambda: xai("minmax")

    print("\nGrad-CAM, worst difference per map relative to the map's largest value:")
    report_check("xai vs captum (ReLU, bilinear)", worst_relative(xai(), captum()), 1e-5)
    if GradCAM is not None:
        worst = float(np.abs(xai("minmax") - theirs()).max())
        report_check("xai normalize=minmax vs pytorch-grad-cam (largest difference)", worst, 1e-5)
    median = medians(cases, repeats)
    plain = median["plain forward+backward"]
    print(f"\n{'case':<46}{'median ms':>10}{'x plain':>9}")
    for name, seconds in median.items():
        print(f"{name:<46}{seconds * 1000:>10.1f}{seconds / plain:>9.2f}")
    ours = median["gradcam [xaicore.explain]"]
    print(f"gradcam: xai / plain = {ours / plain:.2f} (goal <= 1.1), xai / captum = "
          f"{ours / median['gradcam [captum LayerGradCam + interpolate]']:.2f}")
    if GradCAM is not None:
        print(f"gradcam: xai minmax / pytorch-grad-cam = "
              f"{median['gradcam minmax [xaicore.explain]'] / median['gradcam [pytorch-grad-cam]']:.2f}"
              f" (goal <= 1.0)")


def integrated_gradients(model, network: nn.Module, X: np.ndarray, x: torch.Tensor,
                         classes: torch.Tensor, args: argparse.Namespace) -> None:
    """Integrated gradients' table and checks."""
    from captum.attr import IntegratedGradients

    target = classes.numpy()
    steps = args.ig_steps
    taken: list[float] = []

    def xai_fixed(internal: int | None = None) -> np.ndarray:
        out = xaicore.explain(model, X, method="integrated-gradients", target=target, n_steps=steps,
                              integration_method="gausslegendre", baseline="zero",
                              internal_batch_size=internal)
        return out.attributions.reshape(len(X), *X.shape[2:], 3).transpose(0, 3, 1, 2)

    def xai_auto() -> None:
        out = xaicore.explain(model, X, method="integrated-gradients", target=target, baseline="zero")
        taken.append(float(np.mean(out.extras["n_steps"])))

    def captum(internal: int | None) -> np.ndarray:
        attr = IntegratedGradients(network).attribute(x, baselines=torch.zeros_like(x), target=classes,
                                                     n_steps=steps, internal_batch_size=internal,
                                                     return_convergence_delta=True)[0]
        return attr.detach().numpy()

    settings = [int(b) for b in args.ig_batches.split(",")]
    cases: dict[str, Callable[[], object]] = {
        "plain forward+backward": lambda: plain_pass(network, x, classes),
        f"integrated-gradients {steps} steps [xaicore.explain]": xai_fixed,
        "integrated-gradients auto [xaicore.explain]": xai_auto,
    }
    for internal in [int(b) for b in args.xai_ig_batches.split(",") if b]:
        cases[f"integrated-gradients {steps} steps [xaicore.explain internal_batch_size={internal}]"] = (
            partial(xai_fixed, internal))
    for internal in settings:
        cases[f"integrated-gradients {steps} steps [captum internal_batch_size={internal}]"] = (
            partial(captum, internal))
    print(f"\nIntegrated gradients on {len(X)} images, worst difference per image relative to its "
          f"largest attribution:")
    report_check(f"xai vs captum ({steps} steps gausslegendre)", worst_relative(xai_fixed(),
                                                                                captum(settings[0])),
                 1e-4)
    # the check above warmed xai's and captum's passes up; long cases are not repeated for it
    median = medians(cases, args.ig_repeats, warm_up=("plain forward+backward",))
    plain = median["plain forward+backward"]
    points = statistics.median(taken)
    passes = {name: steps for name in median}
    passes["plain forward+backward"] = 1
    passes["integrated-gradients auto [xaicore.explain]"] = points
    print(f"\n{'case':<72}{'median s':>9}{'points':>8}{'x plain per point':>19}")
    for name, seconds in median.items():
        print(f"{name:<72}{seconds:>9.2f}{passes[name]:>8.4g}{seconds / (plain * passes[name]):>19.2f}")
    best = min(v for k, v in median.items() if "[captum" in k)
    fixed = median[f"integrated-gradients {steps} steps [xaicore.explain]"]
    auto = median["integrated-gradients auto [xaicore.explain]"]
    tuned = min(v for k, v in median.items() if "[xaicore.explain" in k and "auto" not in k)
    print(f"integrated-gradients: xai {steps} steps / captum's best = {fixed / best:.2f} (goal <= 1.0), "
          f"xai's best setting / captum's best = {tuned / best:.2f}; "
          f"xai auto ({points:.4g} points per image on average) / captum's best {steps} steps = "
          f"{auto / best:.2f}")


if __name__ == "__main__":
    main()
