"""Masks of variable-length batches: rows padded after their valid ``lengths`` (xaicore gives the
network zeros there). A network that honours the mask gives a padded row the logits of the row
cut to its length: convolutions see zeros past the end (as their own zero padding), pooling,
recurrence and attention use valid steps only."""

from __future__ import annotations

import torch


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
