"""Players of the Shapley game: contiguous time segments, one set per feature."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaicore.plugin import XaiError


@dataclass
class Segments:
    """``ids[t, f]`` is the player (segment) that time step ``t`` of feature ``f`` belongs to.

    Player ``f * n_segments + s`` is segment ``s`` of feature ``f``; segment ``s`` covers time steps
    ``bounds[s]:bounds[s + 1]``.
    """

    ids: torch.Tensor
    bounds: list[int]
    n_features: int

    @property
    def n_segments(self) -> int:
        return len(self.bounds) - 1

    @property
    def n_players(self) -> int:
        return self.n_segments * self.n_features

    def expand(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Boolean coalitions ``[rows, players]`` as input masks ``[rows, time, feature]``."""
        return coalitions[:, self.ids]

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """Per-player values ``[n, players]`` spread evenly over their steps: ``[n, time, feature]``."""
        sizes = torch.bincount(self.ids.flatten(), minlength=self.n_players).to(values.dtype)
        return (values / sizes)[:, self.ids]


def make_segments(seq_len: int, n_features: int, n_segments: int,
                  device: torch.device) -> Segments:
    """``n_segments`` contiguous segments of (nearly) equal length per feature."""
    if isinstance(n_segments, bool) or not isinstance(n_segments, int) or not 1 <= n_segments <= seq_len:
        raise XaiError(f"shap option n_segments must be an integer from 1 to the series length "
                       f"({seq_len}), got {n_segments!r}")
    step_segment = torch.arange(seq_len) * n_segments // seq_len
    ids = step_segment[:, None] + n_segments * torch.arange(n_features)[None, :]
    bounds = [int(i) for i in torch.searchsorted(step_segment, torch.arange(n_segments))]
    return Segments(ids.to(device), bounds + [seq_len], n_features)
