"""The torch modules xai puts around a token network: ids from the padded float array, and the
embeddings view gradient methods differentiate."""

from __future__ import annotations

import torch
from torch import nn


def ids_and_mask(x: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[batch, T]`` (padding as ``pad_id``) and the real-token mask of a padded float
    array ``[batch, T, 1]`` (NaN after each text)."""
    values = x[..., 0]
    mask = ~torch.isnan(values)
    return torch.where(mask, values, torch.full_like(values, pad_id)).long(), mask


class TokenModule(nn.Module):
    """The float array of ids in, the network's logits out: ``network(ids, mask)``."""

    def __init__(self, network: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.network = network
        self.pad_id = int(pad_id)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(*ids_and_mask(x, self.pad_id))


class EmbeddingHead(nn.Module):
    """Logits from a view ``[batch, T, D + 2]``: the embeddings, then a channel that is 1 on real
    tokens and one that is 1 on special tokens. The network runs on placeholder ids with the
    embedding layer's output replaced by the view's (as captum's layer attributions do)."""

    def __init__(self, network: nn.Module, embedding: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.embedding = embedding

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        dim = view.shape[-1] - 2
        embeddings, mask = view[..., :dim], view[..., dim] > 0.5
        ids = torch.zeros(mask.shape, dtype=torch.long, device=view.device)
        handle = self.embedding.register_forward_hook(lambda module, args, out: embeddings)
        try:
            return self.network(ids, mask)
        finally:
            handle.remove()
