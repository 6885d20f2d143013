"""SHAP and occlusion over the tokens and words of texts (a small text run trained through the CLI),
and window-occlusion of series against captum's Occlusion."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from test_shap import HybridNet, data, wrap
from test_text import train_text_run
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError

SPLIT = "a joyful warmly acted films"  # words of several tokens
LONG = "a boring waste of time and flat acting and a lifeless plot"  # 12 words: sampled by default


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """The small hybrid of test_text trained on a JSONL file of texts through the CLI."""
    return train_text_run(tmp_path_factory.mktemp("texts"))


@pytest.fixture(scope="module")
def model(text_run):
    return xaicore.load_run(text_run)


def target_logits(model, X: np.ndarray, target: np.ndarray) -> np.ndarray:
    return model.logits(X).astype(np.float64)[np.arange(len(X)), target]


def masked(model, X: np.ndarray, word_ids: np.ndarray, absent: set[int], token: int) -> np.ndarray:
    """``X`` with the tokens of the words ``absent`` replaced by ``token``, written directly."""
    out = X.copy()
    out[0, np.isin(word_ids[0], sorted(absent)), 0] = token
    return out


def shapley_by_permutations(model, x: np.ndarray, word_ids: np.ndarray, target: int,
                            token: int) -> np.ndarray:
    """Word Shapley values as the mean marginal contribution over every order of the words."""
    m = int(word_ids.max()) + 1
    value = {}
    for size in range(m + 1):
        for present in itertools.combinations(range(m), size):
            gone = set(range(m)) - set(present)
            value[frozenset(present)] = target_logits(model, masked(model, x, word_ids, gone, token),
                                                      np.array([target]))[0]
    phi = np.zeros(m)
    for order in itertools.permutations(range(m)):
        before: set[int] = set()
        for word in order:
            phi[word] += value[frozenset(before | {word})] - value[frozenset(before)]
            before.add(word)
    return phi / math.factorial(m)


@pytest.mark.parametrize("absent", ["mask", "pad"])
def test_exact_word_values_are_the_shapley_values_and_sum_to_the_masked_gap(model, absent):
    texts = ["a wonderful moving film", "dull", SPLIT]
    e = xaicore.explain(model, texts, method="shap", absent=absent)
    assert e.extras["algorithm"] == "exact" and e.extras["exact"].all()
    assert (e.extras["standard_error"][~np.isnan(e.inputs)] == 0).all()
    token = getattr(model.tokenizer, f"{absent}_id")
    all_masked = np.where(np.isnan(e.inputs) | np.isin(e.inputs, sorted(model.tokenizer.special_ids)),
                          e.inputs, token).astype(np.float32)
    gap = target_logits(model, e.inputs, e.targets) - target_logits(model, all_masked, e.targets)
    assert_close(np.nansum(e.attributions, (1, 2)), gap, scale=float(np.abs(gap).max()))
    assert e.extras["additivity_error"].max() < 1e-4
    assert_close(e.extras["expected_value"], target_logits(model, all_masked, e.targets))
    # the first text against the Shapley formula written as orders of its four words
    word_ids = e.extras["word_ids"][:1]
    oracle = shapley_by_permutations(model, e.inputs[:1], word_ids, int(e.targets[0]), token)
    assert_close(e.extras["word_values"][0, :4], oracle, scale=float(np.abs(oracle).max()))
    special = np.isin(e.inputs[..., 0], sorted(model.tokenizer.special_ids))
    assert (e.attributions[..., 0][special] == 0).all()
    assert np.isnan(e.attributions[1, 3:]).all() and np.isnan(e.extras["word_values"][1, 1:]).all()


def test_sampled_values_approach_the_exact_ones_within_their_standard_errors(model):
    exact = xaicore.explain(model, [LONG], method="shap", algorithm="exact")
    assert exact.extras["n_players"].tolist() == [12]
    errors = []
    for n_pairs in (200, 3000):
        sampled = xaicore.explain(model, [LONG], method="shap", algorithm="sampled",
                                  n_pairs=n_pairs, seed=1)
        assert sampled.extras["algorithm"] == "sampled" and not sampled.extras["exact"].any()
        assert sampled.extras["additivity_error"].max() < 1e-4  # exact by construction
        words = sampled.extras["word_values"][0, :12].astype(np.float64)
        truth = exact.extras["word_values"][0, :12].astype(np.float64)
        se = sampled.extras["standard_error"][0, 1:13, 0].astype(np.float64)  # one token per word
        assert (se > 0).all()
        assert np.mean(((words - truth) / se) ** 2) < 4  # errors of the size their errors say
        errors.append(np.linalg.norm(words - truth) / np.linalg.norm(truth))
    assert errors[1] < 0.05 and errors[1] < errors[0]


def test_a_words_tokens_share_its_value_and_tokens_sum_to_the_words(model):
    words = xaicore.explain(model, [SPLIT], method="shap", players="words")
    tokens = xaicore.explain(model, [SPLIT], method="shap", players="tokens")
    word_ids = words.extras["word_ids"][0]
    assert words.extras["n_players"][0] == word_ids.max() + 1 == 5
    assert tokens.extras["n_players"][0] == (word_ids >= 0).sum() == 11
    for e in (words, tokens):
        sums = [e.attributions[0, word_ids == w, 0].sum() for w in range(5)]
        assert_close(e.extras["word_values"][0, :5], sums)
        assert np.isnan(e.extras["word_values"][0, 5:]).all()
    for w in range(5):  # spread evenly
        share = words.attributions[0, word_ids == w, 0]
        assert_close(share, np.full(len(share), share.mean()))
    # two games with the same total: both sum to f(x) - f(all masked)
    assert_close(words.attributions[0].sum(), tokens.attributions[0].sum(),
                 scale=float(np.abs(tokens.attributions).sum()))
    # on a text whose words are single tokens the two games are one
    one = [xaicore.explain(model, ["warm funny brilliant"], method="shap", players=p)
           for p in ("words", "tokens")]
    assert_close(one[0].attributions, one[1].attributions)


@pytest.mark.parametrize("options", [{}, {"algorithm": "sampled", "n_pairs": 50}])
def test_a_text_gets_the_same_values_alone_and_in_a_padded_batch(model, options):
    """Texts of other player counts and lengths beside it change nothing: each text's game is its
    own, its sampled pairs its own generator's."""
    alone = xaicore.explain(model, [SPLIT], method="shap", **options)
    batch = xaicore.explain(model, [LONG, "dull", SPLIT, "a wonderful film"], method="shap", **options)
    n = int(alone.lengths[0])
    assert_close(batch.attributions[2, :n], alone.attributions[0, :n], rtol=1e-4)
    assert_close(batch.extras["standard_error"][2, :n], alone.extras["standard_error"][0, :n],
                 rtol=1e-4)
    assert np.isnan(batch.attributions[1, 3:]).all()


def test_occlusion_of_texts_is_the_drop_when_each_token_or_word_is_masked(model):
    texts = ["a wonderful moving film", SPLIT]
    tokens = xaicore.explain(model, texts, method="window-occlusion")
    words = xaicore.explain(model, texts, method="window-occlusion", unit="words", baseline="pad")
    fx = target_logits(model, tokens.inputs, tokens.targets)
    for i in range(2):
        x, word_ids = tokens.inputs[i:i + 1], tokens.extras["word_ids"][i:i + 1]
        for t in np.flatnonzero(word_ids[0] >= 0):
            gone = x.copy()
            gone[0, t, 0] = model.tokenizer.mask_id
            drop = fx[i] - target_logits(model, gone, tokens.targets[i:i + 1])[0]
            assert_close(tokens.attributions[i, t, 0], drop, scale=abs(fx[i]))
        for w in range(int(word_ids.max()) + 1):
            gone = masked(model, x, word_ids, {w}, model.tokenizer.pad_id)
            drop = fx[i] - target_logits(model, gone, words.targets[i:i + 1])[0]
            assert_close(words.extras["word_values"][i, w], drop, scale=abs(fx[i]))
            share = words.attributions[i, word_ids[0] == w, 0]
            assert_close(share, np.full(len(share), drop / len(share)), scale=abs(fx[i]))
    special = np.isin(tokens.inputs[..., 0], sorted(model.tokenizer.special_ids))
    assert (tokens.attributions[..., 0][special] == 0).all()
    assert (words.attributions[..., 0][special] == 0).all()


@pytest.mark.parametrize("baseline, window, stride", [("zero", 5, 2), ("mean", 4, 4),
                                                       ("mean", 7, 3), ("zero", 40, 3)])
def test_window_occlusion_of_series_equals_captum_occlusion(baseline, window, stride):
    """captum adds each window's drop to every cell it covers and divides by how many windows
    cover the cell; the last window is cut at the end, a window longer than the series is cut."""
    from captum.attr import Occlusion

    model, X, background = wrap(HybridNet, seq_len=23), data(4, 23), data(20, 23, seed=1)
    e = xaicore.explain(model, X, method="window-occlusion", window=window, stride=stride,
                        baseline=baseline, background=background)
    x = torch.from_numpy(X)
    base = torch.zeros_like(x) if baseline == "zero" else \
        torch.from_numpy(background).mean(0, keepdim=True).expand_as(x)
    theirs = Occlusion(model.module).attribute(
        x, sliding_window_shapes=(min(window, 23), 1), strides=(stride, 1), baselines=base,
        target=torch.from_numpy(e.targets)).numpy()
    assert_close(e.attributions, theirs, scale=float(np.abs(theirs).max()))
    assert e.extras["windows"] == 2 * (math.ceil((23 - min(window, 23)) / stride) + 1)


def test_options_of_one_kind_are_refused_for_the_other(model):
    series = wrap(HybridNet, seq_len=12)
    X, background = data(2, 12), data(6, 12, seed=1)
    with pytest.raises(XaiError, match="players and absent are options of texts"):
        xaicore.explain(series, X, method="shap", background=background, players="tokens")
    with pytest.raises(XaiError, match="unit is an option of texts"):
        xaicore.explain(series, X, method="window-occlusion", unit="words")
    with pytest.raises(XaiError, match="stride 6 is larger than the window"):
        xaicore.explain(series, X, method="window-occlusion", window=4, stride=6)
    with pytest.raises(XaiError, match="n_segments cuts series"):
        xaicore.explain(model, ["dull"], method="shap", n_segments=2)
    with pytest.raises(XaiError, match="algorithm 'deep' is per time step"):
        xaicore.explain(model, ["dull"], method="shap", algorithm="deep")
    with pytest.raises(XaiError, match="shap: option absent must be one of mask, pad for tokens, "
                                        "not 'unk'"):
        xaicore.explain(model, ["dull"], method="shap", absent="unk")
    with pytest.raises(XaiError, match="option baseline must be one of mask, pad for tokens"):
        xaicore.explain(model, ["dull"], method="window-occlusion", baseline="zero")


def test_explain_cli_runs_shap_and_occlusion_on_texts(text_run, model):
    result = xai("explain", "--run", text_run, "--method", "shap", "--method", "window-occlusion",
                 "--option", "shap.players=tokens", "--option", "window-occlusion.unit=words",
                 "--text", SPLIT, "--text", "dull", "--figures")
    assert result.exit_code == 0, result.output
    folder = text_run / "explanations" / "texts"
    shap = xaicore.load_explanation(folder / "shap.npz")
    assert shap.extras["players"] == "tokens" and shap.extras["absent"] == "mask"
    assert (folder / "figures" / "shap" / "tokens.html").exists()
    alone = xaicore.explain(model, [SPLIT, "dull"], method="shap", players="tokens")
    assert_close(shap.attributions, alone.attributions, equal_nan=True)
    occlusion = xaicore.load_explanation(folder / "window-occlusion.npz")
    assert occlusion.extras["unit"] == "words" and occlusion.extras["word_values"].shape == (2, 13)
