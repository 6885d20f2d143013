"""Attention weights of the last forward pass: per head, head mean, rollout, at the input's
positions (time steps, tokens, or the pixels of each patch)."""

from __future__ import annotations

import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError, modality_of


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


def chosen(layers: list[torch.Tensor], means: list[torch.Tensor], rolled: torch.Tensor | None,
           layer: int | None, head: int | None) -> tuple[torch.Tensor, str]:
    """The ``[batch, query, key]`` attention explained and how it was taken: the rollout when
    there is one, else the last layer's head mean; or ``layer``'s head mean, or its ``head``."""
    if layer is None:
        if head is not None:
            raise XaiError("attention: head picks a head of one layer; give layer too")
        if rolled is not None:
            return rolled, "rollout"
        return means[-1], f"head mean of layer {len(means) - 1}"
    if not -len(layers) <= layer < len(layers):
        raise XaiError(f"attention: layer {layer} does not exist; the model has {len(layers)} "
                       f"attention layers (0 to {len(layers) - 1}, or -1 for the last)")
    index = layer % len(layers)
    if head is None:
        return means[index], f"head mean of layer {index}"
    heads = layers[index].shape[1]
    if head >= heads:
        raise XaiError(f"attention: head {head} does not exist; layer {index} has {heads} heads "
                       f"(0 to {heads - 1})")
    return layers[index][:, head].detach().float(), f"head {head} of layer {index}"


def to_input_steps(received: torch.Tensor, n_steps: int) -> torch.Tensor:
    """``[batch, key]`` values to ``[batch, time]``: input step t takes key ``floor(t * K / T)``."""
    keys = received.shape[1]
    index = torch.arange(n_steps, device=received.device) * keys // n_steps
    return received[:, index]


def to_pixels(received: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``[batch, patch]`` values on a row-major ``grid`` of patches to ``[batch, H*W]`` row-major
    pixels: pixel ``(r, c)`` takes patch ``(floor(r * rows / H), floor(c * columns / W))``."""
    (rows, columns), (height, width) = grid, size
    r = torch.arange(height, device=received.device) * rows // height
    c = torch.arange(width, device=received.device) * columns // width
    return received[:, (r[:, None] * columns + c[None, :]).flatten()]


def patch_grid(model: LoadedModel, n_patches: int) -> tuple[int, int]:
    """The network's ``token_grid`` (rows, columns of the tokens after its prefix), checked
    against the number of keys its attention has."""
    grid = getattr(model.network, "token_grid", None)
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2
            and int(grid[0]) * int(grid[1]) == n_patches):
        raise XaiError(f"attention: model {model.name!r} attends over {n_patches} tokens of an "
                       f"image but declares no token_grid (rows, columns) of that many patches, "
                       f"so they cannot be placed on the image; use a gradient method instead")
    return int(grid[0]), int(grid[1])


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
    mean of the last layer is used; ``layer`` (and ``head``) picks one layer's head mean (or one
    head) instead. Attention does not depend on the target class.

    A network whose tokens start with ``prefix_tokens`` of its own (a ViT's CLS token) is
    explained by the first token's row over the tokens after the prefix (the CLS token's
    attention, or its rollout), kept per layer and head in ``cls_attention``. For a kind with
    two spatial axes (images) those tokens are patches on the network's ``token_grid``, and each
    pixel gets its patch's value.
    """

    name = "attention"
    options = (
        Option("layer", int, None, "one layer's attention instead of the rollout over all of "
               "them (0 the first, -1 the last)", min=-1024, max=1023),
        Option("head", int, None, "with layer: one head of it instead of the heads' mean (0 the "
               "first)", min=0, max=1023),
    )
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
            extras["rollout"] = rollout(means)
        combined, extras["aggregation"] = chosen(layers, means, extras.get("rollout"), opts["layer"],
                                                 opts["head"])
        prefix = int(getattr(model.network, "prefix_tokens", 0) or 0)
        if prefix:
            received = combined[:, 0, prefix:]
            extras["query"] = f"token 0 (the first of {prefix} prefix tokens), keys after them"
            if all(w.shape == layers[0].shape for w in layers):
                extras["cls_attention"] = torch.stack([w[:, :, 0, prefix:] for w in layers], 1).float()
        else:
            received = query_mean(combined, inputs)
        if getattr(modality_of(model), "spatial_dims", 1) == 2:
            grid = patch_grid(model, received.shape[1])
            if received.shape[1] == 1:
                raise XaiError(f"attention: model {model.name!r} attends over one patch of the "
                               f"image, so its map would be one constant; use a smaller patch "
                               f"size or a gradient method")
            extras["key_attention"], extras["token_grid"] = received, list(grid)
            pixels = to_pixels(received, grid, model.image_size)
            return pixels[:, :, None].expand(-1, -1, inputs.shape[2]).contiguous(), extras, logits
        if received.shape[1] == 1 and inputs.shape[1] > 1:
            raise XaiError(f"attention: model {model.name!r} attends over one position for these "
                           f"{inputs.shape[1]}-step series, so its map would be one constant "
                           f"over time; is the layout right (a vector of {inputs.shape[1]} values "
                           f"is one feature over {inputs.shape[1]} time steps, "
                           f"[n, {inputs.shape[1]}, 1])? Otherwise use a gradient method")
        extras["key_attention"] = received
        attributions = to_input_steps(received, inputs.shape[1])
        return attributions[:, :, None].expand(-1, -1, inputs.shape[2]).contiguous(), extras, logits
