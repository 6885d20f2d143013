"""captum's infidelity (Yeh et al. 2019) under small Gaussian perturbations of the input."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from xaicore.plugin import Explanation, LoadedModel, Option, defaults_of, validate


class InfidelityMetric:
    """Expected squared error between attribution-predicted and actual output changes (normalised)."""

    name: ClassVar[str] = "infidelity"
    description: ClassVar[str] = "captum infidelity under Gaussian perturbations; lower is better"
    higher_is_better: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = (
        Option("noise", float, 0.1, "perturbation std relative to each feature's spread", min=1e-9,
               max=100.0),
        Option("n_perturb_samples", int, 10, "perturbations per sample", min=1, max=10_000),
        Option("seed", int, 0, "seed of the perturbations", min=0, max=2**63 - 1),
        Option("batch_size", int, 256, "perturbed inputs per forward pass", min=1, max=1_000_000),
    )
    defaults: ClassVar[dict[str, Any]] = defaults_of(options)

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """``noise`` is the perturbation's standard deviation relative to each feature's spread."""
        from captum.metrics import infidelity

        opts = validate(f"metric {self.name}", self.options, options)
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
        per_sample = values.float().cpu().numpy().astype(np.float64)
        return {"infidelity": float(np.mean(per_sample))}, {"per_sample": {"infidelity": per_sample}}
