"""Images: ``H x W`` pixels of ``C`` channels, travelling flattened as ``[sample, H*W, C]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.plugin import (
    Dataset,
    InputSource,
    LoadedModel,
    XaiError,
    as_background,
    build_network,
)

from .arrays import SCALES
from .blur import default_sigma, gaussian_blur
from .datasets import image_spec
from .imported import LAYOUTS, adopt
from .imputation import impute_pixels
from .modules import ImageModule
from .players import UNITS, image_players
from .sources import open_images

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
    #: the players of perturbation games (shap, window-occlusion) and the options each takes
    player_units = UNITS
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
                           dataset=dataset.name, reading=dataset.info.get("reading"))

    def checkpoint_entries(self, model: LoadedModel, dataset: Dataset) -> dict[str, Any]:
        height, width = model.image_size
        reading = {} if model.image_reading is None else {"reading": model.image_reading}
        if model.normalisation is None:  # an imported network reads the pixels as they are
            return {"height": height, "width": width, **reading}
        return {"height": height, "width": width, **reading,
                "normalisation": {key: [float(v) for v in getattr(model.normalisation, key).cpu()]
                                  for key in ("mean", "std")}}

    def claims(self, dataset: Dataset) -> bool:
        """Whether ``dataset`` holds images (its info gives their height and width)."""
        return all(isinstance(dataset.info.get(key), int) for key in ("height", "width"))

    #: the layouts a user's network may take its images in (``xai import --layout``)
    layouts = LAYOUTS

    def adopt(self, network: nn.Module, facts: dict, info: dict[str, Any]) -> LoadedModel:
        """A user's network (``xai import``) as an image model (``imported.adopt``)."""
        return adopt(network, facts, **info)

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
                           dataset=(checkpoint.get("dataset") or {}).get("name", ""),
                           reading=checkpoint.get("reading"))

    def dataset_spec(self, path: Path, test: Path | None, columns: dict, seed: int, test_size: float,
                     data: dict) -> dict:
        """The ``images`` dataset of a folder per class or an ``.npz`` (``xai train --dataset
        ROOT --model image-cnn``): the model's kind decides that the file holds images."""
        return image_spec(path, test, columns, seed, test_size, data)

    def open_input(self, model: LoadedModel, path: Path, columns: dict) -> InputSource:
        """A folder of images, an image file or an array file of images, read in row ranges by
        the run's rule (``sources.open_images``)."""
        return open_images(model, path, columns)

    def check_inputs(self, model: LoadedModel, inputs: Any) -> np.ndarray:
        """Images as float32 ``[sample, H*W, channel]``. The model's channels C and size H x W
        decide the layout of an array: ``[n, C, H, W]`` (torch's), ``[n, H, W, C]`` (channels
        last, read when its shape is not also channels first), ``[n, H, W]`` (one channel) or the
        flattened ``[n, H*W, C]``; anything else, or a NaN or infinite pixel, is refused. 8- and
        16-bit unsigned pixels are divided by 255 and 65535, as those of image and array files."""
        height, width = model.image_size
        channels = model.n_features
        what = f"inputs for image model {model.name!r}"
        if hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu().numpy()
        try:
            raw = np.asarray(inputs)
            X = raw.astype(np.float32, copy=False)  # a copy when the pixels are scaled below
        except (TypeError, ValueError):
            raise XaiError(f"{what} must be an array of images [n, {channels}, {height}, {width}]") from None
        if raw.dtype in SCALES:
            X /= np.float32(SCALES[raw.dtype])
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

    def annotate(self, model: LoadedModel, inputs: np.ndarray) -> dict[str, Any]:
        """Every explanation records its images' ``image_size`` ``[H, W]`` (JSON), which its views
        read to lay the pixels out again."""
        return {"image_size": [int(side) for side in model.image_size]}

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

    def players(self, model: LoadedModel, inputs: np.ndarray, unit: str | None,
                **options: Any) -> tuple[str, np.ndarray]:
        """Each pixel's superpixel (SLIC; default, grid patches without scikit-image) or patch."""
        height, width = model.image_size
        return image_players(inputs.reshape(len(inputs), height, width, -1), unit, **options)

    def substrate(self, kind: str, model: LoadedModel, inputs: np.ndarray, *, sigma: float | None = None,
                  **options: Any) -> np.ndarray:
        """Removed pixels become the train split's per-channel mean (that of ``background``, the
        train inputs, for an imported network), or the image blurred."""
        if kind == "mean":
            if model.normalisation is not None:
                mean = model.normalisation.mean.detach().cpu().numpy().reshape(-1)
            else:  # an imported network keeps no train statistics: the background's
                mean = as_background(options.get("background"), torch.from_numpy(
                    np.asarray(inputs, np.float32)), "substrate 'mean'").mean((0, 1)).cpu().numpy()
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


def image_model(network: nn.Module, height: int, width: int, *, reading: dict | None = None,
                forward: nn.Module | None = None, **info: Any) -> LoadedModel:
    """An image network as a Model: flattened pixels in, standardised (when it has the train
    statistics) and reshaped for it; ``reading`` is the rule its run reads image files by
    (``reading.Reading.record``), if any; ``forward`` calls ``network`` in its own way (an
    imported one)."""
    model = LoadedModel(network, seq_len=height * width, **info)
    model.modality = ImageModality.name
    model.module = ImageModule(model.normalisation or nn.Identity(), forward or network, height, width)
    model.module.eval()
    model.image_size = (height, width)
    model.image_reading = reading
    return model
