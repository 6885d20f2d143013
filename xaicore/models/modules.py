"""The torch modules xai puts around a network: normalisation inside, padding masked."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.errors import XaiError


class Standardize(nn.Module):
    """Per-feature z-normalisation with statistics from the train split, kept inside the model."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Any, std: Any) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        self.register_buffer("std", torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def padded_lengths(x: torch.Tensor) -> torch.Tensor | None:
    """The valid length of every row of ``x [batch, time, feature]`` whose trailing steps are NaN
    in every feature (padding), or None when no row is padded."""
    pad = torch.isnan(x).all(-1)
    if not bool(pad[:, -1].any()):
        return None
    trailing = pad.flip(1).long().cumprod(1).sum(1)
    return x.shape[1] - trailing


class SeriesModule(nn.Sequential):
    """Normalisation then the network. A padded batch (trailing NaN steps) reaches the network as
    zeros with the valid ``lengths`` of its rows: ``network(x, lengths)``; gradients on padding
    are zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalisation, network = self
        lengths = padded_lengths(x)
        x = normalisation(x)
        if lengths is None:
            return network(x)
        if not getattr(network, "variable_length", False):
            raise XaiError(f"model {type(network).__name__} cannot mask padding (NaN after the "
                           f"end of a series); it would read padding as data")
        return network(torch.where(torch.isnan(x), torch.zeros_like(x), x), lengths)
