"""Input layouts: xai's ``[batch, time, feature]`` given to a network in its own layout.

``NTF`` = ``[batch, time, feature]`` (xai's own), ``NCT`` = ``[batch, channel, time]`` (the usual
``Conv1d`` input), ``NT`` = ``[batch, time]`` (one feature: a row of values read as one series).
One adapter serves ``wrap_model`` and ``xai import``, so nobody writes a permute module by hand.
"""

from __future__ import annotations

import torch
from torch import nn

from xaicore.errors import XaiError

LAYOUTS = {"NTF": "[batch, time, feature]", "NCT": "[batch, channel, time]",
           "NT": "[batch, time] (one feature)"}


def check_layout(layout: str, n_features: int) -> None:
    """Refuse an unknown layout, and ``NT`` for series of several features."""
    if layout not in LAYOUTS:
        raise XaiError(f"layout must be one of {', '.join(f'{k} {v}' for k, v in LAYOUTS.items())}"
                       f"; not {layout!r}")
    if layout == "NT" and n_features != 1:
        raise XaiError(f"layout NT takes one feature per time step; these series have "
                       f"{n_features} features (use NTF or NCT)")


class LayoutAdapter(nn.Module):
    """xai's ``[batch, time, feature]`` in, the user's network called in its own ``layout``;
    ``output`` picks the logits when the network returns a tuple (logits, attention, ...)."""

    def __init__(self, net: nn.Module, layout: str, output: int | None = None) -> None:
        super().__init__()
        self.net, self.layout, self.output = net, layout, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "NCT":
            x = x.transpose(1, 2)
        elif self.layout == "NT":
            x = x[..., 0]
        out = self.net(x)
        if self.output is not None:
            if not isinstance(out, (tuple, list)):
                raise XaiError(f"output {self.output} picks from a tuple, but the network "
                               f"returns a {type(out).__name__}")
            out = out[self.output]
        elif isinstance(out, (tuple, list)):
            raise XaiError(f"the network returns a {type(out).__name__} of {len(out)}; name the "
                           f"logits' position with --output (e.g. --output 0; wrap_model: "
                           f"output=0)")
        return out
