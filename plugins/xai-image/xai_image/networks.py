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
        # one module per use: captum's DeepLift refuses a nonlinearity called twice in a forward
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.dropout = nn.Dropout(p["dropout"])
        self.head = nn.Linear(4 * width_1, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.head(self.dropout(x.mean((2, 3))))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 Conv2d-BatchNorm, ReLU between them and after the sum with the
    shortcut (a strided 1x1 Conv2d-BatchNorm when the shape changes), torchvision's names."""

    def __init__(self, n_in: int, n_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(n_out, n_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.relu2 = nn.ReLU()  # its own module, as relu1: DeepLift refuses one called twice
        self.downsample: nn.Module | None = None
        if stride != 1 or n_in != n_out:
            self.downsample = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


STEMS = ("small", "imagenet")


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016): a stem, four stages of two basic blocks of ``channels``, 2x, 4x and
    8x channels (the last three halve the size), global average pooling and a linear head. Its
    parameter names are torchvision's ``resnet18``'s, so such a state dict loads into it (stem
    ``imagenet``, ``channels`` 64). Stem ``small`` (for images up to about 64 pixels: a 3x3 Conv2d,
    no max-pool) or ``imagenet`` (7x7 stride 2 and a 3x3 stride-2 max-pool). Grad-CAM targets the
    last block's second Conv2d."""

    modality: ClassVar[str] = "images"
    options: ClassVar[tuple[Option, ...]] = (
        Option("channels", int, 64, "channels of the first stage (64 is ResNet-18's; the next stages "
               "double them)", min=1, max=1024),
        Option("stem", str, "small", "small: a 3x3 Conv2d, no max-pool (small images); imagenet: "
               "torchvision's 7x7 stride-2 Conv2d and stride-2 max-pool", choices=STEMS),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 15, "batch_size": 64, "lr": 0.003, "scheduler": "cosine", "weight_decay": 0.0001}
    gradcam_layer: ClassVar[str | None] = "layer4.1.conv2"

    def __init__(self, n_channels: int, height: int, width: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        p = self.params = validate("model ResNet18", self.options, params, noun="parameter")
        shrink = 8 * (4 if p["stem"] == "imagenet" else 1)
        if min(height, width) < shrink or n_classes < 2:
            raise XaiError(f"ResNet18 with stem {p['stem']!r} halves the image {shrink.bit_length() - 1} "
                           f"times: it needs at least {shrink}x{shrink} pixels and 2 classes (got "
                           f"{height}x{width} and {n_classes})")
        c = p["channels"]
        if p["stem"] == "imagenet":
            self.conv1 = nn.Conv2d(n_channels, c, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(n_channels, c, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(c, c, 1), BasicBlock(c, c, 1))
        self.layer2 = nn.Sequential(BasicBlock(c, 2 * c, 2), BasicBlock(2 * c, 2 * c, 1))
        self.layer3 = nn.Sequential(BasicBlock(2 * c, 4 * c, 2), BasicBlock(4 * c, 4 * c, 1))
        self.layer4 = nn.Sequential(BasicBlock(4 * c, 8 * c, 2), BasicBlock(8 * c, 8 * c, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
