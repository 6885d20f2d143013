"""``window-occlusion``: the drop in the target logit when part of the input is replaced.

Series: windows of ``window`` steps by ``feature_window`` features (default one feature alone),
starting every ``stride`` steps and every ``feature_stride`` features (the last ones cut at the
ends), are replaced by the kind's baseline (``zero`` or the train ``mean``, ...); each cell gets the
mean drop of the windows that cover it. This is captum's ``Occlusion`` with
``sliding_window_shapes=(window, feature_window)``, ``strides=(stride, feature_stride)`` and the
same baseline: captum adds each window's whole drop to its cells and divides by how many windows
cover each cell (tested).
Kinds with two spatial axes (images): ``window x window`` squares of pixels, all channels together,
every ``stride`` pixels along rows and columns: captum's ``Occlusion`` on ``[N, C, H, W]`` with
``sliding_window_shapes=(C, window, window)`` and ``strides=(C, stride, stride)`` (tested).
Kinds that declare players (``unit``: texts' tokens, the default for texts, or words; images'
superpixels or patches): each player is replaced in turn by the kind's substrate (texts their mask
or pad token, images blurred by default or the mean) and its drop spread evenly over its
positions, so they sum to it; texts' special tokens and padding are never replaced and get 0.
Occluded inputs of all samples go through in full batches: ``pass_rows`` rows, and on CPU at most
as many as keep one pass's largest activation map (the largest output of a layer, counted on one
row) within ``ACTIVATION_VALUES`` (about a CPU's L2 cache), so a wide convolutional network (fcn,
resnet) runs in small passes that stay in cache and a narrow one (cnn-lstm-attention) in large
ones. The pass size changes no value
beyond float rounding.
(Named ``window-occlusion``: ``occlusion`` is the documented example plugin's explainer.)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError, modality_of, pass_rows

from .players import (
    COMPACTNESS,
    PATCH,
    default_absent,
    has_players,
    kind_players,
    occlusion_drops,
    player_extras,
    reference,
    word_values,
)

TEXT_UNIT = "tokens"  # texts' default unit: each token occluded alone
#: values of a layer's output a CPU pass of occluded rows holds at most (1 MB of float32)
ACTIVATION_VALUES = 2 ** 18


class WindowOcclusion(BaseExplainer):
    """Drop in the target logit when a window of a series or an image, or a player (a text's token
    or word, an image's superpixel or patch), is replaced."""

    name = "window-occlusion"
    description = ("Drop in the target logit when a series window, an image patch or a player (a "
                   "text's token or word, an image's superpixel) is occluded")
    requires = ("background",)
    options = (
        Option("window", int, 10, "series: time steps of one feature occluded together; images: "
               "the side of the squares of pixels occluded together (at most the series length or "
               "the image's side; longer windows are cut to it)", min=1, max=1_000_000),
        Option("stride", int, 5, "steps (series) or pixels along rows and columns (images) from one "
               "window's start to the next (at most window, as captum's Occlusion requires)",
               min=1, max=1_000_000),
        Option("feature_window", int, 1, "series: features occluded together in each window "
               "(neighbouring features in the inputs' order; at most the number of features, "
               "longer windows are cut to it)", min=1, max=1_000_000),
        Option("feature_stride", int, 1, "series: features from one window's first feature to the "
               "next window's (at most feature_window)", min=1, max=1_000_000),
        Option("baseline", str, None, "what occluded cells become: windows one of the kind's "
               "baselines (zero, the default, or mean, the mean train series or image; images also "
               "blurred); players one of the kind's substrates (texts mask, the default, or pad; "
               "images blurred, the default, or mean)"),
        Option("unit", str, None, "occlude each player of the kind alone instead of windows: texts "
               "tokens (default) or words; images superpixels (SLIC) or patches"),
        Option("n_segments", int, None, "images, unit=superpixels: the superpixels SLIC aims at "
               "(default 16)", min=1, max=1_000_000),
        COMPACTNESS,
        PATCH,
        Option("background", object, None, "raw train inputs (baseline mean)"),
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **options: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        modality = modality_of(model)
        with torch.no_grad():
            logits = model.module(inputs)
        fx = logits.gather(1, target[:, None])[:, 0]
        spatial = getattr(modality, "spatial_dims", 1) == 2
        players = modality.masks_padding or (options["unit"] is not None and has_players(model))
        if (players or spatial) and (options["feature_window"], options["feature_stride"]) != (1, 1):
            raise XaiError(f"{self.name}: feature_window and feature_stride group the features of "
                           f"a series; {modality.name} are occluded "
                           f"{'by player' if players else 'in squares, all channels together'}")
        if players:
            return (*occlude_players(model, inputs, target, fx, options), logits)
        if options["unit"] is not None:
            raise XaiError(f"{self.name}: unit is an option of texts and images; a series is "
                           f"occluded in windows (window, stride)")
        for name in ("n_segments", "compactness", "patch"):
            if options[name] is not None:
                raise XaiError(f"{self.name}: {name} shapes the players of unit=superpixels or "
                               f"patches; windows are sized by window and stride")
        kind = options["baseline"] or modality.baselines[0]
        if kind not in modality.baselines:
            raise XaiError(f"{self.name}: baseline must be one of {', '.join(modality.baselines)} "
                           f"for {modality.name}, not {kind!r}")
        base = modality.baseline(kind, model, inputs, background=options["background"],
                                 method=self.name)
        if spatial:
            height, width = model.image_size
            masks = square_masks(height, width, options["window"], options["stride"], self.name)
        else:
            masks = window_masks(inputs.shape[1], inputs.shape[2], options["window"],
                                 options["stride"], self.name, options["feature_window"],
                                 options["feature_stride"])
        masks = masks.to(inputs.device)
        drop = drops(model, inputs, base, target, fx, masks)  # [n, windows]
        covered = masks.sum(0).to(drop.dtype)
        attributions = torch.einsum("nk,ktf->ntf", drop, masks.to(drop.dtype)) / covered
        attributions = attributions.expand(-1, -1, inputs.shape[2])  # a square's channels alike
        return attributions.float(), {"baseline": kind, "windows": len(masks)}, logits


def starts(size: int, window: int, stride: int, method: str, what: str) -> list[int]:
    """Where windows of ``window`` (cut to ``size``) start along an axis of ``size``, every
    ``stride``: ``ceil((size - window) / stride) + 1`` of them (captum's shift counts)."""
    window = min(window, size)
    if stride > window and window < size:
        raise XaiError(f"{method}: stride {stride} is larger than the window ({window} {what}): "
                       f"{what} between windows would never be occluded")
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def window_masks(steps: int, features: int, window: int, stride: int, method: str,
                 feature_window: int = 1, feature_stride: int = 1) -> torch.Tensor:
    """Boolean masks ``[windows, time, feature]``: ``window`` steps from every ``stride``-th step
    by ``feature_window`` features from every ``feature_stride``-th feature (``starts``), time
    window by time window."""
    begins = starts(steps, window, stride, method, "steps")
    firsts = starts(features, feature_window, feature_stride, method, "features")
    masks = torch.zeros(len(begins), len(firsts), steps, features, dtype=torch.bool)
    for i, start in enumerate(begins):
        for j, first in enumerate(firsts):
            masks[i, j, start:start + window, first:first + feature_window] = True
    return masks.reshape(-1, steps, features)


def square_masks(height: int, width: int, window: int, stride: int, method: str) -> torch.Tensor:
    """Boolean masks ``[windows, H*W, 1]`` of row-major pixels: ``window x window`` squares from
    every ``stride``-th row and column (``starts``; cut at the edges), row by row."""
    rows = starts(height, window, stride, method, "pixels")
    columns = starts(width, window, stride, method, "pixels")
    masks = torch.zeros(len(rows), len(columns), height, width, dtype=torch.bool)
    for i, top in enumerate(rows):
        for j, left in enumerate(columns):
            masks[i, j, top:top + window, left:left + window] = True
    return masks.reshape(-1, height * width, 1)


def occlusion_rows(model: LoadedModel, inputs: torch.Tensor) -> int:
    """Rows per pass of occluded copies of ``inputs``: ``pass_rows``, on CPU at most
    ``ACTIVATION_VALUES`` over the largest layer output of one row."""
    rows = pass_rows(inputs.device, inputs[0].numel())
    if inputs.device.type != "cpu":
        return rows
    return max(1, min(rows, ACTIVATION_VALUES // max(1, largest_activation(model, inputs[:1]))))


@torch.no_grad()
def largest_activation(model: LoadedModel, row: torch.Tensor) -> int:
    """The most values a layer (a module without children) of ``model`` outputs for ``row``."""
    largest = 0

    def count(module: torch.nn.Module, given: Any, output: Any) -> None:
        nonlocal largest
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        largest = max([largest, *(t.numel() for t in outputs if isinstance(t, torch.Tensor))])

    hooks = [m.register_forward_hook(count) for m in model.module.modules()
             if next(m.children(), None) is None]
    try:
        model.module(row)
    finally:
        for hook in hooks:
            hook.remove()
    return largest


@torch.no_grad()
def drops(model: LoadedModel, inputs: torch.Tensor, base: torch.Tensor, target: torch.Tensor,
          fx: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``fx - f(x with mask k replaced by base)`` for every sample and mask: ``[n, masks]``, the
    occluded rows of all samples in passes of ``pass_rows``."""
    n, k = len(inputs), len(masks)
    sample = torch.arange(n, device=inputs.device).repeat_interleave(k)
    which = torch.arange(k, device=inputs.device).repeat(n)
    out = torch.empty(n * k, dtype=fx.dtype, device=inputs.device)
    size = occlusion_rows(model, inputs)
    for start in range(0, n * k, size):
        i, j = sample[start:start + size], which[start:start + size]
        logits = model.module(torch.where(masks[j], base[i], inputs[i]))
        out[start:start + size] = fx[i] - logits.gather(1, target[i][:, None])[:, 0]
    return out.reshape(n, k)


def occlude_players(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                    fx: torch.Tensor, options: dict) -> tuple[torch.Tensor, dict]:
    """Each player of every sample (a text's token or word, an image's superpixel or patch)
    replaced by the kind's substrate in turn, its drop spread evenly over its positions."""
    kind = modality_of(model)
    players = kind_players(model, inputs, options["unit"] or (TEXT_UNIT if kind.masks_padding
                                                              else None),
                           options, WindowOcclusion.name, option="unit")
    absent = options["baseline"] or default_absent(model)
    masked = reference(model, inputs, absent, f"{WindowOcclusion.name}: option baseline")
    drop = occlusion_drops(model, inputs, masked, players, target, fx, occlusion_rows(model, inputs))
    values = players.spread(drop, torch.arange(len(inputs), device=inputs.device))
    channels = inputs.shape[2]  # every channel of a position carries its share (texts have one)
    attributions = (values[..., None] / channels).expand(-1, -1, channels)
    return attributions.float(), {"unit": players.unit, "baseline": absent,
                                  **player_extras(players), **word_values(values, model, inputs)}
