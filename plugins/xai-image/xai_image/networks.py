"""The built-in image networks, plain torch: ``forward(x [batch, channel, H, W]) -> logits``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xaicore.plugin import Option, XaiError, defaults_of, validate


def block(n_in: int, n_out: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A 3x3 same-size convolution and its batch norm."""
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out)


class ImageCNN(nn.Module):
    """Three Conv2d-BatchNorm-ReLU blocks of ``channels``, twice and four times as many channels,
    a 2x2 max-pool after the first two, global average pooling and a linear head. Grad-CAM
    targets the last Conv2d (an ``H/4 x W/4`` map: 8x8 for the 32x32 digits)."""

    modality: ClassVar[str] = "images"
    options: ClassVar[tuple[Option, ...]] = (
        Option("channels", int, 32, "channels of the first block (the next two double them)", min=1,
               max=1024),
        Option("dropout", float, 0.1, "dropout before the head", min=0.0, max=0.95),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 15, "batch_size": 64, "lr": 0.003, "scheduler": "cosine", "weight_decay": 0.0001}
    gradcam_layer: ClassVar[str | None] = "conv3"

    def __init__(self, n_channels: int, height: int, width: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        if height < 4 or width < 4 or n_classes < 2:
            raise XaiError(f"ImageCNN needs images of at least 4x4 pixels (it pools twice) and 2 "
                           f"classes (got {height}x{width} and {n_classes})")
        p = self.params = validate("model ImageCNN", self.options, params, noun="parameter")
        width_1 = p["channels"]
        self.conv1, self.bn1 = block(n_channels, width_1)
        self.conv2, self.bn2 = block(width_1, 2 * width_1)
        self.conv3, self.bn3 = block(2 * width_1, 4 * width_1)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(p["dropout"])
        self.head = nn.Linear(4 * width_1, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.head(self.dropout(x.mean((2, 3))))
