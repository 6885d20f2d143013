"""Grad-CAM, Grad-CAM++ and CAM on a Conv1d layer: one forward and one backward per batch.

A heatmap over the layer's time axis is upsampled (linear interpolation) to the input length and
broadcast to every feature, so attributions are ``[sample, time, feature]`` like the inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError

NORMALIZE = ("none", "max", "minmax")
REDUCTIONS = ("mean", "median", "max", "mean_max")


def conv1d_names(model: LoadedModel) -> list[str]:
    return [n for n, m in model.network.named_modules() if isinstance(m, nn.Conv1d)]


def resolve_layer(model: LoadedModel, layer: str | None) -> tuple[str, nn.Module]:
    """The layer to explain: the ``layer`` option (a dotted path) or the model's declared layer."""
    if layer:
        return layer, model.layer(layer)
    declared = model.gradcam_layer()
    if declared is None:
        raise XaiError(f"model {model.name!r} declares no Grad-CAM layer; pass layer= one of its "
                       f"Conv1d layers: {', '.join(conv1d_names(model)) or 'none'}")
    return next(n for n, m in model.network.named_modules() if m is declared), declared


def layer_forward(model: LoadedModel, layer: nn.Module, name: str,
                  inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the layer's output ``[batch, channel, time]`` from one forward pass."""
    captured: list[Any] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model.module(inputs)
    finally:
        handle.remove()
    if not captured:
        raise XaiError(f"layer {name!r} of model {model.name!r} is not used in its forward pass")
    acts = captured[-1]
    if not isinstance(acts, torch.Tensor) or acts.ndim != 3 or acts.shape[0] != inputs.shape[0]:
        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
        raise XaiError(f"layer {name!r} of model {model.name!r} outputs {shape}, not "
                       f"[batch, channel, time]; choose a Conv1d layer: "
                       f"{', '.join(conv1d_names(model)) or 'none'}")
    return logits, acts


def activations_and_gradients(model: LoadedModel, layer: nn.Module, name: str,
                              inputs: torch.Tensor,
                              target: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer activations, the gradient of each sample's target logit with respect to them, and
    the logits.

    One backward of the summed target logits serves the whole batch: in eval mode samples are
    independent, so sample i's gradient only comes from its own logit.
    """
    x = inputs.detach().requires_grad_(True)  # so the layer output is in the graph even if frozen
    logits, acts = layer_forward(model, layer, name, x)
    if target is None:  # the predicted class, from this very forward pass
        target = logits.detach().argmax(1)
    score = logits.gather(1, target[:, None]).sum()
    (grads,) = torch.autograd.grad(score, acts)
    return acts.detach(), grads.detach(), logits.detach()


def time_mean(values: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``values [batch, channel, layer_time]`` averaged over each sample's own steps: a padded batch
    (a kind whose models mask padding, such as texts) leaves out the layer steps of its padding."""
    valid = (~torch.isnan(inputs)).all(-1).sum(1)
    if bool((valid == inputs.shape[1]).all()):
        return values.mean(2, keepdim=True)
    steps = values.shape[2]
    counts = torch.clamp(torch.round(valid * steps / inputs.shape[1]), min=1).to(values.dtype)
    return values.sum(2, keepdim=True) / counts[:, None, None]


def to_input_space(heatmap: torch.Tensor, inputs: torch.Tensor, relu: bool,
                   normalize: str) -> torch.Tensor:
    """``[batch, layer_time]`` heatmap -> ReLU -> linear upsampling -> normalisation -> NTF."""
    if relu:
        heatmap = F.relu(heatmap)
    heatmap = F.interpolate(heatmap[:, None].float(), size=inputs.shape[1], mode="linear")[:, 0]
    if normalize == "max":
        heatmap = heatmap / heatmap.abs().amax(1, keepdim=True).clamp_min(1e-12)
    elif normalize == "minmax":
        low = heatmap.amin(1, keepdim=True)
        heatmap = (heatmap - low) / (heatmap.amax(1, keepdim=True) - low).clamp_min(1e-12)
    return heatmap[:, :, None].expand(-1, -1, inputs.shape[2]).contiguous()


class _LayerCAM(BaseExplainer):
    """Shared option checks and layer lookup of the three CAM methods."""

    options = (
        Option("layer", str, None, "dotted path of the Conv1d layer (default: the model's declared "
               "Grad-CAM layer)"),
        Option("relu", bool, True, "keep only positive evidence (ReLU on the map)"),
        Option("normalize", str, "none", "scale each map: none, max or minmax"),
    )

    resolves_predicted = True  # every heatmap hands back the logits of its own forward pass
    maps_time = True

    def check(self, model: LoadedModel) -> str | None:
        if not conv1d_names(model):
            return (f"it has no Conv1d layer ({self.name} weights the channels of a 1-D "
                    f"convolution); use a gradient method such as saliency or integrated-gradients")
        if model.gradcam_layer() is None:
            return (f"it declares no Grad-CAM layer (its Conv1d layers, "
                    f"{', '.join(conv1d_names(model))}, are not feature maps over time it "
                    f"vouches for); use a gradient method such as saliency or integrated-gradients")
        return None

    def attribute(self, model, inputs, target, **opts):
        if opts["normalize"] not in NORMALIZE:
            raise XaiError(f"{self.name}: normalize must be one of {', '.join(NORMALIZE)}, "
                           f"not {opts['normalize']!r}")
        name, layer = resolve_layer(model, opts["layer"])
        heatmap, extras, logits = self.heatmap(model, layer, name, inputs, target, opts)
        if heatmap.shape[1] == 1 and inputs.shape[1] > 1:
            raise XaiError(
                f"{self.name}: layer {name!r} has one time step for these {inputs.shape[1]}-step "
                f"series, so its map would be one constant over time; is the layout right (a "
                f"vector of {inputs.shape[1]} values is one feature over {inputs.shape[1]} time "
                f"steps, [n, {inputs.shape[1]}, 1], not [n, 1, {inputs.shape[1]}])? Otherwise "
                f"choose an earlier layer or a gradient method")
        attributions = to_input_space(heatmap, inputs, bool(opts["relu"]), opts["normalize"])
        return attributions, {"layer": name, "layer_heatmap": heatmap, **extras}, logits

    def heatmap(self, model: LoadedModel, layer: nn.Module, name: str, inputs: torch.Tensor,
                target: torch.Tensor, opts: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """``[batch, layer_time]`` map before ReLU and upsampling, extras, and the logits."""
        raise NotImplementedError


class GradCAM(_LayerCAM):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their time-averaged gradients."""

    name = "gradcam"

    def heatmap(self, model, layer, name, inputs, target, opts):
        acts, grads, logits = activations_and_gradients(model, layer, name, inputs, target)
        weights = time_mean(grads, inputs)
        return (weights * acts).sum(1), {"channel_weights": weights[:, :, 0]}, logits


class GradCAMPlusPlus(_LayerCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): pixel-wise weighted positive gradients."""

    name = "gradcam++"

    def heatmap(self, model, layer, name, inputs, target, opts):
        acts, grads, logits = activations_and_gradients(model, layer, name, inputs, target)
        g2, g3 = grads.pow(2), grads.pow(3)
        denominator = 2 * g2 + acts.sum(2, keepdim=True) * g3
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * F.relu(grads)).sum(2, keepdim=True)
        return (weights * acts).sum(1), {"channel_weights": weights[:, :, 0]}, logits


class CAM(_LayerCAM):
    """The layer's activations reduced over channels (the tutorial's CAM; class-independent)."""

    name = "cam"
    options = (*_LayerCAM.options,
               Option("reduction", str, "mean", "reduce over channels: mean, median, max or "
                      "mean_max"))

    def heatmap(self, model, layer, name, inputs, target, opts):
        reduction = opts["reduction"]
        if reduction not in REDUCTIONS:
            raise XaiError(f"cam: reduction must be one of {', '.join(REDUCTIONS)}, "
                           f"not {reduction!r}")
        with torch.no_grad():
            logits, acts = layer_forward(model, layer, name, inputs)
        if reduction == "mean":
            heatmap = acts.mean(1)
        elif reduction == "median":
            heatmap = acts.median(1).values
        elif reduction == "max":
            heatmap = acts.amax(1)
        else:
            heatmap = (acts.mean(1) + acts.amax(1)) / 2
        return heatmap, {"class_independent": True}, logits
