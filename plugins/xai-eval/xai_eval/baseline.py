"""The random-attribution baseline every method should beat (not registered: the evaluation uses it)."""

from __future__ import annotations

from typing import Any

import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option


class RandomExplainer(BaseExplainer):
    """Standard-normal attributions drawn from a seeded generator, independent of the model."""

    name = "random"
    description = "Random attributions (seeded): the baseline of the evaluation"
    options = (Option("seed", int, 0, "seed of the generator", min=0, max=2**63 - 1),)

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict]:
        generator = torch.Generator().manual_seed(opts["seed"])
        return torch.randn(inputs.shape, generator=generator), {}
