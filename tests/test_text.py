"""Texts as the second kind of input, end to end: a text file trained into a run, explained by the
gradient methods on the embeddings, Grad-CAM and attention, checked against captum and the
properties each method has."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import xaicore
from oracles import layer_integrated_gradients
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError

POSITIVE = ["a wonderful moving film", "brilliant and warm", "a joy to watch", "funny and smart",
            "moving and wonderful acting", "warm funny brilliant", "smart and a joy"]
NEGATIVE = ["dull and tedious", "a waste of time", "boring flat acting", "tedious and dull plot",
            "a boring waste", "flat and lifeless", "lifeless boring mess"]


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def train_text_run(folder: Path) -> Path:
    """A small hybrid trained through the CLI on a JSONL file of the texts above (labels pos and
    neg) in ``folder``; its run directory."""
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


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return train_text_run(tmp_path_factory.mktemp("texts"))


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
    model = xaicore.load_run(text_run)
    texts = ["a wonderful moving film", "dull", "a boring waste of time and flat acting"]
    ours = xaicore.explain(model, texts, method="integrated-gradients", n_steps=48,
                           baseline="pad", integration_method="riemann_trapezoid")
    theirs = layer_integrated_gradients(model, texts, ours.targets, 48)
    valid = ~np.isnan(ours.attributions[..., 0])
    assert (valid == ~np.isnan(model.check_inputs(texts)[..., 0])).all()
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


def test_a_run_reads_its_data_with_the_tokenizer_it_kept(text_run, monkeypatch):
    """The test split of a run is encoded by the run's own tokenizer, even when training a
    tokenizer again on the same texts would number tokens differently."""
    from xai_text.tokenizer import TextTokenizer
    from xaicore.models.checkpoints import load_run_data

    trained = TextTokenizer.train
    monkeypatch.setattr(TextTokenizer, "train", classmethod(
        lambda cls, texts, vocab_size=8000, **kw: trained(list(texts)[:5], vocab_size=60)))
    model, dataset = load_run_data(text_run)
    texts = dataset.info["texts"]["test"]
    expected = model.check_inputs(texts)
    assert dataset.info["tokenizer"].digest == model.tokenizer.digest
    assert np.array_equal(dataset.test.X[:, :expected.shape[1]], expected, equal_nan=True)


def test_the_report_of_a_text_run_shows_texts_words_and_attention(text_run):
    result = xai("explain", "--run", text_run, "--method", "integrated-gradients", "--method",
                 "attention", "--samples", "0:6", "--force")
    assert result.exit_code == 0, result.output
    result = xai("report", "--run", text_run, "--force")
    assert result.exit_code == 0, result.output
    page = (text_run / "report.html").read_text()
    assert 'id="text-heatmap"' in page and "Words that carry each class" in page
    assert 'id="attention"' in page  # the attention explainer's layers, stacked per head
    assert "most tokens read" in page and "series length" not in page  # the model card's words
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from the network


def test_a_file_of_texts_streams_into_stores(text_run, tmp_path):
    """``--input`` with texts: the file is encoded by the run's tokenizer and explained in
    batches into one chunked store per method; its labels are the run's classes."""
    data = tmp_path / "new.csv"
    data.write_text("body,label\n" + "".join(f'"{t}",{c}\n' for t, c in
                                             [(POSITIVE[0], "pos"), (NEGATIVE[1], "neg"),
                                              (POSITIVE[3], "pos")] * 3))
    result = xai("explain", "--run", text_run, "--method", "saliency", "--input", data,
                 "--text-column", "body", "--label-column", "label", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    store = xaicore.load_explanation(text_run / "explanations" / "new" / "saliency.zarr")
    if importlib.util.find_spec("xarray") is None:  # the hint, where xarray is not installed
        with pytest.raises(XaiError, match="to_xarray needs xarray, which is not installed: pip"):
            store.to_xarray()
    stored = store.load()
    pos, neg = stored.class_names.index("pos"), stored.class_names.index("neg")
    assert stored.n_samples == 9 and stored.labels.tolist()[:3] == [pos, neg, pos]
    alone = xaicore.explain(xaicore.load_run(text_run), [POSITIVE[0]], method="saliency")
    n = int(alone.lengths[0])
    assert_close(stored.attributions[0, :n], alone.attributions[0, :n], rtol=1e-4)
    bad = tmp_path / "bad.csv"
    bad.write_text("body,label\nfine text,maybe\n")
    result = xai("explain", "--run", text_run, "--method", "saliency", "--input", bad,
                 "--text-column", "body", "--label-column", "label")
    assert result.exit_code != 0 and "'maybe' are not classes" in result.output
    assert stored.modality == "tokens" and stored.extras["tokens"].dtype.kind == "U"
    tokens = xaicore.load_run(text_run).tokenizer.tokens
    assert all(stored.extras["tokens"][i, :int(stored.lengths[i])].tolist() == tokens(stored.inputs[i])
               for i in range(stored.n_samples))


def test_word_attributions_are_a_groupby_of_the_token_table(text_run):
    e = xaicore.explain(xaicore.load_run(text_run), ["a wonderful moving film", "dull and tedious"],
                        method="input-x-gradient")
    table = e.to_dataframe()
    assert {"token", "tokens", "word_ids", "attribution"} <= set(table.columns)
    assert table.groupby("sample").size().tolist() == e.lengths.tolist()
    words = table[table.word_ids >= 0].groupby(["sample", "word_ids"]).attribution.sum()
    assert len(words.loc[0]) == 4 and len(words.loc[1]) == 3
    assert_close(words.loc[1].to_numpy(), e.attributions[1, 1:4, 0])


def test_the_randomisation_check_re_explains_texts_with_the_embedding_randomised_last(text_run):
    """A deep copy of a token model differentiates its own embedding layer, which the cascade
    re-initialises last; special tokens (zero for integrated gradients whatever the weights) are
    left out of the correlation."""
    import copy

    from xai_eval.randomisation import RandomisationMetric

    model = xaicore.load_run(text_run)
    assert copy.deepcopy(model).embedding_layer() is not model.embedding_layer()
    for method in ("integrated-gradients", "saliency"):
        e = xaicore.explain(model, POSITIVE[:3] + NEGATIVE[:3], method=method)
        scores, curve = RandomisationMetric().evaluate_curves(model, e)
        assert curve["layers"][-1] == "embedding" and len(curve["layers"]) == 6, method
        assert np.isfinite(curve["correlation"]).all() and scores["randomisation"] in (
            "pass", "fail", "undecided")


def test_evaluate_on_a_text_run_scores_the_faithfulness_metrics_and_skips_the_others(text_run):
    import pandas as pd

    from xai_eval.runner import choose_methods

    model = xaicore.load_run(text_run)
    defaults = choose_methods((), model)
    assert not {"gradient-shap", "deeplift"} & set(defaults)  # each refuses this model
    assert {"integrated-gradients", "saliency", "attention", "shap", "window-occlusion",
            "random"} <= set(defaults)
    methods = ("integrated-gradients", "saliency", "attention")
    result = xai("evaluate", "--run", text_run, "--samples", "6", "--bootstrap", "200",
                 *[a for m in methods for a in ("--method", m)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(text_run / "evaluation.csv").set_index("method")
    assert set(table.index) == {*methods, "random"}
    for column in ("comprehensiveness", "comprehensiveness_low", "comprehensiveness_vs_random",
                   "sufficiency", "deletion_auc", "insertion_auc", "randomisation_spearman"):
        assert table.loc[list(methods), column].notna().all(), column
    assert not {"road_morf_auc", "road_lerf_auc", "infidelity", "aup"} & set(table.columns)
    settings = json.loads((text_run / "evaluation" / "settings.json").read_text())
    assert settings["directions"]["comprehensiveness"] == "higher"
    assert settings["directions"]["sufficiency"] == "lower"
    skipped = settings["skipped_metrics"]
    assert set(skipped) == {"road-morf", "road-lerf", "infidelity", "aup", "aur"}
    assert "continuous scale, not texts as token sequences" in skipped["road-morf"]
    assert "needs mask" in skipped["aup"]
    assert "skipping metric infidelity (cannot score model 'text-cnn-lstm-attention'): " \
           "infidelity adds Gaussian noise" in result.output
    assert xai("report", "--run", text_run, "--force").exit_code == 0
    assert "Metric road-morf was not run: ROAD imputes" in (text_run / "report.html").read_text()
    asked = xai("evaluate", "--run", text_run, "--samples", "4", "--force", "--method", "saliency",
                "--metric", "road-morf")
    assert asked.exit_code == 1 and "metric road-morf cannot score model" in asked.output


def test_predict_classifies_a_file_of_texts(text_run, tmp_path):
    data = tmp_path / "new.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": c}) + "\n"
                            for t, c in [(POSITIVE[0], "pos"), (NEGATIVE[0], "neg")]))
    out = tmp_path / "predictions.csv"
    result = xai("predict", "--run", text_run, "--input", data, "--out", out)
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out)
    assert table.predicted.tolist() == ["pos", "neg"] and table.true.tolist() == ["pos", "neg"]
    probs = xaicore.load_run(text_run).predict_proba([POSITIVE[0], NEGATIVE[0]])
    assert_close(table[["prob_neg", "prob_pos"]].to_numpy(), probs, rtol=1e-5, scale=1.0)


def test_a_text_model_reads_a_csv_of_texts_without_being_told_the_column(tmp_path):
    """The model's kind of input reads the file: a text model takes a CSV whose text column has
    a usual name; training warns when texts are cut to max_length."""
    data = tmp_path / "reviews.csv"
    data.write_text("review,label\n" + "".join(f'"{t}",pos\n' for t in POSITIVE * 3)
                    + "".join(f'"{t}",neg\n' for t in NEGATIVE * 3))
    with pytest.warns(UserWarning, match=r"texts are longer than max_length 4 tokens and were cut"):
        result = xai("train", "--dataset", data, "--model", "text-cnn-lstm-attention", "--out",
                     tmp_path / "run", "--epochs", "1", "--param", "embedding_dim=8", "--param",
                     "cnn_channels=8", "--param", "lstm_hidden_size=4", "--param", "num_heads=2",
                     "--data", "max_length=4", "--data", "vocab_size=100", "--quiet")
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset_spec"]
    assert spec["name"] == "texts" and len(spec["sha256"]) == 64
    refused = xai("train", "--dataset", data, "--text-column", "review", "--model", "fcn",
                  "--out", tmp_path / "series")
    assert refused.exit_code != 0 and "--text-column reads a file of texts" in refused.output


def test_a_folder_of_texts_changed_since_training_is_refused(tmp_path):
    folder = tmp_path / "reviews"
    for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)):
        (folder / label).mkdir(parents=True)
        for i, text in enumerate(texts * 2):
            (folder / label / f"{i}.txt").write_text(text)
    run = tmp_path / "run"
    result = xai("train", "--dataset", folder, "--model", "text-cnn-lstm-attention", "--out", run,
                 "--epochs", "1", "--param", "embedding_dim=8", "--param", "cnn_channels=8",
                 "--param", "lstm_hidden_size=4", "--param", "num_heads=2", "--data",
                 "vocab_size=100", "--quiet")
    assert result.exit_code == 0, result.output
    assert xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2").exit_code == 0
    (folder / "neg" / "0.txt").write_text("dull and tedious, and more")
    changed = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2", "--force")
    assert changed.exit_code != 0 and "has changed since the run was trained on it" in changed.output


def test_a_report_names_its_run_folder_not_its_path_and_refuses_a_run_given_twice(text_run, tmp_path):
    out = tmp_path / "shared.html"
    assert xai("report", "--run", text_run, "--out", out).exit_code == 0
    page = out.read_text()
    assert f"run {text_run.name}" in page and str(text_run.parent) not in page
    both = xai("report", "--run", text_run, "--run", text_run, "--out", tmp_path / "two.html")
    # several runs make a comparison report (tests/test_comparison.py); one run twice is refused
    assert both.exit_code == 1 and "is given twice" in both.output
    assert not (tmp_path / "two.html").exists()
