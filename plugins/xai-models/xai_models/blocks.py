"""Convolution building blocks shared by FCN and ResNet."""

from __future__ import annotations

import torch
from torch import nn

from .masking import batch_norm, zero_padding


class ConvBlock(nn.Module):
    """Conv1d ("same" padding), BatchNorm, ReLU: one block of Wang et al. (2017)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 activation: bool = True) -> None:
        super().__init__()
        # "same" padding, the extra step on the right for even kernels as in Keras
        self.pad = nn.ConstantPad1d(((kernel_size - 1) // 2, kernel_size // 2), 0.0)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.bn = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [batch, channel, time]`` zero on padding; the output is zero there too."""
        return zero_padding(self.act(batch_norm(self.bn, self.conv(self.pad(x)), mask)), mask)
