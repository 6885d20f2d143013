"""Grad-CAM, Grad-CAM++ and CAM on a Conv1d layer (or a Conv2d one for images): one forward and
one backward per batch.

A heatmap over the layer's time axis is upsampled (linear interpolation) to the input length and
broadcast to every feature, so attributions are ``[sample, time, feature]`` like the inputs. For a
kind of input with two spatial axes (its ``spatial_dims = 2``, images, whose models keep
``image_size = (H, W)``), the layer's ``[h, w]`` map is upsampled bilinearly to ``H x W`` and
flattened row-major to the pixels ``[sample, H*W, channel]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError, modality_of

NORMALIZE = ("none", "max", "minmax")
REDUCTIONS = ("mean", "median", "max", "mean_max")


def spatial_dims(model: LoadedModel) -> int:
    """The spatial axes of the model's kind of input: 1 (series, texts) or 2 (images)."""
    return int(getattr(modality_of(model), "spatial_dims", 1))


def conv_type(model: LoadedModel) -> type[nn.Module]:
    return nn.Conv2d if spatial_dims(model) == 2 else nn.Conv1d


def conv_names(model: LoadedModel) -> list[str]:
    """The names of the model's convolutions of its kind's dimension (Conv1d, or Conv2d for images)."""
    conv = conv_type(model)
    return [n for n, m in model.network.named_modules() if isinstance(m, conv)]


def resolve_layer(model: LoadedModel, layer: str | None) -> tuple[str, nn.Module]:
    """The layer to explain: the ``layer`` option (a dotted path) or the model's declared layer."""
    if layer:
        return layer, model.layer(layer)
    declared = model.gradcam_layer()
    if declared is None:
        raise XaiError(f"model {model.name!r} declares no Grad-CAM layer; pass layer= one of its "
                       f"{conv_type(model).__name__} layers: {', '.join(conv_names(model)) or 'none'}")
    return next(n for n, m in model.network.named_modules() if m is declared), declared


def layer_forward(model: LoadedModel, layer: nn.Module, name: str,
                  inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the layer's output ``[batch, channel, time]`` (``[batch, channel, h, w]`` for
    images) from one forward pass."""
    captured: list[Any] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model.module(inputs)
    finally:
        handle.remove()
    if not captured:
        raise XaiError(f"layer {name!r} of model {model.name!r} is not used in its forward pass")
    acts = captured[-1]
    dims = spatial_dims(model)
    if not isinstance(acts, torch.Tensor) or acts.ndim != 2 + dims or acts.shape[0] != inputs.shape[0]:
        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
        raise XaiError(f"layer {name!r} of model {model.name!r} outputs {shape}, not "
                       f"[batch, channel, {'time' if dims == 1 else 'height, width'}]; choose a "
                       f"{conv_type(model).__name__} layer: {', '.join(conv_names(model)) or 'none'}")
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


def spatial_mean(values: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the layer's map: ``time_mean`` for ``[batch, channel, time]``, the
    mean over ``h, w`` for an image layer's ``[batch, channel, h, w]`` (images have no padding)."""
    return values.mean((2, 3), keepdim=True) if values.ndim == 4 else time_mean(values, inputs)


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
                   normalize: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``[batch, layer_time]`` heatmap -> ReLU -> linear upsampling -> normalisation -> NTF; an
    image layer's ``[batch, h, w]`` map is upsampled bilinearly to ``size`` (H, W) and flattened."""
    if relu:
        heatmap = F.relu(heatmap)
    if heatmap.ndim == 3:
        assert size is not None  # an image layer's map goes with the images' size
        heatmap = F.interpolate(heatmap[:, None].float(), size=size, mode="bilinear")[:, 0].flatten(1)
    else:
        heatmap = F.interpolate(heatmap[:, None].float(), size=inputs.shape[1], mode="linear")[:, 0]
    return normalized(heatmap, normalize)[:, :, None].expand(-1, -1, inputs.shape[2]).contiguous()


def normalized(maps: torch.Tensor, normalize: str) -> torch.Tensor:
    """Each sample's map (all axes after the first) scaled: ``none``, by its largest magnitude
    (``max``) or to [0, 1] (``minmax``)."""
    if normalize == "none":
        return maps
    flat = maps.flatten(1)
    shape = (-1,) + (1,) * (maps.ndim - 1)
    if normalize == "max":
        return maps / flat.abs().amax(1).clamp_min(1e-12).view(shape)
    low = flat.amin(1).view(shape)
    return (maps - low) / (flat.amax(1).view(shape) - low).clamp_min(1e-12)


class _LayerCAM(BaseExplainer):
    """Shared option checks and layer lookup of the three CAM methods."""

    options = (
        Option("layer", str, None, "dotted path of the Conv1d (images: Conv2d) layer (default: the "
               "model's declared Grad-CAM layer)"),
        Option("relu", bool, True, "keep only positive evidence (ReLU on the map)"),
        Option("normalize", str, "none", "scale each map: none, max or minmax"),
    )

    resolves_predicted = True  # every heatmap hands back the logits of its own forward pass
    maps_time = True

    def check(self, model: LoadedModel) -> str | None:
        conv, dims = conv_type(model).__name__, spatial_dims(model)
        if not conv_names(model):
            return (f"it has no {conv} layer ({self.name} weights the channels of a {dims}-D "
                    f"convolution); use a gradient method such as saliency or integrated-gradients")
        if model.gradcam_layer() is None:
            over = "time" if dims == 1 else "the image"
            return (f"it declares no Grad-CAM layer (its {conv} layers, "
                    f"{', '.join(conv_names(model))}, are not feature maps over {over} it "
                    f"vouches for); use a gradient method such as saliency or integrated-gradients")
        return None

    def attribute(self, model, inputs, target, **opts):
        name, layer = self.layer_of(model, opts)
        heatmap, extras, logits = self.heatmap(model, layer, name, inputs, target, opts)
        self.check_map(model, name, heatmap, inputs)
        attributions = to_input_space(heatmap, inputs, bool(opts["relu"]), opts["normalize"],
                                      getattr(model, "image_size", None))
        return attributions, {"layer": name, "layer_heatmap": heatmap, **extras}, logits

    def layer_of(self, model: LoadedModel, opts: dict) -> tuple[str, nn.Module]:
        """The layer the options name (or the model's declared one), after checking ``normalize``."""
        if opts["normalize"] not in NORMALIZE:
            raise XaiError(f"{self.name}: normalize must be one of {', '.join(NORMALIZE)}, "
                           f"not {opts['normalize']!r}")
        return resolve_layer(model, opts["layer"])

    def check_map(self, model: LoadedModel, name: str, heatmap: torch.Tensor,
                  inputs: torch.Tensor) -> None:
        """A layer map of one cell (one time step of a longer series, a 1x1 map of an image) would
        be one constant: refused, naming the likely cause."""
        if heatmap.ndim == 3 and heatmap.shape[1] * heatmap.shape[2] == 1:
            names = conv_names(model)
            earlier = names[:names.index(name)] if name in names else names
            raise XaiError(f"{self.name}: layer {name!r} gives a 1x1 map for these "
                           f"{'x'.join(map(str, model.image_size))} images, so the heatmap would be "
                           f"one constant over the image; pass layer= an earlier Conv2d layer "
                           f"({', '.join(earlier) or 'it has none'}) or use a gradient method")
        if heatmap.ndim == 2 and heatmap.shape[1] == 1 and inputs.shape[1] > 1:
            raise XaiError(
                f"{self.name}: layer {name!r} has one time step for these {inputs.shape[1]}-step "
                f"series, so its map would be one constant over time; is the layout right (a "
                f"vector of {inputs.shape[1]} values is one feature over {inputs.shape[1]} time "
                f"steps, [n, {inputs.shape[1]}, 1], not [n, 1, {inputs.shape[1]}])? Otherwise "
                f"choose an earlier layer or a gradient method")

    def heatmap(self, model: LoadedModel, layer: nn.Module, name: str, inputs: torch.Tensor,
                target: torch.Tensor, opts: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """``[batch, layer_time]`` (``[batch, h, w]``) map before ReLU and upsampling, extras, and
        the logits."""
        raise NotImplementedError


class GradCAM(_LayerCAM):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their time-averaged gradients."""

    name = "gradcam"

    def heatmap(self, model, layer, name, inputs, target, opts):
        acts, grads, logits = activations_and_gradients(model, layer, name, inputs, target)
        weights = spatial_mean(grads, inputs)
        return (weights * acts).sum(1), {"channel_weights": weights.flatten(1)}, logits


class GradCAMPlusPlus(_LayerCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): pixel-wise weighted positive gradients."""

    name = "gradcam++"

    def heatmap(self, model, layer, name, inputs, target, opts):
        acts, grads, logits = activations_and_gradients(model, layer, name, inputs, target)
        g2, g3 = grads.pow(2), grads.pow(3)
        spatial: int | tuple[int, int] = 2 if acts.ndim == 3 else (2, 3)
        denominator = 2 * g2 + acts.sum(spatial, keepdim=True) * g3
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * F.relu(grads)).sum(spatial, keepdim=True)
        return (weights * acts).sum(1), {"channel_weights": weights.flatten(1)}, logits


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
