"""The random-attribution baseline every method should beat (not registered: the evaluation uses it)."""

from __future__ import annotations

from typing import Any

import torch

from xaicore.explainer import BaseExplainer
from xaicore.model import LoadedModel


class RandomExplainer(BaseExplainer):
    """Standard-normal attributions drawn from a seeded generator, independent of the model."""

    name = "random"
    description = "Random attributions (seeded): the baseline of the evaluation"
    defaults = {"seed": 0}

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict]:
        generator = torch.Generator().manual_seed(int(opts["seed"]))
        return torch.randn(inputs.shape, generator=generator), {}
