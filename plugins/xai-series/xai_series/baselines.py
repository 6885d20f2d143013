"""Reference inputs ("baselines") for path and difference attributions, shaped like the inputs."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from xaicore.plugin import XaiError, as_background

KINDS = ("zero", "mean", "blurred", "random")


def gaussian_blur(inputs: torch.Tensor, sigma: float) -> torch.Tensor:
    """Inputs blurred along time by a Gaussian of ``sigma`` steps (reflect padding), per feature."""
    if sigma <= 0:
        raise XaiError(f"blur_sigma must be positive, got {sigma}")
    T = inputs.shape[1]
    radius = min(int(math.ceil(3 * sigma)), T - 1)
    offsets = torch.arange(-radius, radius + 1, device=inputs.device, dtype=inputs.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    B, _, n_features = inputs.shape
    x = inputs.permute(0, 2, 1).reshape(B * n_features, 1, T)
    x = F.pad(x, (radius, radius), mode="reflect") if radius else x
    return F.conv1d(x, kernel).reshape(B, n_features, T).permute(0, 2, 1).contiguous()


def make_baseline(kind: str, inputs: torch.Tensor, *, background: Any = None,
                  blur_sigma: float | None = None, seed: int = 0,
                  method: str = "baseline") -> torch.Tensor:
    """The baseline of one ``kind`` for every sample of ``inputs [batch, time, feature]``.

    zero: all zeros; mean: the mean train series (from ``background``); blurred: each input
    blurred along time (``blur_sigma`` steps, default a tenth of the length); random: Gaussian
    noise with each sample's per-feature mean and std, drawn from ``seed``.
    """
    if kind == "zero":
        return torch.zeros_like(inputs)
    if kind == "mean":
        bg = as_background(background, inputs, f"{method} with baseline 'mean'")
        return bg.mean(0, keepdim=True).expand_as(inputs).contiguous()
    if kind == "blurred":
        sigma = blur_sigma if blur_sigma is not None else max(inputs.shape[1] / 10, 1.0)
        return gaussian_blur(inputs, sigma)
    if kind == "random":
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(inputs.shape, generator=gen).to(inputs.device, inputs.dtype)
        mean = inputs.mean(1, keepdim=True)
        std = inputs.std(1, keepdim=True) if inputs.shape[1] > 1 else torch.ones_like(mean)
        return mean + noise * std
    raise XaiError(f"{method}: unknown baseline {kind!r}; choose one of {', '.join(KINDS)}")
