"""Masks of variable-length batches: rows padded after their valid ``lengths`` (xaicore gives the
network zeros there). A network that honours the mask gives a padded row the logits of the row
cut to its length: convolutions see zeros past the end (as their own zero padding), pooling,
recurrence, attention and the training statistics of BatchNorm use valid steps only."""

from __future__ import annotations

import torch
from torch import nn


def step_mask(lengths: torch.Tensor | None, steps: int, like: torch.Tensor) -> torch.Tensor | None:
    """``[batch, 1, steps]`` (channels first) 1 on valid steps, 0 on padding; None without lengths."""
    if lengths is None:
        return None
    valid = torch.arange(steps, device=like.device)[None, :] < lengths.to(like.device)[:, None]
    return valid[:, None, :].to(like.dtype)


def zero_padding(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``h [batch, channel, time]`` with padded steps set to zero."""
    return h if mask is None else h * mask


def masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``h [batch, channel, time]`` over each row's valid steps: ``[batch, channel]``."""
    if mask is None:
        return h.mean(dim=2)
    return (h * mask).sum(dim=2) / mask.sum(dim=2).clamp_min(1)


def batch_norm(bn: nn.BatchNorm1d, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``bn(h)`` whose training statistics (batch and running) come from valid steps only, so a
    padded batch trains like the same series unpadded; eval mode uses the running statistics."""
    if mask is None or not bn.training:
        return bn(h)
    count = mask.sum() * 1.0
    mean = (h * mask).sum(dim=(0, 2)) / count
    var = (((h - mean[None, :, None]) * mask) ** 2).sum(dim=(0, 2)) / count
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked += 1
            momentum = bn.momentum if bn.momentum is not None else 1 / int(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean, momentum)
            bn.running_var.lerp_(var * count / (count - 1).clamp_min(1), momentum)
    out = (h - mean[None, :, None]) / torch.sqrt(var[None, :, None] + bn.eps)
    return out * bn.weight[None, :, None] + bn.bias[None, :, None] if bn.affine else out


def masked(layer: nn.Module, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``layer(h)`` with every BatchNorm in it (itself, or inside an ``nn.Sequential``) taking
    its statistics from valid steps."""
    if isinstance(layer, nn.BatchNorm1d):
        return batch_norm(layer, h, mask)
    if isinstance(layer, nn.Sequential):
        for inner in layer:
            h = masked(inner, h, mask)
        return h
    return layer(h)


class PooledConvNet(nn.Module):
    """Convolution blocks (``self.blocks``, each taking the mask), the mean over valid steps and a
    linear classifier (``self.fc``): the shape FCN, ResNet and InceptionTime share."""

    variable_length = True  # forward(x, lengths) masks padding

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = x.transpose(1, 2)
        mask = step_mask(lengths, h.shape[2], h)
        for block in self.blocks:
            h = block(h, mask)
        return self.fc(masked_mean(h, mask))
