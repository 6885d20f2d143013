"""Masked pooling over the tokens of a batch of texts."""

from __future__ import annotations

import torch


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h [batch, token, dim]`` over each row's real tokens: ``[batch, dim]``."""
    keep = mask[:, :, None].to(h.dtype)
    return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
