"""InceptionTime (Ismail Fawaz et al. 2020), one network of the published ensemble of five."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xaicore.plugin import Option, defaults_of

from .masking import PooledConvNet, batch_norm, masked, zero_padding
from .params import check_shape, resolve_params


class InceptionModule(nn.Module):
    """Bottleneck 1x1 conv, three parallel convolutions and a max-pool + 1x1 conv branch,
    concatenated, then BatchNorm and ReLU."""

    def __init__(self, in_channels: int, filters: int, kernel_sizes: list[int],
                 bottleneck: int) -> None:
        super().__init__()
        # as published, no bottleneck on a univariate input
        self.bottleneck = (nn.Conv1d(in_channels, bottleneck, 1, bias=False) if in_channels > 1
                           else nn.Identity())
        width = bottleneck if in_channels > 1 else in_channels
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding="same", bias=False)
                                   for k in kernel_sizes)
        self.pool_conv = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1),
                                       nn.Conv1d(in_channels, filters, 1, bias=False))
        self.bn = nn.BatchNorm1d(filters * (len(kernel_sizes) + 1))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [batch, channel, time]`` zero on padding; the output is zero there too."""
        z = self.bottleneck(x)
        pool, squeeze = self.pool_conv
        if mask is None:
            pooled = pool(x)
        else:  # the max over valid steps only, as the pool's own -inf padding at the end
            pooled = pool(x.masked_fill(mask == 0, float("-inf")))
            pooled = torch.where(mask == 1, pooled, torch.zeros_like(pooled))
        out = torch.cat([conv(z) for conv in self.convs] + [squeeze(pooled)], dim=1)
        return zero_padding(self.act(batch_norm(self.bn, out, mask)), mask)


class InceptionBlock(nn.Module):
    """Up to three inception modules with a residual shortcut (1x1 conv + BN) around them."""

    def __init__(self, in_channels: int, n_modules: int, filters: int, kernel_sizes: list[int],
                 bottleneck: int, residual: bool) -> None:
        super().__init__()
        out_channels = filters * (len(kernel_sizes) + 1)
        self.inception = nn.Sequential(*(
            InceptionModule(in_channels if i == 0 else out_channels, filters, kernel_sizes,
                            bottleneck) for i in range(n_modules)))
        self.shortcut = (nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, bias=False),
                                       nn.BatchNorm1d(out_channels)) if residual else None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = x
        for module in self.inception:
            out = module(out, mask)
        if self.shortcut is None:
            return out
        return zero_padding(self.act(out + masked(self.shortcut, x, mask)), mask)


class InceptionTime(PooledConvNet):
    """``depth`` inception modules (residual shortcut every third), global average pooling, linear.

    Published defaults: 32 filters per branch, bottleneck 32, depth 6; kernels 40, 20, 10 there
    are 39, 19, 9 here (odd sizes centre the "same" padding, as in common PyTorch ports).
    """

    options: ClassVar[tuple[Option, ...]] = (
        Option("filters", int, 32, "filters per convolution branch", min=1, max=4096),
        Option("depth", int, 6, "Inception modules", min=1, max=64),
        Option("kernel_sizes", list, [39, 19, 9], "kernel sizes of the parallel convolutions",
               min=1, max=1024),
        Option("bottleneck", int, 32, "bottleneck channels", min=1, max=4096),
        Option("residual", bool, True, "residual shortcut every 3 modules"),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    gradcam_layer: ClassVar[str | None] = "blocks.1"  # last block: the maps global pooling averages
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 100, "batch_size": 16, "lr": 0.001, "scheduler": "cosine"}

    def __init__(self, n_features: int, seq_len: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        check_shape(type(self), n_features, seq_len, n_classes)
        p = self.params = resolve_params(type(self), params)
        width = p["filters"] * (len(p["kernel_sizes"]) + 1)
        sizes = [min(3, p["depth"] - i) for i in range(0, p["depth"], 3)]
        self.blocks = nn.Sequential(*(
            InceptionBlock(n_features if i == 0 else width, n, p["filters"], p["kernel_sizes"],
                           p["bottleneck"], p["residual"]) for i, n in enumerate(sizes)))
        self.gradcam_layer = f"blocks.{len(sizes) - 1}"
        self.fc = nn.Linear(width, n_classes)
