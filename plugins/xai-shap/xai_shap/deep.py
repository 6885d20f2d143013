"""shap's DeepExplainer, used only on models whose every layer it has a handler for."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from xaicore.plugin import XaiError

# leaves with no DeepExplainer handler that are affine, so plain gradients are already exact
AFFINE = {"Standardize", "ConstantPad1d", "ZeroPad1d"}


class _Logit(nn.Module):
    """One class's logit of ``module`` as a ``[batch, 1]`` output."""

    def __init__(self, module: nn.Module, index: int) -> None:
        super().__init__()
        self.module = module
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)[:, self.index:self.index + 1]


def uncovered_layers(module: nn.Module) -> list[str]:
    """Layer types in ``module`` that DeepExplainer cannot handle (sorted, unique).

    DeepExplainer hooks leaf modules only: a leaf needs a handler (or to be affine), and a torch
    layer with submodules (MultiheadAttention, TransformerEncoderLayer...) computes with functional
    operations the hooks never see.
    """
    from shap.explainers._deep.deep_pytorch import op_handler

    found: set[str] = set()

    def visit(layer: nn.Module) -> None:
        children = list(layer.children())
        name = type(layer).__name__
        if not children:
            if name not in op_handler and name not in AFFINE:
                found.add(name)
        elif (type(layer).__module__.startswith("torch.nn")
              and not isinstance(layer, (nn.Sequential, nn.ModuleList, nn.ModuleDict))):
            found.add(name)
        else:
            for child in children:
                visit(child)

    visit(module)
    return sorted(found)


def deep_shap(module: nn.Module, inputs: torch.Tensor, background: torch.Tensor,
              target: torch.Tensor, model_name: str) -> torch.Tensor:
    """DeepExplainer values ``[n, time, feature]`` (float64) of each sample's target logit."""
    with warnings.catch_warnings():  # matplotlib deprecation notices raised while shap imports
        warnings.simplefilter("ignore")
        import shap

    missing = uncovered_layers(module)
    if missing:
        raise XaiError(f"shap's DeepExplainer has no handler for the {', '.join(missing)} layers "
                       f"of model {model_name!r}; use algorithm='sampled' (or 'auto')")
    phi = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
    for index in target.unique().tolist():
        rows = target == index
        explainer = shap.DeepExplainer(_Logit(module, index), background)
        try:
            with warnings.catch_warnings():  # the unrecognised leaves left are affine (AFFINE)
                warnings.filterwarnings("ignore", "unrecognized nn.Module")
                values = explainer.shap_values(inputs[rows], check_additivity=False)
        except Exception as exc:  # shap's own failures, reported with the model's name
            raise XaiError(f"shap's DeepExplainer failed on model {model_name!r} "
                           f"({type(exc).__name__}: {exc}); use algorithm='sampled'") from exc
        phi[rows] = torch.as_tensor(values, dtype=torch.float64, device=inputs.device)[..., 0]
    return phi
