"""Infidelity and sensitivity-max (Yeh et al. 2019), as captum defines them."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from xaicore.plugin import BaseMetric, Explanation, LoadedModel, Option, XaiError, pass_rows

from .guard import explain_again
from .perturbation import continuous_only


def feature_spread(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Each feature's spread ``[1, 1, feature]``: the train std the model stores, else the
    inputs' own; perturbations are scaled by it."""
    if model.normalisation is not None:
        return model.normalisation.std.to(x.device).reshape(1, 1, -1)
    return x.std(dim=(0, 1), keepdim=True).clamp_min(1e-6)


class InfidelityMetric(BaseMetric):
    """Expected squared error between attribution-predicted and actual output changes (normalised).

    captum's ``infidelity(normalize=True)`` (Yeh et al. 2019), computed here so that several
    explanations of the same inputs share one set of perturbations and one forward pass over them:
    the perturbed outputs do not depend on the explanation, only ``attributions . noise`` does
    (the tests check it equals captum's on the same perturbations)."""

    name: ClassVar[str] = "infidelity"
    description: ClassVar[str] = "captum infidelity under Gaussian perturbations; lower is better"
    higher_is_better: ClassVar[bool] = False
    versus_random: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({"curves", "many"})
    options: ClassVar[tuple[Option, ...]] = (
        Option("noise", float, 0.1, "perturbation std relative to each feature's spread", min=1e-9,
               max=100.0),
        Option("n_perturb_samples", int, 10, "perturbations per sample", min=1, max=10_000),
        Option("seed", int, 0, "seed of the perturbations", min=0, max=2**63 - 1),
        Option("batch_size", int, None, "perturbed inputs per forward pass (default: the "
               "device's fastest, xaicore.plugin.pass_rows)", min=1, max=1_000_000),
    )

    def check(self, model: LoadedModel) -> str | None:
        return continuous_only(model, "infidelity adds Gaussian noise to the inputs")

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """The mean infidelity and the per-sample values (``per_sample``)."""
        return self.evaluate_many(model, [explanation], **options)[0]

    def perturbations(self, model: LoadedModel, x: torch.Tensor,
                      opts: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian noise ``[sample * n_perturb_samples, time, feature]`` (sample-major, as captum
        expands inputs), ``noise`` times each feature's spread, and the inputs minus it."""
        scale = feature_spread(model, x)
        generator = torch.Generator(device=x.device).manual_seed(int(opts["seed"]))
        expanded = x.repeat_interleave(int(opts["n_perturb_samples"]), dim=0)
        noise = torch.randn(expanded.shape, generator=generator, device=x.device)
        noise = noise * scale * float(opts["noise"])
        return noise, expanded - noise

    @torch.no_grad()
    def evaluate_many(self, model: LoadedModel, explanations: list[Explanation],
                      **opts: Any) -> list[tuple[dict[str, float], dict[str, Any]]]:
        """Several explanations of the same inputs and targets scored on the same perturbations."""
        first = explanations[0]
        for e in explanations[1:]:
            if e.inputs.shape != first.inputs.shape or not np.array_equal(e.targets, first.targets):
                raise XaiError("evaluate_many needs explanations of the same inputs and targets")
        device, n = model.device, len(first.inputs)
        k = int(opts["n_perturb_samples"])
        x = torch.as_tensor(first.inputs, device=device)
        target = torch.as_tensor(first.targets, device=device)
        noise, perturbed = self.perturbations(model, x, opts)
        rows = opts["batch_size"] or pass_rows(device, first.inputs[0].size)
        model.module.eval()
        expanded_target = target.repeat_interleave(k)
        outputs = torch.cat([model.module(perturbed[i:i + rows]).gather(
            1, expanded_target[i:i + rows, None])[:, 0] for i in range(0, len(perturbed), rows)])
        fx = model.module(x).gather(1, target[:, None])[:, 0]
        change = (fx.repeat_interleave(k) - outputs).float().view(n, k)  # f(x) - f(x - noise)
        flat_noise = noise.reshape(n, k, -1).float()
        results = []
        for e in explanations:
            # padding (NaN) holds no attribution: its noise changes nothing
            attr = torch.as_tensor(np.nan_to_num(e.attributions), device=device).float()
            predicted = torch.einsum("nkc,nc->nk", flat_noise, attr.reshape(n, -1))
            a2, ab, b2 = (predicted ** 2).sum(1), (predicted * change).sum(1), (change ** 2).sum(1)
            beta = ab / torch.where(a2 != 0, a2, 1.0)  # captum's safe_div
            values = (beta * beta * a2 - 2 * beta * ab + b2) / k
            per_sample = values.cpu().numpy().astype(np.float64)
            results.append(({"infidelity": float(np.mean(per_sample))},
                             {"per_sample": {"infidelity": per_sample}}))
        return results


class SensitivityMaxMetric(BaseMetric):
    """captum's sensitivity_max (Yeh et al. 2019): the largest change of the explanation under
    small uniform input perturbations, relative to its norm. Re-runs the explainer
    ``n_perturb_samples`` times, so it is left out of the default metrics (ask for it by name)."""

    name: ClassVar[str] = "sensitivity-max"
    description: ClassVar[str] = "captum sensitivity_max of the explanation; lower is better"
    higher_is_better: ClassVar[bool] = False
    default: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"curves"})
    options: ClassVar[tuple[Option, ...]] = (
        Option("radius", float, 0.02, "perturbation radius relative to each feature's spread",
               min=1e-9, max=100.0),
        Option("n_perturb_samples", int, 10, "perturbations per sample", min=1, max=10_000),
        Option("seed", int, 0, "seed of the perturbations", min=0, max=2**63 - 1),
        Option("background", object, None, "train inputs for explainers that require them"),
        Option("explainer", object, None, "the explainer to re-run (default: the explanation's "
               "method)"),
    )

    def check(self, model: LoadedModel) -> str | None:
        return continuous_only(model, "sensitivity-max adds uniform noise to the inputs")

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **opts: Any) -> tuple[dict[str, float], dict[str, Any]]:
        from captum.metrics import sensitivity_max

        from xaicore.application import get_explainer, with_requirements

        explainer = opts["explainer"] or get_explainer(explanation.method)
        explain_opts = {k: v for k, v in explanation.options.items()
                        if k in getattr(explainer, "defaults", explanation.options)}
        if opts["background"] is not None:
            explain_opts = with_requirements(explainer, explain_opts,
                                             {"background": opts["background"]})
        device = model.device
        x = torch.as_tensor(explanation.inputs, device=device)
        t = torch.as_tensor(explanation.targets, device=device)
        scale = feature_spread(model, x)
        radius = float(opts["radius"])
        generator = torch.Generator(device=device).manual_seed(int(opts["seed"]))

        def perturb(inputs):
            if isinstance(inputs, tuple):
                return tuple(perturb(i) for i in inputs)
            u = torch.rand(inputs.shape, generator=generator, device=device) * 2 - 1
            return inputs + u * radius * scale

        def explain(inputs, target: torch.Tensor) -> tuple[torch.Tensor]:
            if isinstance(inputs, tuple):
                (inputs,) = inputs
            again = explain_again(explainer, model, inputs, target, **explain_opts)
            return (torch.as_tensor(np.nan_to_num(again.attributions), device=device),)  # a tuple

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = sensitivity_max(explain, x, perturb_func=perturb,
                                     n_perturb_samples=int(opts["n_perturb_samples"]),
                                     max_examples_per_batch=len(x) * int(opts["n_perturb_samples"]),
                                     target=t)
        per_sample = values.float().cpu().numpy().astype(np.float64)
        return ({"sensitivity_max": float(per_sample.mean())},
                {"per_sample": {"sensitivity_max": per_sample}})
