"""Attention explainer: weights are distributions, rollout, mapping to input steps, errors."""

import numpy as np
import pytest
import torch

from nets_explainers import TinyCNN, TinyHybrid, inputs, loaded, small_hybrid
from tolerances import assert_close, assert_identical
from xai_attention.explainer import rollout, to_input_steps
from xaicore.errors import XaiError
from xaicore.explaining.api import explain
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry

T = 40


@pytest.fixture(scope="module")
def hybrid() -> LoadedModel:
    return small_hybrid(T)


def test_attention_rows_sum_to_one_and_attributions_are_received_attention(hybrid):
    X = inputs(5, T)
    e = explain(hybrid, X, method="attention")
    heads = e.extras["attention_layer0"]
    assert heads.shape == (5, 2, T // 4, T // 4)  # the hybrid pools by 4
    assert_close(heads.sum(-1), 1.0)
    mean = e.extras["attention_mean_layer0"]
    assert_close(mean, heads.mean(1))
    assert_close(mean.sum(-1), 1.0)
    assert "rollout" not in e.extras  # one attention layer: nothing to roll out
    received = mean.mean(1)  # [sample, key]
    keys = np.arange(T) * (T // 4) // T
    assert_close(e.attributions[:, :, 0], received[:, keys])
    assert_identical(e.attributions[:, :, 0], e.attributions[:, :, 1])  # one map, copied
    assert_close(e.extras["key_attention"].sum(1), 1.0)


def test_rollout_of_stacked_layers_is_a_row_stochastic_product():
    model = loaded(TinyHybrid, n_features=2, seq_len=T, layers=3)
    e = explain(model, inputs(3, T), method="attention")
    assert e.extras["aggregation"] == "rollout"
    roll = e.extras["rollout"]
    assert_close(roll.sum(-1), 1.0)
    eye = np.eye(roll.shape[-1])
    expected = None
    for i in range(3):
        a = 0.5 * e.extras[f"attention_mean_layer{i}"] + 0.5 * eye
        a = a / a.sum(-1, keepdims=True)
        expected = a if expected is None else a @ expected
    assert_close(roll, expected)
    assert_close(e.extras["key_attention"], roll.mean(1))


def test_rollout_of_uniform_attention_stays_uniform():
    uniform = torch.full((2, 4, 4), 0.25)
    assert_close(rollout([uniform, uniform]).sum(-1).numpy(), 1.0)
    identity = torch.eye(4).expand(2, 4, 4)
    assert_close(rollout([identity, identity]).numpy(), identity.numpy())


def test_key_positions_cover_input_steps_proportionally():
    received = torch.arange(5.0)[None]
    mapped = to_input_steps(received, 20)[0].numpy()
    np.testing.assert_array_equal(mapped, np.repeat(np.arange(5.0), 4))
    mapped = to_input_steps(torch.arange(3.0)[None], 7)[0].numpy()  # floor(t * 3 / 7)
    np.testing.assert_array_equal(mapped, [0, 0, 0, 1, 1, 2, 2])


def test_batched_result_equals_per_sample_results(hybrid):
    X = inputs(4, T)
    batched = explain(hybrid, X, method="attention")
    single = [explain(hybrid, X[i:i + 1], method="attention") for i in range(len(X))]
    assert_close(batched.attributions, np.concatenate([s.attributions for s in single]))
    assert_close(batched.extras["attention_layer0"],
                 np.concatenate([s.extras["attention_layer0"] for s in single]))


def test_models_without_attention_are_refused_by_name():
    with pytest.raises(XaiError, match="attention cannot explain model 'TinyCNN'.*no attention"):
        explain(loaded(TinyCNN, n_features=2, seq_len=T), inputs(2, T), method="attention")


def test_explanation_with_attention_extras_round_trips(hybrid, tmp_path):
    from xaicore.explaining.explanation import Explanation

    e = explain(hybrid, inputs(2, T), method="attention")
    back = Explanation.load(e.save(tmp_path / "attention.npz"))
    np.testing.assert_array_equal(back.extras["attention_layer0"], e.extras["attention_layer0"])
    assert back.extras["aggregation"] == e.extras["aggregation"]


def test_transformer_stacks_layers_and_is_rolled_out():
    torch.manual_seed(0)
    net = registry.get_model("transformer")(2, T, 3, n_layers=2, d_model=16, n_heads=2, d_ff=16)
    model = LoadedModel(net, name="transformer", class_names=["a", "b", "c"],
                        feature_names=["x", "y"], seq_len=T)
    e = explain(model, inputs(3, T), method="attention")
    assert e.extras["n_layers"] == 2 and e.extras["aggregation"] == "rollout"
    for key in ("attention_layer0", "attention_layer1"):
        assert_close(e.extras[key].sum(-1), 1.0)
    assert_close(e.extras["rollout"].sum(-1), 1.0)
    assert e.attributions.shape == (3, T, 2) and np.isfinite(e.attributions).all()
