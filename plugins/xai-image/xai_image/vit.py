"""A small Vision Transformer in plain torch, its attention kept per layer and head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xai_models.transformer import EncoderLayer, SelfAttention
from xaicore.plugin import Option, XaiError, defaults_of, validate


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2021): non-overlapping ``patch_size`` patches embedded by a Conv2d
    (kernel = stride = patch size), a CLS token before them, learned position embeddings,
    pre-norm encoder layers, a final LayerNorm and a linear head on the CLS token.

    Its tokens are the CLS token (``prefix_tokens = 1``) and then the patches row-major over
    ``token_grid`` (rows, columns of patches); ``attention_weights()`` gives each layer's
    ``[batch, heads, 1 + patches, 1 + patches]`` weights of the last forward."""

    modality: ClassVar[str] = "images"
    options: ClassVar[tuple[Option, ...]] = (
        Option("patch_size", int, 8, "pixels per side of a square patch (must divide the height "
               "and width; 8: a 4x4 grid of patches on the 32x32 digits)", min=1, max=1024),
        Option("dim", int, 64, "embedding and encoder width", min=1, max=4096),
        Option("depth", int, 4, "encoder layers", min=1, max=64),
        Option("heads", int, 4, "attention heads (must divide dim)", min=1, max=64),
        Option("mlp_dim", int, 128, "feed-forward width of each encoder layer", min=1, max=16384),
        Option("dropout", float, 0.1, "dropout on the embeddings and in the encoder", min=0.0,
               max=0.95),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 40, "batch_size": 64, "lr": 0.001, "scheduler": "cosine", "weight_decay": 0.05}
    gradcam_layer: ClassVar[str | None] = None
    #: tokens before the patches in every attention layer (the CLS token)
    prefix_tokens: ClassVar[int] = 1

    def __init__(self, n_channels: int, height: int, width: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        p = self.params = validate("model VisionTransformer", self.options, params, noun="parameter")
        size = p["patch_size"]
        if height % size or width % size or n_classes < 2:
            raise XaiError(f"VisionTransformer: patch_size {size} must divide the images' height and "
                           f"width ({height}x{width}; e.g. --param patch_size=4), and it needs 2 "
                           f"classes (got {n_classes})")
        if p["dim"] % p["heads"]:
            raise XaiError(f"VisionTransformer: heads ({p['heads']}) must divide dim ({p['dim']})")
        self.token_grid = (height // size, width // size)
        n_patches = self.token_grid[0] * self.token_grid[1]
        self.embed = nn.Conv2d(n_channels, p["dim"], size, stride=size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, p["dim"]))
        self.position = nn.Parameter(torch.randn(1, 1 + n_patches, p["dim"]) * 0.02)
        self.dropout = nn.Dropout(p["dropout"])
        self.layers = nn.ModuleList(EncoderLayer(p["dim"], p["heads"], p["mlp_dim"], p["dropout"])
                                    for _ in range(p["depth"]))
        self.norm = nn.LayerNorm(p["dim"])
        self.head = nn.Linear(p["dim"], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)  # [batch, patch (row-major), dim]
        h = torch.cat([self.cls_token.expand(len(x), -1, -1), patches], 1) + self.position
        h = self.dropout(h)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h)[:, 0])

    def attention_weights(self) -> list[torch.Tensor]:
        """Weights of the last forward pass, one ``[batch, heads, query, key]`` per layer."""
        return [m.weights for m in self.modules() if isinstance(m, SelfAttention) and m.weights is not None]
