"""Attention weights of the last forward pass: per head, head mean, rollout, at input time steps."""

from __future__ import annotations

import torch

from xaicore.plugin import BaseExplainer, LoadedModel, XaiError


def rollout(head_means: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): ``(A + I) / 2``, rows renormalised, multiplied up.

    ``head_means`` are ``[batch, query, key]`` per layer, input to output; the result maps the
    output positions of the last layer to the input positions of the first.
    """
    result = None
    for weights in head_means:
        eye = torch.eye(weights.shape[-1], device=weights.device, dtype=weights.dtype)
        mixed = 0.5 * weights + 0.5 * eye
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


def to_input_steps(received: torch.Tensor, n_steps: int) -> torch.Tensor:
    """``[batch, key]`` values to ``[batch, time]``: input step t takes key ``floor(t * K / T)``."""
    keys = received.shape[1]
    index = torch.arange(n_steps, device=received.device) * keys // n_steps
    return received[:, index]


def query_mean(attention: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``[batch, query, key]`` attention averaged over each sample's own queries: a padded batch
    (a kind whose models mask padding, such as texts) leaves out the queries of its padding."""
    valid = (~torch.isnan(inputs)).all(-1).sum(1)
    if bool((valid == inputs.shape[1]).all()):
        return attention.mean(1)
    queries = attention.shape[1]
    counts = torch.clamp(torch.round(valid * queries / inputs.shape[1]), min=1)
    real = torch.arange(queries, device=attention.device)[None, :] < counts[:, None]
    return (attention * real[:, :, None]).sum(1) / counts[:, None].to(attention.dtype)


class AttentionExplainer(BaseExplainer):
    """Attention received by each key position (mean over queries), broadcast over features.

    Stacked layers (all square and of one length) are combined by rollout; otherwise the head
    mean of the last layer is used. Attention does not depend on the target class.
    """

    name = "attention"
    options = ()  # attention takes no options
    maps_time = True

    def check(self, model: LoadedModel) -> str | None:
        if not model.has_attention():
            return ("it has no attention layer (its network defines no attention_weights()); "
                    "use gradcam or a gradient method instead")
        return None

    @torch.no_grad()
    def attribute(self, model, inputs, target, **opts):
        logits = model.module(inputs)
        layers = model.attention_weights()
        if not layers:
            raise XaiError(f"model {model.name!r} returned no attention weights from its forward "
                           f"pass")
        extras: dict = {"class_independent": True, "n_layers": len(layers)}
        means = []
        for i, weights in enumerate(layers):
            if weights.ndim != 4 or weights.shape[0] != inputs.shape[0]:
                raise XaiError(f"model {model.name!r}: attention layer {i} has weights of shape "
                               f"{tuple(weights.shape)}, expected [batch, heads, query, key]")
            weights = weights.detach().float()
            extras[f"attention_layer{i}"] = weights
            means.append(weights.mean(1))
            extras[f"attention_mean_layer{i}"] = means[-1]
        stackable = len(means) > 1 and all(m.shape[1] == m.shape[2] == means[0].shape[1]
                                           for m in means)
        if stackable:
            combined = extras["rollout"] = rollout(means)
        else:
            combined = means[-1]
        extras["aggregation"] = "rollout" if stackable else f"head mean of layer {len(means) - 1}"
        received = query_mean(combined, inputs)
        if received.shape[1] == 1 and inputs.shape[1] > 1:
            raise XaiError(f"attention: model {model.name!r} attends over one position for these "
                           f"{inputs.shape[1]}-step series, so its map would be one constant "
                           f"over time; is the layout right (a vector of {inputs.shape[1]} values "
                           f"is one feature over {inputs.shape[1]} time steps, "
                           f"[n, {inputs.shape[1]}, 1])? Otherwise use a gradient method")
        extras["key_attention"] = received
        attributions = to_input_steps(received, inputs.shape[1])
        return attributions[:, :, None].expand(-1, -1, inputs.shape[2]).contiguous(), extras, logits
