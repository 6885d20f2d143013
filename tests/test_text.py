"""Texts as the second kind of input, end to end: a text file trained into a run, explained by the
gradient methods on the embeddings, Grad-CAM and attention, checked against captum and the
properties each method has."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError

POSITIVE = ["a wonderful moving film", "brilliant and warm", "a joy to watch", "funny and smart",
            "moving and wonderful acting", "warm funny brilliant", "smart and a joy"]
NEGATIVE = ["dull and tedious", "a waste of time", "boring flat acting", "tedious and dull plot",
            "a boring waste", "flat and lifeless", "lifeless boring mess"]


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A small hybrid trained on a JSONL file of texts (labels pos and neg) through the CLI."""
    folder = tmp_path_factory.mktemp("texts")
    rows = [{"review": t, "sentiment": "pos"} for t in POSITIVE * 6] + \
           [{"review": t, "sentiment": "neg"} for t in NEGATIVE * 6]
    data = folder / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = folder / "run"
    result = xai("train", "--dataset", data, "--text-column", "review", "--label-column",
                 "sentiment", "--model", "text-cnn-lstm-attention", "--out", run, "--epochs", "12",
                 "--param", "embedding_dim=16", "--param", "cnn_channels=16", "--param",
                 "lstm_hidden_size=8", "--param", "num_heads=2", "--param", "dropout=0.0",
                 "--data", "vocab_size=120", "--data", "max_length=16", "--quiet")
    assert result.exit_code == 0, result.output
    return run


def test_a_text_run_is_trained_from_a_file_and_reloads_its_tokenizer(text_run):
    metrics = json.loads((text_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9  # the words separate the classes
    model = xaicore.load_run(text_run)
    assert model.modality == "tokens" and model.feature_names == ["token"]
    X = model.check_inputs(["a wonderful film", "dull"])
    assert X.shape == (2, 5, 1) and np.isnan(X[1, 3:]).all()
    assert model.tokenizer.tokens(X[0]) == ["[CLS]", "a", "wonderful", "film", "[SEP]"]
    probs = model.predict_proba(["a wonderful moving film", "a boring waste of time"])
    assert probs[0].argmax() == model.class_names.index("pos")
    assert probs[1].argmax() == model.class_names.index("neg")


def test_integrated_gradients_equals_captum_layer_integrated_gradients(text_run):
    """The same path, the same embedding layer and a PAD baseline that keeps [CLS] and [SEP]
    (captum's BERT tutorial): captum's LayerIntegratedGradients gives the same attributions."""
    from captum.attr import LayerIntegratedGradients

    from xai_text.modules import ids_and_mask

    model = xaicore.load_run(text_run)
    texts = ["a wonderful moving film", "dull", "a boring waste of time and flat acting"]
    ours = xaicore.explain(model, texts, method="integrated-gradients", n_steps=48,
                           baseline="pad", integration_method="riemann_trapezoid")
    x = torch.from_numpy(model.check_inputs(texts))
    ids, mask = ids_and_mask(x, model.tokenizer.pad_id)
    special = torch.isin(ids, torch.tensor(sorted(model.tokenizer.special_ids)))
    reference = torch.where(special | ~mask, ids, torch.full_like(ids, model.tokenizer.pad_id))
    lig = LayerIntegratedGradients(lambda i, m: model.network(i, m), model.embedding_layer())
    theirs = lig.attribute(ids, baselines=reference, target=torch.from_numpy(ours.targets),
                           additional_forward_args=(mask,), n_steps=48,
                           method="riemann_trapezoid").sum(-1).detach().numpy()
    valid = ~np.isnan(ours.attributions[..., 0])
    assert (valid == mask.numpy()).all()
    assert_close(ours.attributions[..., 0][valid], theirs[valid])
    assert (theirs[~valid] == 0).all()


@pytest.mark.parametrize("baseline", ["zero", "pad", "mask", "unk"])
def test_integrated_gradients_is_complete_and_leaves_special_tokens_at_zero(text_run, baseline):
    model = xaicore.load_run(text_run)
    texts = ["a wonderful moving film", "dull and tedious", "smart"]
    e = xaicore.explain(model, texts, method="integrated-gradients", baseline=baseline)
    special = np.isin(e.inputs[..., 0], sorted(model.tokenizer.special_ids))
    assert (e.attributions[..., 0][special] == 0).all()  # the baseline keeps them
    gap = np.abs(e.extras["convergence_delta"])
    assert (gap <= 0.01 * np.abs(e.extras["f_x"] - e.extras["f_baseline"]) + 1e-5).all() \
        if "f_x" in e.extras else (gap < 0.05).all()
    assert e.extras["tokens"][0].tolist()[:6] == ["[CLS]", "a", "wonderful", "moving", "film",
                                                  "[SEP]"]
    assert e.extras["word_ids"][0].tolist()[:6] == [-1, 0, 1, 2, 3, -1]


def test_a_text_gets_the_same_attributions_alone_and_padded_in_a_batch(text_run):
    """Padded batches reach the explainers whole (the model masks the padding): a short text
    explained beside a long one gets what it gets alone."""
    model = xaicore.load_run(text_run)
    short, long = "dull", "a wonderful moving film and brilliant warm funny smart acting"
    for method in ("integrated-gradients", "saliency", "input-x-gradient", "gradcam", "attention"):
        alone = xaicore.explain(model, [short], method=method)
        batch = xaicore.explain(model, [long, short], method=method)
        n = int(alone.lengths[0])
        assert batch.lengths[1] == n and np.isnan(batch.attributions[1, n:]).all()
        assert_close(batch.attributions[1, :n], alone.attributions[0, :n], rtol=1e-4,
                     err_msg=method)


def test_methods_that_need_other_samples_as_references_refuse_texts(text_run):
    model = xaicore.load_run(text_run)
    with pytest.raises(XaiError, match="no reference for a text"):
        xaicore.explain(model, ["dull"], method="gradient-shap")
    with pytest.raises(XaiError, match="unknown baseline 'blurred'; choose one of zero, pad, mask, unk"):
        xaicore.explain(model, ["dull"], method="integrated-gradients", baseline="blurred")


def test_bad_text_inputs_are_one_line_errors(text_run):
    model = xaicore.load_run(text_run)
    with pytest.raises(XaiError, match="text 1 is empty"):
        model.check_inputs(["fine", "  "])
    ids = model.check_inputs(["a wonderful film"])
    bad = ids.copy()
    bad[0, 2, 0] = model.tokenizer.vocab_size + 5
    with pytest.raises(XaiError, match="is not one of the tokenizer's"):
        model.check_inputs(bad)
    hole = ids.copy()
    hole[0, 1, 0] = np.nan
    with pytest.raises(XaiError, match="NaN at token 1 before its end"):
        model.check_inputs(hole)
    with pytest.warns(UserWarning, match="longer than the 16 tokens .* were cut"):
        cut = model.check_inputs([" ".join(["wonderful"] * 40)])
    assert cut.shape[1] == 16 and model.tokenizer.tokens(cut[0])[-1] == "[SEP]"


def test_deletion_removes_tokens_as_the_mask_token_and_never_the_special_ones(text_run):
    from xai_eval.perturbation import DeletionMetric

    model = xaicore.load_run(text_run)
    e = xaicore.explain(model, POSITIVE[:4] + NEGATIVE[:4], method="integrated-gradients")
    substrate = xaicore.plugin.modality_of(model).substrate("mask", model, e.inputs)
    special = np.isin(e.inputs, sorted(model.tokenizer.special_ids))
    real = ~np.isnan(e.inputs)
    assert (substrate[special] == e.inputs[special]).all()
    assert (substrate[real & ~special] == model.tokenizer.mask_id).all()
    scores = DeletionMetric().evaluate(model, e)
    # removing the tokens IG ranks highest first lowers the class probability faster than random
    assert scores["deletion_auc"] < scores["deletion_auc_random"]


def test_explain_cli_takes_texts_and_writes_them_apart_from_the_test_split(text_run):
    result = xai("explain", "--run", text_run, "--method", "integrated-gradients", "--method",
                 "attention", "--text", "a wonderful film", "--text", "a boring waste")
    assert result.exit_code == 0, result.output
    e = xaicore.load_explanation(text_run / "explanations" / "texts" / "integrated-gradients.npz")
    assert e.modality == "tokens" and e.n_samples == 2 and (e.labels == -1).all()
    assert e.aggregate(over="token", how="sum").shape == (2, 1)
    listed = xai("list")
    assert "tokens" in listed.output and "text-cnn-lstm-attention" in listed.output
