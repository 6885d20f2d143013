"""The built-in token networks: ``forward(ids [batch, T], mask [batch, T]) -> logits``, ``mask``
True on real tokens ([CLS] ... [SEP], then padding). Padding never changes a text's logits, the
embedding runs once per forward (explainers replace its output) and ``attention_weights()`` gives
each attention layer's ``[batch, heads, query, key]`` weights of the last forward."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xai_models.transformer import EncoderLayer, SelfAttention
from xaicore.plugin import Option, XaiError, defaults_of, validate

from .pooling import masked_mean


def resolve_params(cls: type, options: tuple[Option, ...], params: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` defaults overlaid with ``params``, each checked."""
    return validate(f"model {cls.__name__}", options, params, noun="parameter")


def check_shape(cls: type, vocab_size: int, seq_len: int, n_classes: int, pad_id: int) -> None:
    """Refuse vocabularies, lengths and class counts the network cannot be built for."""
    if vocab_size < 2 or n_classes < 2 or seq_len < 1:
        raise XaiError(f"{cls.__name__} needs a vocabulary of at least 2 tokens, 2 classes and "
                       f"texts of at least 1 token (got {vocab_size}, {n_classes} and {seq_len})")
    if not 0 <= pad_id < vocab_size:
        raise XaiError(f"{cls.__name__}: pad_id {pad_id} is not in the vocabulary (size {vocab_size})")


def check_heads(cls: type, width: int, n_heads: int) -> None:
    if width % n_heads:
        raise XaiError(f"{cls.__name__}: the number of heads ({n_heads}) must divide the attention "
                       f"width ({width})")


def lengths_of(cls: type, mask: torch.Tensor) -> torch.Tensor:
    """Real tokens per text (at least one each, the [CLS] token)."""
    lengths = mask.sum(dim=1)
    if bool((lengths < 1).any()):
        raise XaiError(f"{cls.__name__}: every text needs at least one real token in its mask")
    return lengths


def attention_of(net: nn.Module) -> list[torch.Tensor]:
    """The last weights of each ``SelfAttention`` in ``net``, in registration (input to output) order."""
    return [m.weights for m in net.modules() if isinstance(m, SelfAttention) and m.weights is not None]


class TokenHybrid(nn.Module):
    """The CNN-BiLSTM-attention hybrid over tokens: an embedding, a Conv1d (ReLU, dropout), a
    packed BiLSTM, multi-head self-attention over its states, the mean over real tokens and a
    linear head."""

    modality: ClassVar[str] = "tokens"
    options: ClassVar[tuple[Option, ...]] = (
        Option("embedding_dim", int, 64, "token embedding width", min=1, max=4096),
        Option("cnn_channels", int, 64, "Conv1d output channels", min=1, max=4096),
        Option("kernel_size", int, 3, "Conv1d kernel size (odd)", min=1, max=63),
        Option("lstm_hidden_size", int, 32, "hidden units per LSTM direction", min=1, max=4096),
        Option("lstm_num_layers", int, 1, "stacked BiLSTM layers", min=1, max=8),
        Option("num_heads", int, 4, "attention heads (must divide 2 * lstm_hidden_size)", min=1,
               max=64),
        Option("dropout", float, 0.4, "dropout on the embeddings, the Conv1d output, between LSTM "
               "layers and before the head", min=0.0, max=0.95),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 10, "batch_size": 64, "lr": 0.003, "scheduler": "cosine", "weight_decay": 0.01}
    embedding_layer: ClassVar[str] = "embedding"
    gradcam_layer: ClassVar[str | None] = "conv"
    variable_length: ClassVar[bool] = True

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int, pad_id: int = 0,
                 **params: Any) -> None:
        super().__init__()
        check_shape(type(self), vocab_size, seq_len, n_classes, pad_id)
        p = self.params = resolve_params(type(self), self.options, params)
        if p["kernel_size"] % 2 == 0:
            raise XaiError(f"TokenHybrid: kernel_size must be odd (got {p['kernel_size']})")
        width = 2 * p["lstm_hidden_size"]
        check_heads(type(self), width, p["num_heads"])
        self.seq_len, self.pad_id = seq_len, pad_id
        self.embedding = nn.Embedding(vocab_size, p["embedding_dim"], padding_idx=pad_id)
        self.conv = nn.Conv1d(p["embedding_dim"], p["cnn_channels"], p["kernel_size"],
                              padding=p["kernel_size"] // 2)
        self.lstm = nn.LSTM(p["cnn_channels"], p["lstm_hidden_size"], p["lstm_num_layers"],
                            batch_first=True, bidirectional=True,
                            dropout=p["dropout"] if p["lstm_num_layers"] > 1 else 0.0)
        self.attention = SelfAttention(width, p["num_heads"], 0.0)
        self.dropout = nn.Dropout(p["dropout"])
        self.fc = nn.Linear(width, n_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        lengths = lengths_of(type(self), mask)
        keep = mask[:, None, :]
        h = self.dropout(self.embedding(ids)).transpose(1, 2) * keep  # [B, E, T]
        h = self.dropout(torch.relu(self.conv(h))) * keep  # padding stays zero
        packed = nn.utils.rnn.pack_padded_sequence(h.transpose(1, 2), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                                total_length=ids.shape[1])
        h = self.attention(h, ~mask)  # padded keys masked
        return self.fc(self.dropout(masked_mean(h, mask)))

    def attention_weights(self) -> list[torch.Tensor]:
        """Weights of the last forward pass: one ``[batch, heads, query, key]`` tensor."""
        return attention_of(self)


class TokenTransformer(nn.Module):
    """A small pre-norm Transformer encoder over tokens: token embeddings plus learned positions
    (``seq_len`` of them), encoder layers, a final LayerNorm, the mean over real tokens (not the
    [CLS] state) and a linear head."""

    modality: ClassVar[str] = "tokens"
    options: ClassVar[tuple[Option, ...]] = (
        Option("d_model", int, 64, "embedding and encoder width", min=1, max=4096),
        Option("n_heads", int, 4, "attention heads (must divide d_model)", min=1, max=64),
        Option("n_layers", int, 2, "encoder layers", min=1, max=64),
        Option("d_ff", int, 128, "feed-forward width", min=1, max=16384),
        Option("dropout", float, 0.3, "dropout on the embeddings and in the encoder", min=0.0,
               max=0.95),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 8, "batch_size": 64, "lr": 0.002, "scheduler": "cosine", "weight_decay": 0.01}
    embedding_layer: ClassVar[str] = "embedding"
    gradcam_layer: ClassVar[str | None] = None
    variable_length: ClassVar[bool] = True

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int, pad_id: int = 0,
                 **params: Any) -> None:
        super().__init__()
        check_shape(type(self), vocab_size, seq_len, n_classes, pad_id)
        p = self.params = resolve_params(type(self), self.options, params)
        check_heads(type(self), p["d_model"], p["n_heads"])
        self.seq_len, self.pad_id = seq_len, pad_id
        self.embedding = nn.Embedding(vocab_size, p["d_model"], padding_idx=pad_id)
        self.position = nn.Parameter(torch.randn(1, seq_len, p["d_model"]) * 0.02)
        self.dropout = nn.Dropout(p["dropout"])
        self.layers = nn.ModuleList(EncoderLayer(p["d_model"], p["n_heads"], p["d_ff"], p["dropout"])
                                    for _ in range(p["n_layers"]))
        self.norm = nn.LayerNorm(p["d_model"])
        self.fc = nn.Linear(p["d_model"], n_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.seq_len:
            raise XaiError(f"TokenTransformer: texts of {ids.shape[1]} tokens are longer than its "
                           f"{self.seq_len} positions (seq_len)")
        mask = mask.bool()
        lengths_of(type(self), mask)
        h = self.dropout(self.embedding(ids) + self.position[:, :ids.shape[1]])
        for layer in self.layers:
            h = layer(h, ~mask)  # padded keys masked
        return self.fc(masked_mean(self.norm(h), mask))

    def attention_weights(self) -> list[torch.Tensor]:
        """Weights of the last forward pass, one ``[batch, heads, query, key]`` per layer."""
        return attention_of(self)
