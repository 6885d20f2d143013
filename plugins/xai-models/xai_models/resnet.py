"""Residual network for time series (Wang, Yan and Oates 2017)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xaicore.plugin import Option, XaiError, defaults_of

from .blocks import ConvBlock
from .masking import PooledConvNet, masked, zero_padding
from .params import check_shape, resolve_params


class ResidualBlock(nn.Module):
    """Conv-BN-ReLU (kernel 8), Conv-BN-ReLU (5), Conv-BN (3), plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: list[int]) -> None:
        super().__init__()
        k1, k2, k3 = kernel_sizes
        self.conv1 = ConvBlock(in_channels, out_channels, k1)
        self.conv2 = ConvBlock(out_channels, out_channels, k2)
        self.conv3 = ConvBlock(out_channels, out_channels, k3, activation=False)
        # a 1x1 convolution matches the channels when they change, as in the published code
        self.shortcut = (nn.BatchNorm1d(out_channels) if in_channels == out_channels else
                         nn.Sequential(nn.Conv1d(in_channels, out_channels, 1),
                                       nn.BatchNorm1d(out_channels)))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [batch, channel, time]`` zero on padding; the output is zero there too."""
        out = self.conv3(self.conv2(self.conv1(x, mask), mask), mask)
        return zero_padding(self.act(out + masked(self.shortcut, x, mask)), mask)


class ResNet(PooledConvNet):
    """Three residual blocks (64, 128, 128 filters), global average pooling, a linear head."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("filters", list, [64, 128, 128], "channels of each residual block", min=1, max=4096),
        Option("kernel_sizes", list, [8, 5, 3], "kernel sizes of the 3 convolutions of a block",
               min=1, max=1024),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    gradcam_layer: ClassVar[str | None] = "blocks.2"  # last block: the maps global pooling averages
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200, "batch_size": 16, "lr": 0.001, "scheduler": "cosine"}

    def __init__(self, n_features: int, seq_len: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        check_shape(type(self), n_features, seq_len, n_classes)
        p = self.params = resolve_params(type(self), params)
        if len(p["kernel_sizes"]) != 3:
            raise XaiError("ResNet: kernel_sizes must hold 3 sizes (one per convolution of a block)")
        channels = [n_features] + p["filters"]
        self.blocks = nn.Sequential(*(ResidualBlock(i, o, p["kernel_sizes"])
                                      for i, o in zip(channels, channels[1:])))
        self.gradcam_layer = f"blocks.{len(p['filters']) - 1}"
        self.fc = nn.Linear(channels[-1], n_classes)
