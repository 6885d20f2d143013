"""The built-in networks follow the Network convention and expose what the explainers need."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tolerances import assert_close, is_close
from xaicore.errors import XaiError
from xaicore.plugins import registry

MODELS = ["cnn-lstm-attention", "inception-time", "fcn", "resnet", "transformer"]
SHAPES = [(1, 40), (3, 24)]  # (features, time steps)


def build(name: str, n_features: int, seq_len: int, n_classes: int = 3, **params) -> nn.Module:
    torch.manual_seed(0)
    return registry.get_model(name)(n_features, seq_len, n_classes, **params).eval()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n_features, seq_len", SHAPES)
def test_forward_maps_ntf_batches_to_logits(name, n_features, seq_len):
    net = build(name, n_features, seq_len)
    out = net(torch.randn(5, seq_len, n_features))
    assert isinstance(out, torch.Tensor) and out.shape == (5, 3)
    assert torch.isfinite(out).all()
    assert isinstance(net.default_params, dict) and hasattr(type(net), "gradcam_layer")


@pytest.mark.parametrize("name", MODELS)
def test_samples_are_independent_in_eval_mode(name):
    """Explainers batch samples: a sample's logits must not depend on its batch mates."""
    net = build(name, 2, 30)
    x = torch.randn(6, 30, 2)
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(6)])
    assert_close(together, alone)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_input_step(name):
    net = build(name, 2, 32)
    x = torch.randn(3, 32, 2, requires_grad=True)
    net(x)[:, 1].sum().backward()
    assert x.grad is not None and (x.grad.abs().sum(dim=(0, 2)) > 0).float().mean() > 0.9


@pytest.mark.parametrize("name", [m for m in MODELS if m != "transformer"])
def test_gradcam_layer_gives_channel_by_time_maps(name):
    net = build(name, 2, 48)
    layer = net.get_submodule(net.gradcam_layer)
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    net(torch.randn(4, 48, 2))
    handle.remove()
    assert len(seen) == 1 and seen[0].ndim == 3 and seen[0].shape[0] == 4
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv1d)]
    assert convs, f"{name}: Grad-CAM layer {net.gradcam_layer} holds no convolution"


def test_transformer_has_no_gradcam_layer():
    assert registry.get_model("transformer").gradcam_layer is None


@pytest.mark.parametrize("name, layers", [("cnn-lstm-attention", 1), ("transformer", 2)])
def test_attention_weights_of_the_last_forward(name, layers):
    net = build(name, 2, 40)
    x = torch.randn(3, 40, 2)
    net(x)
    weights = net.attention_weights()
    assert len(weights) == layers
    for w in weights:
        assert w.ndim == 4 and w.shape[0] == 3 and w.shape[2] == w.shape[3]
        assert_close(w.sum(-1), 1.0)
    first = weights[0].clone()
    net(x[:1] * 5)
    assert net.attention_weights()[0].shape[0] == 1  # replaced, not appended
    assert not is_close(net.attention_weights()[0][0], first[0])
    net(x.requires_grad_(True)).sum().backward()  # kept weights hold no graph of the pass:
    assert all(w.grad_fn is None for w in net.attention_weights())
    copy.deepcopy(net)  # a copy (the randomisation check's) works right after a gradient pass


def test_transformer_attention_weights_are_the_ones_used():
    """Uniform weights make each head's output the mean of its values: check against that."""
    net = build("transformer", 1, 10, n_layers=1, dropout=0.0)
    attention = net.layers[0].attention
    with torch.no_grad():
        attention.qkv.weight[: 2 * 64].zero_()  # queries and keys 0 -> uniform attention
        attention.qkv.bias[: 2 * 64].zero_()
    h = torch.randn(2, 10, 64)
    out = attention(h)
    assert_close(attention.weights, 0.1)
    v = attention.qkv(h)[..., 128:]
    expected = attention.out(v.mean(dim=1, keepdim=True).expand(-1, 10, -1))
    assert_close(out, expected)


def test_hybrid_default_architecture():
    cls = registry.get_model("cnn-lstm-attention")
    assert {k: cls.default_params[k] for k in ("cnn_channels", "lstm_hidden_size",
                                               "lstm_num_layers", "num_heads")} == \
        {"cnn_channels": 16, "lstm_hidden_size": 32, "lstm_num_layers": 2, "num_heads": 4}
    net = build("cnn-lstm-attention", 4, 64)
    kinds = [type(m) for m in net.cnn]
    assert kinds == [nn.Conv1d, nn.ReLU, nn.BatchNorm1d, nn.MaxPool1d] * 2
    assert net.cnn[0].in_channels == 4  # features as channels
    assert net.lstm.bidirectional and net.lstm.num_layers == 2
    assert isinstance(net.attention, nn.MultiheadAttention)
    assert isinstance(net.get_submodule(net.gradcam_layer), nn.Conv1d)
    net(torch.randn(2, 64, 4))
    assert net.attention_weights()[0].shape == (2, 4, 16, 16)  # time / 4 after two poolings


def test_inception_time_is_the_published_shape():
    net = build("inception-time", 1, 64)
    modules = [m for m in net.modules() if type(m).__name__ == "InceptionModule"]
    assert len(modules) == 6 and len(net.blocks) == 2  # a residual shortcut every 3 modules
    assert net.fc.in_features == 128  # 4 branches x 32 filters


def test_fcn_and_resnet_are_the_published_shapes():
    fcn = build("fcn", 1, 64)
    assert [b.conv.out_channels for b in fcn.blocks] == [128, 256, 128]
    assert [b.conv.kernel_size[0] for b in fcn.blocks] == [8, 5, 3]
    resnet = build("resnet", 1, 64)
    assert [b.conv1.conv.out_channels for b in resnet.blocks] == [64, 128, 128]
    x = torch.randn(2, 64, 1)
    assert fcn.blocks(x.transpose(1, 2)).shape[-1] == 64  # "same" padding keeps the length


@pytest.mark.parametrize("name", MODELS)
def test_unknown_or_bad_params_are_xai_errors(name):
    with pytest.raises(XaiError, match="no parameter 'nope'"):
        build(name, 1, 32, nope=1)
    key, value = next(iter(registry.get_model(name).default_params.items()))
    with pytest.raises(XaiError, match=key):
        build(name, 1, 32, **{key: "many"})
    assert isinstance(value, (int, list))


def test_series_too_short_for_the_hybrid_is_refused():
    with pytest.raises(XaiError, match="at least 4 time steps"):
        build("cnn-lstm-attention", 1, 3)


@pytest.mark.parametrize("name", MODELS)
def test_a_few_steps_fit_a_separable_toy_problem(name):
    torch.manual_seed(0)
    X = torch.randn(32, 24, 1) * 0.3
    y = torch.arange(32) % 2
    X[y == 1, 8:16] += 2.0  # class 1 has a bump in the middle
    net = build(name, 1, 24, 2).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_loaded_models_satisfy_the_complete_model_protocol():
    from xaicore.models.loaded import wrap_model
    from xaicore.protocols import Model

    members = set(Model.__annotations__) | {name for name, value in vars(Model).items()
                                            if not name.startswith("_")
                                            and (callable(value) or isinstance(value, property))}
    used_by_plugins = {"normalisation", "layer", "logits", "predict_proba", "has_attention",
                       "check_inputs", "hyperparameters", "dataset", "to"}
    assert used_by_plugins <= members
    model = wrap_model(build("fcn", 2, 16, filters=[4, 4, 4]), class_names=["a", "b", "c"],
                       n_features=2, seq_len=16)
    assert isinstance(model, Model)
    assert [name for name in sorted(members) if not hasattr(model, name)] == []
