"""Images: ``H x W`` pixels of ``C`` channels, travelling flattened as ``[sample, H*W, C]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.plugin import Dataset, LoadedModel, XaiError, as_background, build_network

from .blur import default_sigma, gaussian_blur
from .imputation import impute_pixels
from .modules import ImageModule

BASELINES = ("zero", "mean", "blurred")
SUBSTRATES = ("mean", "blurred")


class ImageModality:
    """Images as row-major pixels ``[sample, pixel, channel]`` (no padding: every image of a model
    has its ``height x width``), standardised inside the model with the train split's per-channel
    mean and std; networks take ``[batch, channel, height, width]``. Gradient methods attribute
    at the pixels; Grad-CAM maps a Conv2d layer's ``[h, w]`` grid onto them."""

    name = "images"
    description = "Images [sample, channel, height, width]"
    options = ()
    axes = ("sample", "pixel", "channel")
    masks_padding = False
    baselines = BASELINES
    substrates = SUBSTRATES
    views = ("overlay", "heatmap", "compare")
    #: spatial axes of the kind's layers (Grad-CAM reads Conv2d maps)
    spatial_dims = 2
    #: pixel values lie on a continuous scale: metrics may add noise to them (infidelity)
    continuous = True

    def build(self, cls: type, dataset: Dataset, name: str, params: dict) -> LoadedModel:
        """A new network for the dataset's images, standardised by the train split's channels."""
        height, width = dataset.info.get("height"), dataset.info.get("width")
        if not isinstance(height, int) or not isinstance(width, int):
            raise XaiError(f"model {name!r} reads images, but dataset {dataset.name!r} holds "
                           f"{dataset.n_features}-feature series; train it on an image dataset")
        network = build_network(cls, name, dataset.n_features, height, width, dataset.n_classes, **params)
        X = dataset.train.X
        return image_model(network, height, width, name=name, class_names=dataset.class_names,
                           feature_names=dataset.feature_names, mean=X.mean(axis=(0, 1)),
                           std=X.std(axis=(0, 1)),
                           hyperparameters=dict(getattr(network, "params", None) or params),
                           dataset=dataset.name)

    def checkpoint_entries(self, model: LoadedModel, dataset: Dataset) -> dict[str, Any]:
        assert model.normalisation is not None  # build always normalises
        height, width = model.image_size
        return {"height": height, "width": width,
                "normalisation": {key: [float(v) for v in getattr(model.normalisation, key).cpu()]
                                  for key in ("mean", "std")}}

    def restore(self, cls: type, checkpoint: dict, run_dir: Path | None) -> LoadedModel:
        name = checkpoint["model"]
        height, width, norm = (checkpoint.get(key) for key in ("height", "width", "normalisation"))
        if not isinstance(height, int) or not isinstance(width, int) or not isinstance(norm, dict):
            raise XaiError(f"the checkpoint of image model {name!r} lacks its 'height', 'width' or "
                           f"'normalisation' (the train split's per-channel mean and std)")
        network = build_network(cls, name, len(checkpoint["feature_names"]), height, width,
                                len(checkpoint["class_names"]), **checkpoint["hyperparameters"],
                                refusal=f"the checkpoint's hyperparameters do not fit model {name!r}")
        return image_model(network, height, width, name=name, class_names=checkpoint["class_names"],
                           feature_names=checkpoint["feature_names"], mean=norm.get("mean"),
                           std=norm.get("std"), hyperparameters=checkpoint["hyperparameters"],
                           dataset=(checkpoint.get("dataset") or {}).get("name", ""))

    def check_inputs(self, model: LoadedModel, inputs: Any) -> np.ndarray:
        """Images as float32 ``[sample, H*W, channel]``. The model's channels C and size H x W
        decide the layout of an array: ``[n, C, H, W]`` (torch's), ``[n, H, W, C]`` (channels
        last, read when its shape is not also channels first), ``[n, H, W]`` (one channel) or the
        flattened ``[n, H*W, C]``; anything else, or a NaN or infinite pixel, is refused."""
        height, width = model.image_size
        channels = model.n_features
        what = f"inputs for image model {model.name!r}"
        if hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu().numpy()
        try:
            X = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError):
            raise XaiError(f"{what} must be an array of images [n, {channels}, {height}, {width}]") from None
        shape = X.shape[1:]
        if X.ndim == 4 and shape == (channels, height, width):
            X = X.transpose(0, 2, 3, 1)
        elif X.ndim == 4 and shape == (height, width, channels):
            pass
        elif X.ndim == 3 and shape == (height, width) and channels == 1:
            X = X[..., None]
        elif not (X.ndim == 3 and shape == (height * width, channels)):
            raise XaiError(f"{what} must be {channels}-channel {height}x{width} images [n, {channels}, "
                           f"{height}, {width}] (or [n, {height}, {width}, {channels}]); got shape {X.shape}")
        if len(X) == 0:
            raise XaiError(f"{what} hold no images")
        X = np.ascontiguousarray(X.reshape(len(X), height * width, channels))
        if not np.isfinite(X).all():
            i = int(np.argmin(np.isfinite(X).all(axis=(1, 2))))
            raise XaiError(f"{what}: image {i} has a NaN or infinite pixel")
        return X

    def differentiable(self, model: LoadedModel, inputs: torch.Tensor) -> None:
        return None  # gradients are taken at the pixels themselves

    def baseline(self, kind: str, model: LoadedModel, inputs: torch.Tensor, *, background: Any = None,
                 blur_sigma: float | None = None, method: str = "baseline", **options: Any) -> torch.Tensor:
        """Black (zero), the mean train image (from ``background``) or each image blurred over
        its rows and columns (``blur_sigma`` pixels, default a tenth of the shorter side)."""
        if kind == "zero":
            return torch.zeros_like(inputs)
        if kind == "mean":
            bg = as_background(background, inputs, f"{method} with baseline 'mean'")
            return bg.mean(0, keepdim=True).expand_as(inputs).contiguous()
        if kind == "blurred":
            height, width = model.image_size
            sigma = default_sigma(height, width) if blur_sigma is None else blur_sigma
            return gaussian_blur(inputs, height, width, sigma)
        raise XaiError(f"{method}: unknown baseline {kind!r} for images; choose one of "
                       f"{', '.join(BASELINES)}")

    def substrate(self, kind: str, model: LoadedModel, inputs: np.ndarray, *, sigma: float | None = None,
                  **options: Any) -> np.ndarray:
        """Removed pixels become the train split's per-channel mean, or the image blurred."""
        if kind == "mean":
            assert model.normalisation is not None  # every image model keeps its train statistics
            mean = model.normalisation.mean.detach().cpu().numpy().reshape(-1)
            return np.broadcast_to(mean.astype(np.float32), inputs.shape).copy()
        if kind == "blurred":
            height, width = model.image_size
            blurred = gaussian_blur(torch.from_numpy(np.asarray(inputs, np.float32)), height, width,
                                    default_sigma(height, width) if sigma is None else sigma)
            return blurred.numpy()
        raise XaiError(f"substrate must be one of {', '.join(SUBSTRATES)} for images, not {kind!r}")

    def impute(self, model: LoadedModel, inputs: torch.Tensor, removed: torch.Tensor,
               fallback: torch.Tensor) -> torch.Tensor:
        """Removed pixels as ROAD imputes them: each the weighted mean of its eight neighbours,
        solved over every removed pixel of an image channel at once (``imputation.py``)."""
        height, width = model.image_size
        filled = impute_pixels(inputs.detach().cpu().numpy(), removed.cpu().numpy(), height, width,
                               fallback.detach().cpu().numpy())
        return torch.from_numpy(filled).to(inputs.device)


def image_model(network: nn.Module, height: int, width: int, **info: Any) -> LoadedModel:
    """An image network as a Model: flattened pixels in, standardised and reshaped for it."""
    model = LoadedModel(network, seq_len=height * width, **info)
    assert model.normalisation is not None  # image models always keep the train statistics
    model.module = ImageModule(model.normalisation, network, height, width)
    model.module.eval()
    model.image_size = (height, width)
    return model
