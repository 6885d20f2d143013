"""Gaussian blur of flattened images over their two spatial axes, channel by channel."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xaicore.plugin import XaiError


def gaussian_blur(pixels: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """``pixels [batch, H*W, channel]`` blurred by a Gaussian of ``sigma`` pixels along rows and
    columns (separable, reflect padding; the kernel cut at 3 sigma and at the image's size)."""
    if sigma <= 0:
        raise XaiError(f"blur sigma must be positive, got {sigma}")
    B, _, C = pixels.shape
    x = pixels.permute(0, 2, 1).reshape(B * C, 1, height, width)
    for axis, size in ((2, height), (3, width)):
        radius = min(int(math.ceil(3 * sigma)), size - 1)
        if not radius:
            continue
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = kernel / kernel.sum()
        if axis == 2:
            x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
        else:
            x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return x.reshape(B, C, height * width).permute(0, 2, 1).contiguous()


def default_sigma(height: int, width: int) -> float:
    """A tenth of the shorter side, at least one pixel (the series' default is a tenth of the length)."""
    return max(min(height, width) / 10, 1.0)
