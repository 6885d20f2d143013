"""``window-occlusion``: the drop in the target logit when part of the input is replaced.

Series: windows of ``window`` steps of one feature, starting every ``stride`` steps (the last one cut
at the end), are replaced by the kind's baseline (``zero`` or the train ``mean``, ...); each cell gets
the mean drop of the windows that cover it. This is captum's ``Occlusion`` with
``sliding_window_shapes=(window, 1)``, ``strides=(stride, 1)`` and the same baseline: captum adds
each window's whole drop to its cells and divides by how many windows cover each cell (tested).
Texts: each token (``unit="tokens"``) or word (``unit="words"``) is replaced by the mask (or pad)
token; a word's drop is spread evenly over its tokens, so they sum to it; special tokens and
padding are never replaced and get 0. Occluded inputs of all samples go through in full batches.
(Named ``window-occlusion``: ``occlusion`` is the documented example plugin's explainer.)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError, modality_of, pass_rows

from .tokens import UNITS, reference, token_players, word_values


class WindowOcclusion(BaseExplainer):
    """Drop in the target logit when a window of a series, or a token or word of a text, is replaced."""

    name = "window-occlusion"
    description = "Drop in the target logit when a series window or a text's token or word is occluded"
    requires = ("background",)
    options = (
        Option("window", int, 10, "series: time steps of one feature occluded together (at most "
               "the series length; longer windows are cut to it)", min=1, max=1_000_000),
        Option("stride", int, 5, "series: steps from one window's start to the next (at most "
               "window, as captum's Occlusion requires)", min=1, max=1_000_000),
        Option("baseline", str, None, "what occluded cells become: series one of the kind's "
               "baselines (zero, the default, or mean, the mean train series); texts mask (default) "
               "or pad"),
        Option("unit", str, None, "texts: tokens (default) or words, each occluded alone",
               choices=UNITS),
        Option("background", object, None, "raw train inputs (series baseline mean)"),
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **options: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        modality = modality_of(model)
        with torch.no_grad():
            logits = model.module(inputs)
        fx = logits.gather(1, target[:, None])[:, 0]
        if modality.masks_padding:
            return (*occlude_texts(model, inputs, target, fx, options), logits)
        if options["unit"] is not None:
            raise XaiError(f"{self.name}: unit is an option of texts; a series is occluded in "
                           f"windows (window, stride)")
        kind = options["baseline"] or modality.baselines[0]
        if kind not in modality.baselines:
            raise XaiError(f"{self.name}: baseline must be one of {', '.join(modality.baselines)} "
                           f"for {modality.name}, not {kind!r}")
        base = modality.baseline(kind, model, inputs, background=options["background"],
                                 method=self.name)
        masks = window_masks(inputs.shape[1], inputs.shape[2], options["window"], options["stride"],
                             self.name).to(inputs.device)
        drop = drops(model, inputs, base, target, fx, masks)  # [n, windows]
        covered = masks.sum(0).to(drop.dtype)
        attributions = torch.einsum("nk,ktf->ntf", drop, masks.to(drop.dtype)) / covered
        return attributions.float(), {"baseline": kind, "windows": len(masks)}, logits


def window_masks(steps: int, features: int, window: int, stride: int, method: str) -> torch.Tensor:
    """Boolean masks ``[windows, time, feature]``: for each feature, ``window`` steps from every
    ``stride``-th step, ``ceil((steps - window) / stride) + 1`` of them (captum's shift counts)."""
    window = min(window, steps)
    if stride > window and window < steps:
        raise XaiError(f"{method}: stride {stride} is larger than the window ({window} steps): "
                       f"steps between windows would never be occluded")
    starts = [i * stride for i in range(math.ceil((steps - window) / stride) + 1)]
    masks = torch.zeros(len(starts), features, steps, features, dtype=torch.bool)
    for i, start in enumerate(starts):
        for f in range(features):
            masks[i, f, start:start + window, f] = True
    return masks.reshape(-1, steps, features)


@torch.no_grad()
def drops(model: LoadedModel, inputs: torch.Tensor, base: torch.Tensor, target: torch.Tensor,
          fx: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``fx - f(x with mask k replaced by base)`` for every sample and mask: ``[n, masks]``, the
    occluded rows of all samples in passes of ``pass_rows``."""
    n, k = len(inputs), len(masks)
    sample = torch.arange(n, device=inputs.device).repeat_interleave(k)
    which = torch.arange(k, device=inputs.device).repeat(n)
    out = torch.empty(n * k, dtype=fx.dtype, device=inputs.device)
    size = pass_rows(inputs.device, inputs[0].numel())
    for start in range(0, n * k, size):
        i, j = sample[start:start + size], which[start:start + size]
        logits = model.module(torch.where(masks[j], base[i], inputs[i]))
        out[start:start + size] = fx[i] - logits.gather(1, target[i][:, None])[:, 0]
    return out.reshape(n, k)


@torch.no_grad()
def occlude_texts(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor, fx: torch.Tensor,
                  options: dict) -> tuple[torch.Tensor, dict]:
    """Each token or word of every text replaced by the mask (or pad) token in turn."""
    unit = options["unit"] or "tokens"
    absent = options["baseline"] or modality_of(model).substrates[0]
    masked = reference(model, inputs, absent, f"{WindowOcclusion.name}: option baseline")
    players = token_players(model, inputs, unit)
    sample = torch.arange(len(inputs), device=inputs.device).repeat_interleave(players.counts)
    first = torch.cumsum(players.counts, 0) - players.counts
    which = torch.arange(len(sample), device=inputs.device) - first[sample]
    drop = torch.zeros(len(inputs), max(int(players.counts.max()), 1), dtype=fx.dtype,
                       device=inputs.device)
    size = pass_rows(inputs.device, inputs[0].numel())
    for start in range(0, len(sample), size):
        i, j = sample[start:start + size], which[start:start + size]
        occluded = (players.ids[i] == j[:, None])[..., None]
        logits = model.module(torch.where(occluded, masked[i], inputs[i]))
        drop[i, j] = fx[i] - logits.gather(1, target[i][:, None])[:, 0]
    values = players.spread(drop, torch.arange(len(inputs), device=inputs.device))
    return values[..., None].float(), {"unit": unit, "baseline": absent,
                                       "word_values": word_values(values, model, inputs)}
