"""A torchvision model through xai, and torchvision's ResNet-18 weights in xai's own ResNet18.

    .venv-bench/bin/python benchmarks/torchvision_check.py     # needs torchvision (``make bench-env``)

Not a test: the test environment's torch 2.13.0 has no importable torchvision. Checks, each printed
with its worst difference and failing the script (exit status 1) when off:

1. ``torchvision.models.resnet18(num_classes=10)`` (seeded; BatchNorm's running statistics and
   affine parameters seeded too, eval mode) wrapped for xai with ``image_model`` (the Python API;
   its Grad-CAM layer named) and explained by ``xaicore.explain`` with gradcam and
   integrated-gradients (each image for another class): attributions of the images' shape,
   finite, and integrated gradients' completeness gaps reported.
2. Its ``state_dict`` loads (strict) into xai's ``ResNet18(stem="imagenet", channels=64)``, whose
   logits equal torchvision's, and whose gradcam and integrated-gradients attributions through
   xai equal those of the torchvision model.
3. pytorch-grad-cam's ``GradCAM`` on torchvision's ``layer4[-1]`` (``layer4.1``, the last basic
   block: its README's choice for a ResNet) equals xai's gradcam with ``layer="layer4.1"`` and
   ``normalize="minmax"``.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import torch
from torch import nn

import xaicore
from image_speed import seeded_norms
from xai_image.modality import image_model
from xai_image.networks import ResNet18
from xaicore.plugin import LoadedModel

CLASSES = 10
FLOAT32_RTOL = 1e-5
failures: list[str] = []


def check(name: str, ours: np.ndarray, theirs: np.ndarray, rtol: float = FLOAT32_RTOL) -> None:
    """Worst difference relative to the largest value of ``theirs`` (the suite's float32 rule)."""
    worst = float(np.abs(ours - theirs).max() / max(float(np.abs(theirs).max()), 1e-30))
    ok = worst <= rtol and ours.shape == theirs.shape
    print(f"  {name}: worst difference / largest value {worst:.1e} ({'ok' if ok else f'> {rtol:g}!'})")
    if not ok:
        failures.append(name)


def wrapped(network: nn.Module, size: int, name: str, layer: str) -> LoadedModel:
    """An image network as an xai model: RGB ``size x size`` images, ImageNet's channel statistics."""
    network.modality = "images"  # type: ignore[assignment]  # the kind of input xai reads it as
    return image_model(network, size, size, name=name, class_names=[str(c) for c in range(CLASSES)],
                       feature_names=["red", "green", "blue"], mean=[0.485, 0.456, 0.406],
                       std=[0.229, 0.224, 0.225], gradcam_layer=layer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image side (layer4 is a 1/32 map)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # integrated gradients' gaps are printed below
    import torchvision

    torch.manual_seed(0)
    theirs = seeded_norms(torchvision.models.resnet18(num_classes=CLASSES))
    ours = ResNet18(3, args.size, args.size, CLASSES, stem="imagenet", channels=64)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; torchvision's resnet18 "
          f"state_dict ({len(theirs.state_dict())} tensors) loaded strictly into xai's "
          f"ResNet18(stem='imagenet', channels=64)")
    images = np.random.default_rng(0).random((args.images, 3, args.size, args.size), dtype=np.float32)
    x = torch.from_numpy(images)
    with torch.no_grad():
        check("logits, xai's ResNet18 vs torchvision's", ours(x).numpy(), theirs(x).numpy())

    tv_model = wrapped(theirs, args.size, "torchvision-resnet18", "layer4.1.conv2")
    xai_model = wrapped(ours, args.size, "image-resnet18", "layer4.1.conv2")
    classes = np.arange(args.images) % CLASSES  # every class, not only the predicted one
    print(f"\ntorchvision's resnet18 through xaicore.explain ({args.images} images "
          f"3x{args.size}x{args.size}, classes {classes.tolist()}):")
    for method, options in (("gradcam", {}), ("integrated-gradients", {"n_steps": 32})):
        tv = xaicore.explain(tv_model, images, method=method, target=classes, **options)
        mine = xaicore.explain(xai_model, images, method=method, target=classes, **options)
        shape, finite = tv.attributions.shape, bool(np.isfinite(tv.attributions).all())
        print(f"  {method}: attributions {shape}, finite: {finite}")
        if shape != (args.images, args.size * args.size, 3) or not finite:
            failures.append(f"{method} on torchvision's resnet18")
        if method == "integrated-gradients":
            gap = (np.abs(np.asarray(tv.extras["convergence_delta"]))
                   / np.abs(np.asarray(tv.extras["output_difference"])))
            print(f"  integrated-gradients: completeness gap |delta| / |F(x) - F(0)|: largest "
                  f"{gap.max():.2%}, median {np.median(gap):.2%}")
        check(f"{method}, torchvision's model vs xai's ResNet18 with its weights", tv.attributions,
              mine.attributions, 1e-4 if method == "integrated-gradients" else FLOAT32_RTOL)

    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        print("pytorch-grad-cam is not installed: its check is skipped")
    else:
        explained = xaicore.explain(tv_model, images, method="gradcam", target=classes,
                                    layer="layer4.1", normalize="minmax")
        targets = [ClassifierOutputTarget(int(c)) for c in explained.targets]
        standardised = tv_model.normalisation(torch.from_numpy(
            images.transpose(0, 2, 3, 1).reshape(args.images, -1, 3))).reshape(
                args.images, args.size, args.size, 3).permute(0, 3, 1, 2)
        with GradCAM(model=theirs, target_layers=[theirs.get_submodule("layer4.1")]) as cam:
            maps = cam(input_tensor=standardised.contiguous(), targets=targets)
        print(f"\npytorch-grad-cam's GradCAM on torchvision's layer4[-1] ({maps.shape[1]}x"
              f"{maps.shape[2]} maps, the layer's {args.size // 32}x{args.size // 32} map resized):")
        check("xai gradcam layer='layer4.1' normalize='minmax' vs pytorch-grad-cam",
              explained.attributions[..., 0].reshape(maps.shape), maps)
    if failures:
        print(f"\nfailed: {'; '.join(failures)}")
        sys.exit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
