"""dCAM: a dimension-wise class activation map for multivariate series on ordinary Conv1d models.

Boniol et al. ("dCAM: Dimension-wise Class Activation Map for Explaining Multivariate Data Series
Classification", SIGMOD 2022) ask which dimension drives the class activation map by feeding a
network built for it (the d-CNN) every dimension in many contexts (random permutations of the
dimensions) and averaging. A model trained on ``[batch, feature, time]`` in one fixed order cannot
be fed permuted inputs, so this method keeps the paper's idea, a dimension's effect on the map
averaged over orderings of the dimensions, in the form whose average has a known meaning: the
Shapley values of the map over the input's features.

For a sample ``x`` and its target class, ``A(z)`` is the layer's output ``[channel, layer_time]``
for an input ``z`` and ``alpha`` the Grad-CAM channel weights of ``x`` (the time-mean gradient
of the target logit; for a model with global average pooling and a linear head, the head's
weights, which makes the map the CAM of Zhou et al.). A coalition ``S`` of features is the input
``x_S`` holding ``x`` on the features of ``S`` and the baseline elsewhere, and its map is
``v(S) = sum_k alpha_k A_k(x_S)``. The map of feature ``f`` is its Shapley value in ``v``, one per
layer time step:

    dcam_f = sum over S not holding f of |S|! (F - |S| - 1)! / F! * (v(S + f) - v(S))

computed exactly from the ``2^F`` coalitions, or estimated from random orderings of the features
(each ordering adds one feature at a time; an ordering and its reverse are drawn together). The
maps add up to Grad-CAM's (before its ReLU) minus the baseline's map, ``sum_f dcam_f = v(all) -
v(none)``; a feature the model does not read gets 0. They are upsampled to the input's length
as Grad-CAM's map is, then the ReLU and normalisation options apply.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xaicore.plugin import LoadedModel, Option, XaiError, modality_of, pass_rows

from .explainers import _LayerCAM, activations_and_gradients, layer_forward, normalized, spatial_mean

ALGORITHMS = ("auto", "exact", "sampled")


def coalition_inputs(inputs: torch.Tensor, base: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``[coalition * batch, time, feature]``: each sample with the features of each coalition
    (``masks [coalition, feature]``) kept and the others taken from ``base``."""
    keep = masks[:, None, None, :]
    return torch.where(keep, inputs[None], base[None]).reshape(-1, *inputs.shape[1:])


@torch.no_grad()
def coalition_maps(model: LoadedModel, layer: nn.Module, name: str, inputs: torch.Tensor,
                   base: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``v(S)`` of every coalition ``S`` of ``masks`` for every sample: ``[coalition, batch,
    layer_time]``, the layer's output on each coalition's input weighted by the samples' own
    channel weights (``weights [batch, channel]``), in passes of the device's rows."""
    n = len(inputs)
    per_pass = max(1, pass_rows(inputs.device, inputs[0].numel()) // n)
    maps = []
    for start in range(0, len(masks), per_pass):
        chunk = masks[start:start + per_pass]
        _, acts = layer_forward(model, layer, name, coalition_inputs(inputs, base, chunk))
        acts = acts.reshape(len(chunk), n, *acts.shape[1:])
        maps.append(torch.einsum("mbkl,bk->mbl", acts.float(), weights.float()))
    return torch.cat(maps)


def all_coalitions(n_features: int, device: torch.device) -> torch.Tensor:
    """The ``2^F`` coalitions as boolean masks ``[2^F, feature]``, coalition ``i`` holding
    feature ``f`` when bit ``f`` of ``i`` is set."""
    bits = torch.arange(2 ** n_features, device=device)[:, None]
    return (bits >> torch.arange(n_features, device=device)) & 1 == 1


def exact_shapley(values: torch.Tensor, n_features: int) -> torch.Tensor:
    """Shapley values ``[batch, feature, layer_time]`` of the game whose coalition ``i`` (bits as
    in ``all_coalitions``) is worth ``values[i] [batch, layer_time]``."""
    index = np.arange(2 ** n_features)
    sizes = np.array([bin(i).count("1") for i in index])
    weight = np.array([math.factorial(s) * math.factorial(n_features - s - 1)
                       for s in range(n_features)]) / math.factorial(n_features)
    out = []
    for f in range(n_features):
        without = index[(index >> f) & 1 == 0]
        w = torch.as_tensor(weight[sizes[without]], dtype=values.dtype, device=values.device)
        gain = values[torch.as_tensor(without | (1 << f))] - values[torch.as_tensor(without)]
        out.append(torch.einsum("m,mbl->bl", w, gain))
    return torch.stack(out, 1)


def orderings(n_features: int, count: int, seed: int) -> np.ndarray:
    """``count`` orderings of the features ``[count, feature]``, drawn from ``seed`` in pairs of an
    ordering and its reverse (antithetic: each feature comes early in one and late in the other)."""
    rng = np.random.default_rng(seed)
    drawn = [rng.permutation(n_features) for _ in range((count + 1) // 2)]
    return np.stack([p for d in drawn for p in (d, d[::-1])][:count])


def sampled_shapley(order: np.ndarray, full: torch.Tensor, empty: torch.Tensor,
                    prefix_values: torch.Tensor) -> torch.Tensor:
    """Shapley values ``[batch, feature, layer_time]`` averaged over ``order [ordering, feature]``:
    ``prefix_values [ordering, F - 1, batch, layer_time]`` are the worths of each ordering's first
    1 .. F-1 features, ``empty`` and ``full`` those of no and every feature."""
    count, n_features = order.shape
    chain = torch.cat([empty.expand(count, 1, *empty.shape), prefix_values,
                       full.expand(count, 1, *full.shape)], 1)
    gains = chain[:, 1:] - chain[:, :-1]  # [ordering, position, batch, layer_time]
    out = torch.zeros(full.shape[0], n_features, full.shape[1], dtype=full.dtype, device=full.device)
    for p in range(count):
        out[:, torch.as_tensor(order[p])] += gains[p].transpose(0, 1)
    return out / count


def prefix_masks(order: np.ndarray) -> torch.Tensor:
    """Boolean masks ``[ordering * (F - 1), feature]`` of each ordering's first 1 .. F-1 features."""
    count, n_features = order.shape
    masks = np.zeros((count, n_features - 1, n_features), dtype=bool)
    for p in range(count):
        for k in range(1, n_features):
            masks[p, k - 1, order[p, :k]] = True
    return torch.from_numpy(masks.reshape(-1, n_features))


def upsampled_per_feature(maps: torch.Tensor, steps: int) -> torch.Tensor:
    """``[batch, feature, layer_time]`` maps -> linear upsampling to ``steps`` -> ``[batch, time,
    feature]`` (each feature's map as Grad-CAM upsamples its one map)."""
    return F.interpolate(maps.float(), size=steps, mode="linear").transpose(1, 2).contiguous()


class DimensionCAM(_LayerCAM):
    """dCAM: each feature's share of the class activation map, its Shapley value over features."""

    name = "dcam"
    requires = ("background",)
    maps_time = False  # a map over time per feature, not one map copied to every feature
    options = (
        *_LayerCAM.options,
        Option("baseline", str, "mean", "what a left-out feature becomes: one of the kind's "
               "baselines (mean, the default: the mean train series; zero; blurred; random)"),
        Option("algorithm", str, "auto", "exact (all 2^F coalitions of the F features), sampled "
               "(random orderings) or auto (exact when 2^F coalitions cost no more forward passes "
               "than the orderings)"),
        Option("permutations", int, 64, "orderings of the features drawn when sampled (in pairs of "
               "an ordering and its reverse)", min=2, max=1_000_000),
        Option("seed", int, 0, "seed of the orderings and of the random baseline", min=0,
               max=2**32 - 1),
        Option("blur_sigma", float, None, "Gaussian blur width of the blurred baseline, in time "
               "steps (default: a tenth of the length)", min=0.0, max=1e6),
        Option("background", object, None, "raw train inputs [n, time, feature] (baseline mean)"),
    )

    def check(self, model: LoadedModel) -> str | None:
        axes = tuple(getattr(modality_of(model), "axes", ("sample", "time", "feature")))
        if axes[1] != "time":
            return (f"it reads {axes[1]}s, and dcam splits a series' map over its features; use "
                    f"gradcam")
        if len(model.feature_names) == 1:
            return ("it reads one feature, so there is no map to split over features: gradcam's "
                    "map is that feature's")
        return super().check(model)

    def attribute(self, model, inputs, target, **opts):
        name, layer = self.layer_of(model, opts)
        if opts["algorithm"] not in ALGORITHMS:
            raise XaiError(f"dcam: algorithm must be one of {', '.join(ALGORITHMS)}, not "
                           f"{opts['algorithm']!r}")
        modality = modality_of(model)
        kinds = tuple(getattr(modality, "baselines", ()))
        if opts["baseline"] not in kinds:
            raise XaiError(f"dcam: baseline must be one of {', '.join(kinds)}, not "
                           f"{opts['baseline']!r}")
        acts, grads, logits = activations_and_gradients(model, layer, name, inputs, target)
        weights = spatial_mean(grads, inputs).flatten(1)  # [batch, channel]: Grad-CAM's alpha
        full = torch.einsum("bkl,bk->bl", acts.float(), weights.float())  # Grad-CAM's map
        self.check_map(model, name, full, inputs)
        base = modality.baseline(opts["baseline"], model, inputs, background=opts["background"],
                                 blur_sigma=opts["blur_sigma"], seed=opts["seed"], method=self.name)
        n_features, count = inputs.shape[2], opts["permutations"]
        sampled_cost = count * (n_features - 1) + 1  # every ordering's prefixes, and no feature
        exact = opts["algorithm"] == "exact" or (
            opts["algorithm"] == "auto" and 2 ** n_features - 1 <= sampled_cost)
        if exact:
            masks = all_coalitions(n_features, inputs.device)[:-1]  # the last, every feature: full
            values = coalition_maps(model, layer, name, inputs, base, masks, weights)
            maps = exact_shapley(torch.cat([values, full[None]]), n_features)
        else:
            order = orderings(n_features, count, opts["seed"])
            masks = torch.cat([torch.zeros(1, n_features, dtype=torch.bool), prefix_masks(order)])
            values = coalition_maps(model, layer, name, inputs, base, masks.to(inputs.device),
                                    weights)
            prefixes = values[1:].reshape(count, n_features - 1, *full.shape)
            maps = sampled_shapley(order, full, values[0], prefixes)
        attributions = upsampled_per_feature(maps, inputs.shape[1])
        if opts["relu"]:
            attributions = F.relu(attributions)
        extras: dict[str, Any] = {
            "layer": name, "layer_heatmap": full, "baseline_heatmap": values[0],
            "feature_maps": maps, "channel_weights": weights,
            "algorithm": "exact" if exact else "sampled", "coalitions": len(masks) + 1,
            "baseline": opts["baseline"]}
        return normalized(attributions, opts["normalize"]), extras, logits
