"""The CNN-BiLSTM-Attention hybrid, generalised to multivariate series (features as channels)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xaicore.plugin import Option, XaiError, defaults_of

from .masking import masked, masked_mean, step_mask, zero_padding
from .params import check_shape, resolve_params


class CNNLSTMAttention(nn.Module):
    """Two Conv1d blocks (Conv, ReLU, BatchNorm, MaxPool /2), a BiLSTM, multi-head self-attention,
    mean pooling over time and a linear head."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("cnn_channels", int, 16, "channels of each Conv1d block", min=1, max=4096),
        Option("kernel_size", int, 3, "Conv1d kernel size", min=1, max=1024),
        Option("lstm_hidden_size", int, 32, "hidden units per LSTM direction", min=1, max=4096),
        Option("lstm_num_layers", int, 2, "stacked BiLSTM layers", min=1, max=16),
        Option("num_heads", int, 4, "attention heads (must divide 2 * lstm_hidden_size)", min=1,
               max=64),
        Option("dropout", float, 0.0, "dropout between LSTM layers", min=0.0, max=1.0),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)
    gradcam_layer: ClassVar[str | None] = "cnn.4"  # the second (last) Conv1d
    # smaller batches, a cosine schedule and light augmentation train it to a higher test accuracy
    # than the base recipe (50 epochs, batch 32, lr 0.005, StepLR), as benchmarks/accuracy.py measures
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 200, "batch_size": 8, "lr": 0.002, "scheduler": "cosine", "augment": 0.1}
    variable_length: ClassVar[bool] = True  # forward(x, lengths): packed LSTM, masked attention
    # its recurrence, attention and mean pooling read however many steps they are given, so its
    # output on any prefix of at least 4 steps (two poolings by 2) is its prediction at that step
    per_step: ClassVar[int] = 4

    def __init__(self, n_features: int, seq_len: int, n_classes: int, **params: Any) -> None:
        super().__init__()
        check_shape(type(self), n_features, seq_len, n_classes, min_len=4)
        p = self.params = resolve_params(type(self), params)
        c, k = p["cnn_channels"], p["kernel_size"]
        self.cnn = nn.Sequential(
            nn.Conv1d(n_features, c, k, padding=k // 2), nn.ReLU(), nn.BatchNorm1d(c), nn.MaxPool1d(2),
            nn.Conv1d(c, 2 * c, k, padding=k // 2), nn.ReLU(), nn.BatchNorm1d(2 * c), nn.MaxPool1d(2),
        )
        self.lstm = nn.LSTM(2 * c, p["lstm_hidden_size"], p["lstm_num_layers"], batch_first=True,
                            bidirectional=True,
                            dropout=p["dropout"] if p["lstm_num_layers"] > 1 else 0.0)
        width = 2 * p["lstm_hidden_size"]
        if width % p["num_heads"]:
            raise XaiError(f"num_heads ({p['num_heads']}) must divide 2 * lstm_hidden_size ({width})")
        self.attention = nn.MultiheadAttention(width, p["num_heads"], dropout=p["dropout"],
                                               batch_first=True)
        self.fc = nn.Linear(width, n_classes)
        self._attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = x.transpose(1, 2)
        mask = step_mask(lengths, h.shape[2], h)
        for layer in self.cnn:  # padding stays zero before each convolution
            h = masked(layer, h, mask)
            if isinstance(layer, nn.MaxPool1d) and lengths is not None:
                lengths = lengths // 2
                mask = step_mask(lengths, h.shape[2], h)
                h = zero_padding(h, mask)
        h = h.transpose(1, 2)  # [B, T/4, 2C]
        if lengths is None:
            h, _ = self.lstm(h)
            padding = None
        else:
            if bool((lengths < 1).any()):
                raise XaiError("cnn-lstm-attention needs series of at least 4 valid time steps "
                               "(its two pooling layers halve the length twice)")
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            h, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                                    total_length=h.shape[1])
            padding = torch.arange(h.shape[1], device=h.device)[None, :] >= lengths[:, None].to(h.device)
        h, weights = self.attention(h, h, h, key_padding_mask=padding, need_weights=True,
                                    average_attn_weights=False)
        self._attention = weights.detach()  # [B, heads, T/4, T/4]; no graph kept alive
        mask = step_mask(lengths, h.shape[1], h)
        return self.fc(masked_mean(h.transpose(1, 2), mask))

    def attention_weights(self) -> list[torch.Tensor]:
        """Weights of the last forward pass: one ``[batch, heads, query, key]`` tensor."""
        return [] if self._attention is None else [self._attention]
