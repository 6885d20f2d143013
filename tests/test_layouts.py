"""wrap_model(layout=...): a network in its own input layout explains like a hand-permuted one."""

import numpy as np
import pytest
import torch
from torch import nn

import xaicore
from tolerances import assert_close
from xaicore.errors import XaiError

COLUMNS = 16


class RowHybrid(nn.Module):
    """A small hybrid on rows of 16 values [batch, input_size]: they are unsqueezed to one
    Conv1d channel; a BiLSTM and self-attention follow; forward returns (logits, attention)."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                                 nn.Conv1d(8, 8, 3, padding=1), nn.ReLU())
        self.lstm = nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor):
        h = self.cnn(x.unsqueeze(1)).permute(0, 2, 1)
        h, _ = self.lstm(h)
        h, weights = self.attention(h, h, h)
        return self.fc(h.mean(1)), weights


class HandPermuted(nn.Module):
    """What a user writes without layouts: xai's [batch, time, 1] to RowHybrid's [batch, T]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, :, 0])[0]


class TutorialCNN(nn.Module):
    """The GunPoint CAM tutorial's kind of network: Conv1d over [batch, channel, time]."""

    def __init__(self, channels: int = 1, n_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, 8, 7, padding=3)
        self.conv2 = nn.Conv1d(8, 8, 5, padding=2)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(2))


def rows(n: int, length: int = COLUMNS, features: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, length, features)).astype(np.float32)


@pytest.mark.parametrize("method,options", [
    ("integrated-gradients", {"n_steps": 64}), ("saliency", {}), ("gradcam", {"relu": False}),
    ("shap", {"background": rows(20, seed=1), "n_segments": 4}),
])
def test_a_tabular_row_model_wrapped_as_nt_explains_like_the_hand_permuted_one(method, options):
    torch.manual_seed(0)
    net = RowHybrid().eval()
    names = {"class_names": ["a", "b", "c"], "feature_names": ["value"]}
    wrapped = xaicore.wrap_model(net, layout="NT", output=0, gradcam_layer="cnn.3", **names)
    by_hand = xaicore.wrap_model(HandPermuted(net), gradcam_layer="net.cnn.3", **names)
    X = rows(5)
    e = xaicore.explain(wrapped, X, method=method, **options)
    reference = xaicore.explain(by_hand, X, method=method, **options)
    assert e.attributions.shape == (5, COLUMNS, 1)  # [sample, time, feature]: 16 steps, 1 feature
    assert np.abs(reference.attributions).max() > 0
    assert_close(e.attributions, reference.attributions)
    np.testing.assert_array_equal(e.targets, reference.targets)


@pytest.mark.parametrize("channels", [1, 3])
def test_an_nct_conv1d_model_gives_captum_layer_gradcam(channels):
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    net = TutorialCNN(channels).eval()
    model = xaicore.wrap_model(net, n_classes=2, n_features=channels, layout="NCT",
                               gradcam_layer="conv2")
    X = rows(6, length=40, features=channels)
    e = xaicore.explain(model, X, method="gradcam", target=np.array([0, 1, 0, 1, 1, 0]))
    x = torch.from_numpy(X).transpose(1, 2)  # the network's own layout
    cam = LayerGradCam(net, net.conv2).attribute(x, target=torch.from_numpy(e.targets),
                                                 relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, (40,), "linear")[:, 0].detach().numpy()
    assert e.attributions.shape == (6, 40, channels) and np.abs(cam).max() > 0
    for f in range(channels):  # one map over time, given to every feature
        assert_close(e.attributions[:, :, f], cam)


def test_rows_given_in_the_networks_own_layout_are_named_not_explained_as_a_constant():
    """[n, 1, 16] (the network's own [batch, channel, time]) read by xai as one time step of 16
    features: every time map would be one constant per sample; the message names the layout."""
    torch.manual_seed(0)
    net = TutorialCNN().eval()
    X = rows(4).transpose(0, 2, 1).copy()  # [4, 1, 16]
    mistaken = xaicore.wrap_model(net, n_classes=2, n_features=COLUMNS, gradcam_layer="conv2")
    for method in ("gradcam", "gradcam++", "cam"):
        with pytest.raises(XaiError, match=r"one time step \(16 feature\(s\)\).*\[n, 16, 1\]"):
            xaicore.explain(mistaken, X, method=method)
    right = xaicore.wrap_model(net, n_classes=2, n_features=1, gradcam_layer="conv2",
                               layout="NCT")
    e = xaicore.explain(right, X.transpose(0, 2, 1), method="gradcam")
    assert e.attributions.shape == (4, COLUMNS, 1)
    assert (np.ptp(e.attributions[:, :, 0], axis=1) > 0).all()  # a map that varies over time


class OnePositionAttention(nn.Module):
    """Attention over a single pooled position: a constant over the input's time steps."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.weights = torch.ones(len(x), 1, 1, 1)
        return self.fc(x.mean(1))

    def attention_weights(self) -> list[torch.Tensor]:
        return [self.weights]


def test_attention_over_one_position_is_named_not_a_constant_map():
    model = xaicore.wrap_model(OnePositionAttention(), n_classes=2, n_features=1)
    with pytest.raises(XaiError, match="attends over one position for these 16-step series"):
        xaicore.explain(model, rows(3), method="attention")
    with pytest.raises(XaiError, match="attention maps importance over time.*one time step"):
        xaicore.explain(model, rows(3, length=1), method="attention")


def test_layout_mistakes_are_one_line_errors():
    net = RowHybrid()
    with pytest.raises(XaiError, match="layout must be one of NTF.*not 'TNF'"):
        xaicore.wrap_model(net, n_classes=3, n_features=1, layout="TNF")
    with pytest.raises(XaiError, match="layout NT takes one feature per time step.*2 features"):
        xaicore.wrap_model(net, n_classes=3, n_features=2, layout="NT")
    tuple_out = xaicore.wrap_model(net, n_classes=3, n_features=1, layout="NT")
    with pytest.raises(XaiError, match="returns a tuple of 2; name the logits' position.*output=0"):
        xaicore.explain(tuple_out, rows(2), method="saliency")
