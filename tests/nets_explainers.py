"""Small networks following the Network convention, for the explainer tests (fast to run)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xaicore.models.loaded import LoadedModel


class TinyHybrid(nn.Module):
    """Conv1d blocks (pool by 4), a BiLSTM and multi-head self-attention, like cnn-lstm-attention."""

    default_params: dict = {}
    gradcam_layer = "cnn.3"

    def __init__(self, n_features: int, seq_len: int, n_classes: int, heads: int = 2,
                 layers: int = 1) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv1d(n_features, 8, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                                 nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2))
        self.lstm = nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.attn = nn.ModuleList(nn.MultiheadAttention(16, heads, batch_first=True)
                                  for _ in range(layers))
        self.fc = nn.Linear(16, n_classes)
        self._weights: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.cnn(x.transpose(1, 2)).transpose(1, 2))
        self._weights = []
        for layer in self.attn:
            out, w = layer(h, h, h, need_weights=True, average_attn_weights=False)
            h = h + out
            self._weights.append(w.detach())
        return self.fc(h.mean(1))

    def attention_weights(self) -> list[torch.Tensor]:
        return self._weights


class TinyCNN(nn.Module):
    """Conv1d, ReLU, global average pooling, linear: no recurrence, no attention."""

    default_params: dict = {}
    gradcam_layer = "conv2"

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_features, 8, 5, padding=2)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x.transpose(1, 2)))))
        return self.fc(h.mean(2))


class TinyMLP(nn.Module):
    """No convolution and no attention."""

    default_params: dict = {}
    gradcam_layer = None

    def __init__(self, n_features: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_features * seq_len, 16), nn.Tanh(),
                                 nn.Linear(16, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def loaded(cls: type, n_features: int = 2, seq_len: int = 32, n_classes: int = 3, seed: int = 0,
           **params) -> LoadedModel:
    """A ``LoadedModel`` with random weights and a non-trivial normalisation inside the module."""
    torch.manual_seed(seed)
    net = cls(n_features, seq_len, n_classes, **params)
    return LoadedModel(net, name=cls.__name__, class_names=[f"c{i}" for i in range(n_classes)],
                       feature_names=[f"f{i}" for i in range(n_features)], seq_len=seq_len,
                       mean=np.linspace(-0.5, 0.5, n_features), std=np.linspace(1.0, 2.0, n_features))


def inputs(n: int = 6, seq_len: int = 32, n_features: int = 2, seed: int = 1) -> np.ndarray:
    """Smooth random series with noise, float32 ``[n, time, feature]``."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, seq_len)[None, :, None]
    phase = rng.uniform(0, np.pi, (n, 1, n_features))
    return (np.sin(t + phase) + 0.2 * rng.standard_normal((n, seq_len, n_features))).astype(np.float32)


def small_hybrid(seq_len: int, **loaded_options) -> LoadedModel:
    """The built-in cnn-lstm-attention hybrid, small and untrained (seed 0), on 2 features, 3 classes."""
    from xaicore.plugins import registry

    torch.manual_seed(0)
    net = registry.get_model("cnn-lstm-attention")(2, seq_len, 3, cnn_channels=4,
                                                   lstm_hidden_size=8, lstm_num_layers=1,
                                                   num_heads=2)
    return LoadedModel(net, name="cnn-lstm-attention", class_names=["a", "b", "c"],
                       feature_names=["x", "y"], seq_len=seq_len, **loaded_options)
