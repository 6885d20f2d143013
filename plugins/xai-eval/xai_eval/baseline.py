"""The random-attribution baseline every method should beat (not registered: the evaluation uses it)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option


class RandomExplainer(BaseExplainer):
    """Standard-normal attributions, independent of the model: each sample's map is drawn from a
    generator seeded with ``seed`` and the sample's values, so a sample gets the same map in any
    batch (the randomisation check re-explains a subset and must see the same maps)."""

    name = "random"
    description = "Random attributions (seeded): the baseline of the evaluation"
    options = (Option("seed", int, 0, "seed of the generator", min=0, max=2**63 - 1),)

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict]:
        rows = inputs.detach().cpu().numpy()
        maps = [np.random.default_rng([opts["seed"], *np.frombuffer(
            hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest(),
            dtype=np.uint32).tolist()]).standard_normal(row.shape, dtype=np.float32)
            for row in rows]
        return torch.from_numpy(np.stack(maps)).to(inputs.device), {}
