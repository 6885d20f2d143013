"""Masked multi-head self-attention that keeps its weights, and masked pooling over tokens."""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention; ``weights`` holds the last forward's
    ``[batch, heads, query, key]`` softmax, zero on padded keys."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [batch, token, d_model]``; ``mask [batch, token]`` True on real tokens."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D // self.n_heads)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        self.weights = weights.detach()  # no graph kept alive
        out = (self.dropout(weights) @ v).transpose(1, 2).reshape(B, T, D)
        return self.out(out)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h [batch, token, dim]`` over each row's real tokens: ``[batch, dim]``."""
    keep = mask[:, :, None].to(h.dtype)
    return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
