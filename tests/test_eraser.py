"""Comprehensiveness and sufficiency (ERASER, ferret's AOPC form) on models whose output is a known
function of their inputs: hand-computed values, the true ranking against random and reversed ones,
special tokens never removed, series as well as texts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaicore.errors import XaiError
from xaicore.explaining.base import build_explanation
from xaicore.models.loaded import LoadedModel

TEXTS = ["good film with a plot", "a plot with music and a good cast", "good",
         "music and film and cast with a good plot and more music"]


def sigmoid(v: float) -> float:
    return float(1 / (1 + np.exp(-v)))


class TokenWeights(nn.Module):
    """Class 1 logit = the sum of a weight per token id over the text's tokens; class 0 logit = 0."""

    modality = "tokens"
    embedding_layer = "embedding"

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.embedding = nn.Embedding(len(weights), 1)
        with torch.no_grad():
            self.embedding.weight[:, 0] = weights

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        score = (self.embedding(ids)[..., 0] * mask).sum(1)
        return torch.stack([torch.zeros_like(score), score], 1)


@pytest.fixture(scope="module")
def tokenizer():
    from xai_text.tokenizer import TextTokenizer

    return TextTokenizer.train(TEXTS * 2, vocab_size=80, min_frequency=1)


def token_model(tokenizer, weights: dict[int, float]):
    """A ``TokenWeights`` model giving ``weights`` to those ids and 0 to every other."""
    from xai_text.modality import token_model as wrap

    w = torch.zeros(tokenizer.vocab_size)
    for token, value in weights.items():
        w[token] = value
    return wrap(TokenWeights(w), tokenizer, name="token-weights", class_names=["other", "good"],
                seq_len=32)


def explain(model, X: np.ndarray, attributions: np.ndarray):
    """The explanation of class 1 with the given attributions."""
    target = torch.ones(len(X), dtype=torch.long)
    return build_explanation(model, torch.from_numpy(X), target, attributions, "hand", {})


def good_id(tokenizer) -> int:
    return tokenizer.tokenizer.token_to_id("good")


def test_one_deciding_token_gives_the_hand_computed_values_and_beats_other_orders(tokenizer):
    """Only "good" (weight 2) and [CLS] (weight 1) count: p(x) = sigmoid(3) for every text. The
    true ranking removes "good" in every bin (comprehensiveness sigmoid(3) - sigmoid(1), [CLS]
    stays) and keeps it alone (sufficiency 0); the reversed one never reaches it below 50%."""
    from xai_eval.eraser import ComprehensivenessMetric, SufficiencyMetric

    cls = tokenizer.role_id("cls")
    model = token_model(tokenizer, {good_id(tokenizer): 2.0, cls: 1.0})
    X = model.check_inputs(TEXTS)
    truth = np.where(X == good_id(tokenizer), 1.0, 0.0).astype(np.float32)
    truth[np.isnan(X)] = np.nan
    special = np.isin(X, sorted(tokenizer.special_ids))
    truth[special] = 100.0  # ranked first, yet never removed nor counted
    comprehensive = ComprehensivenessMetric().evaluate(model, explain(model, X, truth))
    sufficient = SufficiencyMetric().evaluate(model, explain(model, X, truth))
    assert comprehensive["comprehensiveness"] == pytest.approx(sigmoid(3) - sigmoid(1), abs=1e-6)
    assert sufficient["sufficiency"] == pytest.approx(0.0, abs=1e-6)
    assert comprehensive["comprehensiveness"] > comprehensive["comprehensiveness_random"]
    assert sufficient["sufficiency"] < sufficient["sufficiency_random"]
    reverse = np.where(special, 100.0, -truth).astype(np.float32)
    long = [i for i, text in enumerate(TEXTS) if len(text.split()) > 2]  # "good" not in the top 50%
    e = explain(model, X[long], reverse[long])
    assert ComprehensivenessMetric().evaluate(model, e)["comprehensiveness"] == pytest.approx(0, abs=1e-6)
    assert SufficiencyMetric().evaluate(model, e)["sufficiency"] == pytest.approx(
        sigmoid(3) - sigmoid(1), abs=1e-6)


def test_an_additive_model_matches_the_aopc_computed_by_hand(tokenizer):
    """Every word its own weight: the probability after removing or keeping the top k tokens is a
    sum, so each bin's drop and the mean over the bins counted (a size repeated counts once) can
    be computed token by token."""
    from xai_eval.eraser import ComprehensivenessMetric, SufficiencyMetric

    rng = np.random.default_rng(3)
    weights = {i: float(rng.normal()) for i in range(tokenizer.vocab_size)}
    model = token_model(tokenizer, weights)
    X = model.check_inputs(TEXTS)
    attributions = rng.normal(size=X.shape).astype(np.float32)
    attributions[np.isnan(X)] = np.nan
    e = explain(model, X, attributions)
    bins = [1, 5, 10, 20, 50]
    options = {"bins": bins, "substrate": "pad", "random_baseline": False}
    got_c = ComprehensivenessMetric().evaluate_curves(model, e, **options)[1]["per_sample"]
    got_s = SufficiencyMetric().evaluate_curves(model, e, **options)[1]["per_sample"]
    pad, special = tokenizer.pad_id, tokenizer.special_ids
    for i, row in enumerate(X[..., 0]):
        ids = [int(v) for v in row[~np.isnan(row)]]
        real = [t for t, v in enumerate(ids) if v not in special]
        top = sorted(real, key=lambda t: -attributions[i, t, 0])
        full = sigmoid(sum(weights[v] for v in ids))
        sizes = list(dict.fromkeys(max(1, len(real) * b // 100) for b in bins))
        comp, suff = [], []
        for k in sizes:
            gone = set(top[:k])
            without = [pad if t in gone else v for t, v in enumerate(ids)]
            alone = [v if t in gone or t not in real else pad for t, v in enumerate(ids)]
            comp.append(full - sigmoid(sum(weights[v] for v in without)))
            suff.append(full - sigmoid(sum(weights[v] for v in alone)))
        assert got_c["comprehensiveness"][i] == pytest.approx(np.mean(comp), abs=1e-6)
        assert got_s["sufficiency"][i] == pytest.approx(np.mean(suff), abs=1e-6)


def test_rationale_sizes_take_at_least_one_cell_and_count_a_repeated_size_once():
    from xai_eval.eraser import rationale_sizes

    removable = np.zeros((2, 40, 1), bool)
    removable[0, :3] = True
    removable[1] = True
    sizes, counted = rationale_sizes(removable, [50, 1, 5, 10, 20])
    assert sizes.tolist() == [[1, 1, 1, 1, 1], [1, 2, 4, 8, 20]]
    assert counted.tolist() == [[True, False, False, False, False], [True] * 5]


class OneCell(nn.Module):
    """Series: class 1 logit = 3 x[:, 5, 1]; class 0 logit = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 3 * x[:, 5, 1]
        return torch.stack([torch.zeros_like(score), score], 1)


def test_series_remove_their_valid_cells_as_the_train_mean():
    from xai_eval.eraser import ComprehensivenessMetric, SufficiencyMetric

    model = LoadedModel(OneCell(), name="one-cell", class_names=["a", "b"], feature_names=["x", "y"],
                        seq_len=20, mean=[0.0, 0.0], std=[1.0, 1.0])
    X = np.random.default_rng(0).normal(size=(6, 20, 2)).astype(np.float32)
    X[:, 5, 1] = 1.0
    truth = np.zeros_like(X)
    truth[:, 5, 1] = 1.0
    e = explain(model, X, truth)
    c = ComprehensivenessMetric().evaluate(model, e)
    s = SufficiencyMetric().evaluate(model, e)
    assert c["comprehensiveness"] == pytest.approx(sigmoid(3) - 0.5, abs=1e-6)  # x -> mean 0
    assert s["sufficiency"] == pytest.approx(0.0, abs=1e-6)
    assert c["comprehensiveness_random"] < c["comprehensiveness"]
    assert s["sufficiency_random"] > s["sufficiency"]
    # several explanations scored together equal each scored alone
    other = explain(model, X, np.random.default_rng(1).normal(size=X.shape).astype(np.float32))
    together = ComprehensivenessMetric().evaluate_many(model, [e, other])
    assert together[1][0] == ComprehensivenessMetric().evaluate(model, other)


def test_rationale_options_are_checked(tokenizer):
    from xai_eval.eraser import ComprehensivenessMetric

    model = token_model(tokenizer, {})
    X = model.check_inputs(TEXTS[:1])
    e = explain(model, X, np.zeros_like(X))
    with pytest.raises(XaiError, match="bins"):
        ComprehensivenessMetric().evaluate(model, e, bins=[0, 50])
    with pytest.raises(XaiError, match="substrate must be one of mask, pad for texts"):
        ComprehensivenessMetric().evaluate(model, e, substrate="mean")
