"""Cascading model-parameter randomisation, the sanity check of Adebayo et al. (2018).

On a deep copy of the model, layers are re-initialised from the output backwards (cascading,
top-down); after each step the same samples are explained again and the Spearman rank correlation
between ``|attributions|`` on the trained and on the randomised model is averaged over samples. A
method that passes loses the correlation quickly; one whose maps barely depend on the weights keeps
it high. The user's model is never touched. Cells no metric removes (texts' special tokens, which
integrated gradients leaves at zero whatever the weights) are left out of the correlation.

The verdict is sign-insensitive, as Adebayo et al.'s comparison of absolute maps is: a map that
turns anti-correlated with the trained model's (its ranking flipped) still depends on the weights,
so a method passes only when the mean over samples of ``|rho|`` at the last step lies below
``pass_below``; the reported Spearman columns keep their sign. The SSIM of the normalised
absolute maps (``similarity.py``; per channel over the image plane for images) is reported beside it.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from xaicore.application import get_explainer, spearman_rows
from xaicore.plugin import BaseMetric, Explanation, LoadedModel, Option, XaiError, modality_of

from .guard import explain_again
from .perturbation import removable_cells
from .similarity import ssim_rows
from .stats import bootstrap_indices, mean_interval


def layers_in_forward_order(model: LoadedModel, inputs: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Modules of the network holding parameters of their own, in the order the forward pass calls them."""
    owners = {module: name for name, module in model.network.named_modules()
              if any(True for _ in module.parameters(recurse=False))}
    called: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: called.append(mod) if mod not in called
                                         else None) for m in owners]
    try:
        with torch.no_grad():
            model.module(inputs[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return [(owners[m], m) for m in called]


def spatial_grid(model: LoadedModel) -> tuple[int, int] | None:
    """``(H, W)`` for a kind with two spatial axes (images: the model's ``image_size``), else None."""
    if getattr(modality_of(model), "spatial_dims", 1) != 2:
        return None
    height, width = model.image_size
    return int(height), int(width)


def randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise a layer's own parameters: its ``reset_parameters`` or N(0, std of the weights)."""
    devices = [p.device for p in module.parameters(recurse=False) if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices[:1]):
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
        if callable(reset):
            reset()
            return
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                std = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 1.0
                p.normal_(0.0, std)


def verdict(final: np.ndarray, pass_below: float, seed: int, n_boot: int = 2000) -> str:
    """``pass`` when the 95% bootstrap interval of the mean of ``|final correlation|`` over the
    re-explained samples lies below ``pass_below``, ``fail`` when it lies at or above, else
    ``undecided`` (more samples would tell). The absolute value: a map whose ranking flips when the
    weights change is anti-correlated, not independent of them."""
    magnitude = np.abs(final)
    mean, low, high = mean_interval(magnitude, bootstrap_indices(len(magnitude), n_boot, seed))
    if not np.isfinite(mean):
        return "fail"
    return "pass" if high < pass_below else "fail" if low >= pass_below else "undecided"


class RandomisationMetric(BaseMetric):
    """Spearman correlation and SSIM of |attributions| with those of progressively randomised
    copies; the verdict on |Spearman|."""

    name: ClassVar[str] = "randomisation"
    description: ClassVar[str] = ("Cascading parameter randomisation (Adebayo 2018): mean Spearman "
                                  "correlation and SSIM with the trained model's |maps|; the verdict "
                                  "on |Spearman|; lower is better")
    higher_is_better: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"curves", "parts"})
    options: ClassVar[tuple[Option, ...]] = (
        Option("background", object, None, "train inputs for explainers that require them"),
        Option("seed", int, 0, "seed of the re-initialised weights", min=0, max=2**63 - 1),
        Option("max_steps", int, 8, "layers randomised, from the output backwards", min=1,
               max=10_000),
        Option("samples", int, 8, "samples re-explained after each step (a seeded subset of the "
               "explained ones; the check is structural and every step re-runs the explainer)",
               min=2, max=1_000_000),
        Option("pass_below", float, 0.5, "a method passes when |Spearman correlation| with the "
               "fully randomised model's maps (last step) is below this (its mean's 95% interval "
               "over the samples; undecided when the interval straddles it)", min=0.0, max=1.0),
        Option("explainer", object, None, "the explainer to re-run (default: the explanation's "
               "method)"),
    )

    def evaluate(self, model: LoadedModel, explanation: Explanation, **options: Any) -> dict[str, float]:
        return self.evaluate_curves(model, explanation, **options)[0]

    def evaluate_curves(self, model: LoadedModel, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """Scores plus the per-step curve (``layers``: last layer randomised, ``correlation``)."""
        steps = [self.evaluate_part(model, explanation, k, **options)
                 for k in range(self.parts(model, explanation, **options))]
        return self.combine(explanation, steps, **options)

    def setup(self, model: LoadedModel, explanation: Explanation, opts: dict):
        """The re-explained rows (a seeded subset), their inputs and targets, and the explainer
        with its options."""
        explainer = opts["explainer"] or get_explainer(explanation.method)
        explain_opts = {k: v for k, v in explanation.options.items()
                        if k in getattr(explainer, "defaults", explanation.options)}
        if opts["background"] is not None and "background" in getattr(explainer, "requires", ()):
            explain_opts["background"] = opts["background"]
        rows = np.arange(len(explanation.inputs))
        if len(rows) > opts["samples"]:
            rows = np.sort(np.random.default_rng(int(opts["seed"])).choice(
                rows, opts["samples"], replace=False))
        x = torch.as_tensor(explanation.inputs[rows], device=model.device)
        t = torch.as_tensor(explanation.targets[rows], device=model.device)
        return rows, x, t, explainer, explain_opts

    def groups(self, model: LoadedModel, x: torch.Tensor, max_steps: int):
        """The layers from the output backwards and the groups of them randomised step by step."""
        layers = layers_in_forward_order(model, x)[::-1]
        if not layers:
            raise XaiError(f"model {model.name!r} has no parameters to randomise")
        return layers, np.array_split(np.arange(len(layers)), min(max_steps, len(layers)))

    def parts(self, model: LoadedModel, explanation: Explanation, **opts: Any) -> int:
        """How many steps the cascade takes; each is an independent part (``evaluate_part``), so
        the evaluation can run them side by side."""
        _, x, _, _, _ = self.setup(model, explanation, opts)
        return len(self.groups(model, x, opts["max_steps"])[1])

    def evaluate_part(self, model: LoadedModel, explanation: Explanation, part: int,
                      **opts: Any) -> tuple[str, np.ndarray, np.ndarray]:
        """Step ``part`` of the cascade: a copy of the model with the layers of steps 0..part
        re-initialised (each layer always from its own seed, so a step does not depend on the
        others having run), the samples explained again; the last layer randomised and the
        per-sample Spearman correlation and SSIM with the trained model's absolute maps."""
        rows, x, t, explainer, explain_opts = self.setup(model, explanation, opts)
        randomised = copy.deepcopy(model)
        layers, groups = self.groups(randomised, x, opts["max_steps"])
        for i in np.concatenate(groups[:part + 1]):
            randomise(layers[i][1], int(opts["seed"]) + int(i))
        with warnings.catch_warnings():  # e.g. IG deltas of the randomised model: not news
            warnings.simplefilter("ignore", RuntimeWarning)
            again = explain_again(explainer, randomised, x, t, **explain_opts)
        reference = np.abs(explanation.attributions[rows])
        inputs = explanation.inputs[rows]
        fixed = ~removable_cells(model, inputs) & ~np.isnan(inputs)  # special tokens: not ranked
        rho = spearman_rows(np.where(fixed, np.nan, reference).reshape(len(x), -1),
                            np.abs(again.attributions).reshape(len(x), -1))
        return (layers[groups[part][-1]][0], rho,
                ssim_rows(reference, again.attributions, spatial_grid(model)))

    def combine(self, explanation: Explanation, steps: list[tuple[str, np.ndarray, np.ndarray]],
                **opts: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """The scores and curve from every step's ``(layer, correlations, ssim)``, in order."""
        names = [name for name, _, _ in steps]
        rows = [rho for _, rho, _ in steps]
        final_ssim = steps[-1][2]
        correlations = [row_mean(rho) for rho in rows]
        scores = {"randomisation": verdict(rows[-1], float(opts["pass_below"]), int(opts["seed"])),
                  "randomisation_spearman": float(np.nanmean(correlations)),
                  "randomisation_spearman_final": correlations[-1],
                  "randomisation_ssim_final": row_mean(final_ssim)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_sample = {"randomisation_spearman": np.nanmean(np.stack(rows), axis=0),
                          "randomisation_spearman_final": rows[-1],
                          "randomisation_ssim_final": final_ssim}
        return scores, {"layers": names, "correlation": np.asarray(correlations),
                        "per_sample": per_sample}


def row_mean(values: np.ndarray) -> float:
    """The mean over the samples with a value (NaN when none has one)."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
