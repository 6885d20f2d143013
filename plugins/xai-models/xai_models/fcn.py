"""Fully convolutional network for time series (Wang, Yan and Oates 2017)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from xaicore.plugin import Option, XaiError, defaults_of

from .blocks import ConvBlock
from .masking import PooledConvNet
from .params import check_shape, resolve_params


class FCN(PooledConvNet):
    """Three Conv-BN-ReLU blocks (128, 256, 128 filters; kernels 8, 5, 3), global average pooling
    and a linear head, as published."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("filters", list, [128, 256, 128], "channels of each block", min=1, max=4096),
        Option("kernel_sizes", list, [8, 5, 3], "kernel size of each block", min=1, max=1024),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    gradcam_layer: ClassVar[str | None] = "blocks.2"  # last block: the maps global pooling averages
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200, "batch_size": 16, "lr": 0.001, "scheduler": "cosine"}

    def __init__(self, n_features: int, seq_len: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        check_shape(type(self), n_features, seq_len, n_classes)
        p = self.params = resolve_params(type(self), params)
        if len(p["filters"]) != len(p["kernel_sizes"]):
            raise XaiError("FCN: filters and kernel_sizes must have the same length")
        channels = [n_features] + p["filters"]
        self.blocks = nn.Sequential(*(ConvBlock(i, o, k) for i, o, k
                                      in zip(channels, channels[1:], p["kernel_sizes"])))
        self.gradcam_layer = f"blocks.{len(p['filters']) - 1}"
        self.fc = nn.Linear(channels[-1], n_classes)
