"""captum's infidelity (Yeh et al. 2019) under small Gaussian perturbations of the input."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from xaicore.errors import XaiError
from xaicore.explanation import Explanation
from xaicore.model import LoadedModel

from .options import resolve


class InfidelityMetric:
    """Expected squared error between attribution-predicted and actual output changes (normalised)."""

    name: ClassVar[str] = "infidelity"
    description: ClassVar[str] = "captum infidelity under Gaussian perturbations; lower is better"
    higher_is_better: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {"noise": 0.1, "n_perturb_samples": 10, "seed": 0,
                                          "batch_size": 256}

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        """``noise`` is the perturbation's standard deviation relative to each feature's spread."""
        from captum.metrics import infidelity

        opts = resolve(self.name, self.defaults, options)
        if float(opts["noise"]) <= 0 or int(opts["n_perturb_samples"]) < 1:
            raise XaiError("infidelity needs noise > 0 and n_perturb_samples >= 1")
        device = model.device
        x = torch.as_tensor(explanation.inputs, device=device)
        scale = (model.normalisation.std.to(device).reshape(1, 1, -1)
                 if model.normalisation is not None
                 else x.std(dim=(0, 1), keepdim=True).clamp_min(1e-6))
        generator = torch.Generator(device=device).manual_seed(int(opts["seed"]))

        def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            noise = torch.randn(inputs.shape, generator=generator, device=device) * scale * float(opts["noise"])
            return noise, inputs - noise

        with torch.no_grad():
            values = infidelity(model.module, perturb, x,
                                torch.as_tensor(explanation.attributions, device=device),
                                target=torch.as_tensor(explanation.targets, device=device),
                                n_perturb_samples=int(opts["n_perturb_samples"]),
                                # captum wants rows per sub-batch between the batch size and
                                # batch size x n_perturb_samples
                                max_examples_per_batch=min(max(int(opts["batch_size"]), len(x)),
                                                           len(x) * int(opts["n_perturb_samples"])),
                                normalize=True)
        return {"infidelity": float(np.mean(values.float().cpu().numpy()))}
