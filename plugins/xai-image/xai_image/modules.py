"""The torch module xai puts around an image network: standardised pixels reshaped to ``[B, C, H, W]``."""

from __future__ import annotations

import torch
from torch import nn

from xaicore.plugin import XaiError


class ImageModule(nn.Module):
    """``[batch, H*W, channel]`` pixels in (row-major), standardised per channel, then the network
    on ``[batch, channel, H, W]``."""

    def __init__(self, normalisation: nn.Module, network: nn.Module, height: int, width: int) -> None:
        super().__init__()
        self.normalisation = normalisation
        self.network = network
        self.height, self.width = int(height), int(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.height * self.width:
            raise XaiError(f"image model expects [batch, {self.height * self.width} pixels, channel] "
                           f"({self.height}x{self.width}), got {tuple(x.shape)}")
        x = self.normalisation(x)
        # copied to [B, C, H, W] strides: the permuted view is channels-last in memory (also with
        # one channel, which .contiguous() leaves as it is), and convolutions on it take other
        # kernels, with larger float error, and one of oneDNN's CPU backward kernels crashes
        images = x.reshape(len(x), self.height, self.width, x.shape[2]).permute(0, 3, 1, 2)
        return self.network(images.clone(memory_format=torch.contiguous_format))
