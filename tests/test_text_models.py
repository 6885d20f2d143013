"""The token networks follow the token-network contract: padding-invariant logits, exposed
attention, one embedding call per forward and gradients from its output."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tolerances import assert_close
from xai_text.networks import TokenHybrid, TokenTransformer
from xaicore.errors import XaiError
from xaicore.plugin import Option

NETWORKS = [TokenHybrid, TokenTransformer]
VOCAB, SEQ_LEN, CLASSES = 50, 24, 3
CLS, SEP = 2, 3


def build(cls: type[nn.Module], seed: int = 0, **params) -> Any:
    torch.manual_seed(seed)
    return cls(VOCAB, SEQ_LEN, CLASSES, pad_id=0, **params).eval()


def texts(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random texts [CLS] ... [SEP] of ``lengths`` tokens, padded with 0 to the longest."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, VOCAB, (n,), generator=generator)
        ids[row, 0], ids[row, n - 1] = CLS, SEP
    return ids, ids != 0


@pytest.mark.parametrize("cls", NETWORKS)
def test_forward_gives_finite_logits_per_text(cls):
    ids, mask = texts([7, 12, 3, 20])
    out = build(cls)(ids, mask)
    assert out.shape == (4, CLASSES) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("cls", NETWORKS)
def test_contract_attributes(cls):
    net = build(cls)
    assert cls.modality == "tokens" and cls.variable_length is True
    assert isinstance(net.get_submodule(cls.embedding_layer), nn.Embedding)
    if cls.gradcam_layer is not None:
        assert isinstance(net.get_submodule(cls.gradcam_layer), nn.Conv1d)
    assert net.params == {o.name: o.default for o in cls.options}
    assert {"epochs", "batch_size", "lr"} <= set(cls.training_defaults)


@pytest.mark.parametrize("cls", NETWORKS)
def test_options_are_declared_with_ranges_and_checked(cls):
    assert cls.options and all(isinstance(o, Option) for o in cls.options)
    for option in cls.options:
        assert option.help and option.min is not None and option.max is not None
        assert option.min <= option.default <= option.max
    first = cls.options[0]
    with pytest.raises(XaiError):
        cls(VOCAB, SEQ_LEN, CLASSES, **{first.name: first.max + 1})
    with pytest.raises(XaiError, match="no parameter"):
        cls(VOCAB, SEQ_LEN, CLASSES, no_such_option=1)


@pytest.mark.parametrize("cls", NETWORKS)
def test_params_override_the_defaults(cls):
    name = "dropout"
    net = cls(VOCAB, SEQ_LEN, CLASSES, **{name: 0.25})
    assert net.params[name] == 0.25


@pytest.mark.parametrize("cls", NETWORKS)
def test_padding_does_not_change_the_logits(cls):
    net = build(cls)
    ids, mask = texts([6, 9, SEQ_LEN])
    with torch.no_grad():
        together = net(ids, mask)
        alone = torch.cat([net(ids[i:i + 1, :n], mask[i:i + 1, :n]) for i, n in enumerate([6, 9, SEQ_LEN])])
        # the padding's ids do not matter either
        noisy = net(ids.masked_fill(~mask, 7), mask)
    assert_close(together, alone)
    assert_close(together, noisy)


@pytest.mark.parametrize("cls", NETWORKS)
def test_padding_does_not_change_the_logits_in_training_mode_without_dropout(cls):
    net = build(cls, dropout=0.0).train()
    ids, mask = texts([5, 11])
    together = net(ids, mask)
    alone = net(ids[:1, :5], mask[:1, :5])
    assert_close(together[:1], alone)


@pytest.mark.parametrize("cls", NETWORKS)
def test_attention_weights_are_rows_of_a_softmax_over_real_keys(cls):
    net = build(cls)
    lengths = [4, 10, 7]
    ids, mask = texts(lengths)
    with torch.no_grad():
        net(ids, mask)
    weights = net.attention_weights()
    heads = net.params.get("num_heads", net.params.get("n_heads"))
    assert len(weights) == net.params.get("n_layers", 1)
    for w in weights:
        assert w.shape == (3, heads, 10, 10) and not w.requires_grad
        assert_close(w.sum(dim=-1), torch.ones(3, heads, 10))
        assert (w.masked_select(~mask[:, None, None, :].expand_as(w)) == 0).all()
        assert (w[:, :, :, 0] > 0).all()


def test_transformer_exposes_attention_per_layer():
    net = build(TokenTransformer, n_layers=3)
    with torch.no_grad():
        net(*texts([5, 8]))
    assert [w.shape for w in net.attention_weights()] == [(2, 4, 8, 8)] * 3


@pytest.mark.parametrize("cls", NETWORKS)
def test_embedding_runs_once_per_forward(cls):
    net = build(cls)
    calls = []
    handle = net.get_submodule(cls.embedding_layer).register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        net(*texts([5, 8]))
        net(*texts([3]))
    handle.remove()
    assert len(calls) == 2


@pytest.mark.parametrize("cls", NETWORKS)
def test_gradients_flow_from_the_embedding_output(cls):
    """Explainers replace the embedding's output (captum's layer attributions do): the logits
    must depend on the replacement, at every real token."""
    net = build(cls)
    ids, mask = texts([6, 9])
    replaced = []

    def replace(_module, _inputs, out):
        new = out.detach().clone().requires_grad_(True)
        replaced.append(new)
        return new

    handle = net.get_submodule(cls.embedding_layer).register_forward_hook(replace)
    net(ids, mask)[:, 1].sum().backward()
    handle.remove()
    grad = replaced[0].grad
    assert grad is not None and grad.shape == (2, 9, replaced[0].shape[2])
    per_token = grad.abs().sum(dim=2)
    assert (per_token[mask] > 0).all()
    assert (per_token[~mask] == 0).all()  # padding does not reach the logits


@pytest.mark.parametrize("cls", NETWORKS)
def test_construction_and_training_are_deterministic_under_a_seed(cls):
    ids, mask = texts([6, 9, 12])
    labels = torch.tensor([0, 1, 2])

    def trained(seed: int) -> torch.Tensor:
        net = build(cls, seed=seed).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=0.01)
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(ids, mask), labels).backward()
            optimizer.step()
        with torch.no_grad():
            return net.eval()(ids, mask)

    torch.manual_seed(123)
    first = trained(0)
    torch.manual_seed(456)
    assert torch.equal(first, trained(0))
    assert not torch.equal(first, trained(1))


@pytest.mark.parametrize("cls", NETWORKS)
def test_refuses_texts_without_real_tokens_and_bad_shapes(cls):
    net = build(cls)
    ids, mask = texts([4, 4])
    mask[1] = False
    with pytest.raises(XaiError, match="real token"):
        net(ids, mask)
    with pytest.raises(XaiError):
        cls(1, SEQ_LEN, CLASSES)
    with pytest.raises(XaiError):
        cls(VOCAB, SEQ_LEN, 1)
    with pytest.raises(XaiError, match="pad_id"):
        cls(VOCAB, SEQ_LEN, CLASSES, pad_id=VOCAB)


def test_heads_must_divide_the_attention_width():
    with pytest.raises(XaiError, match="heads"):
        TokenHybrid(VOCAB, SEQ_LEN, CLASSES, lstm_hidden_size=5, num_heads=4)
    with pytest.raises(XaiError, match="heads"):
        TokenTransformer(VOCAB, SEQ_LEN, CLASSES, d_model=30, n_heads=4)


def test_hybrid_refuses_an_even_kernel():
    with pytest.raises(XaiError, match="odd"):
        TokenHybrid(VOCAB, SEQ_LEN, CLASSES, kernel_size=4)


def test_transformer_refuses_texts_longer_than_its_positions():
    with pytest.raises(XaiError, match="positions"):
        build(TokenTransformer)(*texts([SEQ_LEN + 1]))


def test_hybrid_gradcam_layer_gives_channel_by_token_maps():
    net = build(TokenHybrid)
    ids, mask = texts([5, 9])
    seen = []
    handle = net.get_submodule("conv").register_forward_hook(
        lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        net(ids, mask)
    handle.remove()
    assert seen[0].shape == (2, net.params["cnn_channels"], 9)
