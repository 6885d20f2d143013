"""Hugging Face sequence classifiers as token networks: a tiny DistilBERT saved with
save_pretrained, imported with ``xai import --hf`` and explained like the built-in token models
(its logits, padding invariance, captum's LayerIntegratedGradients, attention per layer and head),
the folder refusals, and ``hf-distilbert`` trained through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from oracles import layer_integrated_gradients
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.plugin import build_network

transformers = pytest.importorskip("transformers")

POSITIVE = ["a wonderful moving film", "brilliant and warm", "a joy to watch", "funny and smart"]
NEGATIVE = ["dull and tedious", "a waste of time", "boring flat acting", "lifeless boring mess"]


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def tiny_distilbert(vocab_size: int, pad_id: int, **config):
    """An untrained DistilBERT classifier, small enough for the suite (eval mode)."""
    cfg = transformers.DistilBertConfig(vocab_size=vocab_size, n_layers=2, dim=32, n_heads=2,
                                        hidden_dim=64, max_position_embeddings=64, num_labels=2,
                                        pad_token_id=pad_id, **config)
    torch.manual_seed(0)
    return transformers.AutoModelForSequenceClassification.from_config(cfg).eval()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A model folder as a user has one: save_pretrained's config.json and model.safetensors,
    the tokenizer files, and a JSONL file of labelled texts beside it."""
    from xai_text.tokenizer import TextTokenizer

    root = tmp_path_factory.mktemp("hf")
    tokenizer = TextTokenizer.train(POSITIVE + NEGATIVE, vocab_size=120, min_frequency=1)
    net = tiny_distilbert(tokenizer.vocab_size, tokenizer.pad_id, id2label={0: "neg", 1: "pos"},
                          label2id={"neg": 0, "pos": 1})
    folder = root / "model"
    net.save_pretrained(folder)
    tokenizer.save(folder)
    rows = [{"text": t, "label": "pos"} for t in POSITIVE * 3] + \
           [{"text": t, "label": "neg"} for t in NEGATIVE * 3]
    (root / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def hf_run(hf_folder):
    run = hf_folder.parent / "run"
    result = xai("import", "--hf", hf_folder, "--data", hf_folder.parent / "reviews.jsonl", "--out", run)
    assert result.exit_code == 0, result.output
    return run


def test_xai_list_and_the_plugin_do_not_import_transformers():
    code = ("import sys, xai_text.plugin\nfrom click.testing import CliRunner\n"
            "from xaicore.cli import cli\nout = CliRunner().invoke(cli, ['list'])\n"
            "assert out.exit_code == 0 and 'hf-distilbert' in out.output, out.output\n"
            "assert 'transformers' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_imported_model_gives_the_hf_models_logits(hf_run, hf_folder):
    model = xaicore.load_run(hf_run)
    assert model.class_names == ["neg", "pos"] and model.seq_len == 64
    assert model.network.embedding_layer == "model.distilbert.embeddings.word_embeddings"
    words = model.embedding_layer()
    assert words is model.network.model.get_input_embeddings()
    assert all(m is not words for m in [model.network.model.distilbert.embeddings.position_embeddings])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(hf_folder, local_files_only=True)
    texts = ["a wonderful moving film", "dull", "a waste of time and boring flat acting"]
    encoded = model.tokenizer.encode(texts, model.seq_len)
    mask = torch.from_numpy(np.arange(encoded.ids.shape[1]) < encoded.lengths[:, None])
    with torch.no_grad():
        expected = hf.eval()(input_ids=torch.from_numpy(encoded.ids), attention_mask=mask.long()).logits
    assert_close(model.logits(texts), expected)


def test_a_text_gets_the_same_attributions_alone_and_padded_in_a_batch(hf_run):
    model = xaicore.load_run(hf_run)
    short, long = "dull", "a wonderful moving film and brilliant warm funny smart acting"
    for method in ("integrated-gradients", "saliency", "attention"):
        alone = xaicore.explain(model, [short], method=method)
        batch = xaicore.explain(model, [long, short], method=method)
        n = int(alone.lengths[0])
        assert batch.lengths[1] == n and np.isnan(batch.attributions[1, n:]).all()
        assert_close(batch.attributions[1, :n], alone.attributions[0, :n], rtol=1e-4, err_msg=method)


def test_integrated_gradients_equals_captum_layer_integrated_gradients(hf_run):
    model = xaicore.load_run(hf_run)
    texts = ["a wonderful moving film", "dull", "a boring waste of time and flat acting"]
    ours = xaicore.explain(model, texts, method="integrated-gradients", n_steps=32, baseline="pad",
                           integration_method="riemann_trapezoid")
    theirs = layer_integrated_gradients(model, texts, ours.targets, 32)
    valid = ~np.isnan(ours.attributions[..., 0])
    assert (valid == ~np.isnan(model.check_inputs(texts)[..., 0])).all()
    assert_close(ours.attributions[..., 0][valid], theirs[valid])


def test_attention_is_explained_per_layer_and_head(hf_run):
    model = xaicore.load_run(hf_run)
    e = xaicore.explain(model, ["a wonderful moving film", "dull"], method="attention")
    assert e.extras["n_layers"] == 2 and e.extras["aggregation"] == "rollout"
    assert e.extras["attention_layer0"].shape == (2, 2, 6, 6)  # sample, head, query, key
    layer = e.extras["attention_layer1"]
    assert_close(layer[1, :, :3, :3].sum(-1), np.ones((2, 3)))  # "dull": [CLS] dull [SEP]
    # "dull" is explained at its own length: the positions after it are padding (NaN)
    assert np.isnan(layer[1, :, 3:, :]).all() and np.isnan(layer[1, :, :, 3:]).all()


def test_hf_distilbert_trains_through_the_cli_and_reloads(hf_folder, tmp_path):
    run = tmp_path / "run"
    result = xai("train", "--dataset", hf_folder.parent / "reviews.jsonl", "--model", "hf-distilbert",
                 "--out", run, "--epochs", "2", "--param", "dim=16", "--param", "hidden_dim=32",
                 "--data", "vocab_size=100", "--data", "max_length=12", "--quiet")
    assert result.exit_code == 0, result.output
    model = xaicore.load_run(run)
    assert model.hyperparameters["dim"] == 16 and model.network.model.config.dim == 16
    assert model.network.model.config.max_position_embeddings == 12
    e = xaicore.explain(model, ["a joy to watch"], method="integrated-gradients")
    assert np.isfinite(e.attributions[0, :6]).all()


def test_folders_that_cannot_be_read_safely_are_refused_in_one_line(hf_folder, tmp_path):
    from xai_text.hf import HFModel
    from xai_text.hf_folder import read_folder

    def copy(name, *skip):
        folder = tmp_path / name
        folder.mkdir()
        for f in hf_folder.iterdir():
            if f.name not in skip:
                (folder / f.name).write_bytes(f.read_bytes())
        return folder

    with pytest.raises(XaiError, match="holds no weights: looked for model.safetensors"):
        read_folder(copy("none", "model.safetensors"))
    pickled = copy("pickled", "model.safetensors")
    torch.save({"weights": torch.zeros(2), "how": XaiError("pickled code")}, pickled / "pytorch_model.bin")
    with pytest.raises(XaiError, match="needs pickled code that a weights-only load refuses"):
        read_folder(pickled)
    from safetensors.torch import load_file
    state = load_file(str(hf_folder / "model.safetensors"))
    torch.save(state, pickled / "pytorch_model.bin")  # plain tensors: a weights-only load reads them
    assert read_folder(pickled)["state_dict"].keys() == {"model." + k for k in state}
    small = copy("small", "model.safetensors")
    tiny_distilbert(20, 0).save_pretrained(small)
    with pytest.raises(XaiError, match="the tokenizer's ids run to .* but the model's embedding has 20 rows"):
        read_folder(small)
    foreign = copy("foreign")
    config = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "model_type": "no-such-model"}))
    with pytest.raises(XaiError, match="transformers has no config of model type 'no-such-model'"):
        build_network(HFModel, "hf-model", 120, 64, 2, config=read_folder(foreign)["params"]["config"])
    (foreign / "config.json").write_text(json.dumps({**config, "auto_map": {"x": "y.Z"}}))
    with pytest.raises(XaiError, match="names its own model code"):
        build_network(HFModel, "hf-model", 120, 64, 2, config=read_folder(foreign)["params"]["config"])


def test_the_models_classes_must_be_the_datasets(hf_folder, tmp_path):
    data = tmp_path / "other.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n"
                            for t, lab in zip(POSITIVE + NEGATIVE, ["good"] * 4 + ["bad"] * 4)))
    result = xai("import", "--hf", hf_folder, "--data", data, "--out", tmp_path / "run")
    assert result.exit_code != 0
    assert "the model's classes in output order (neg, pos) are not the dataset's (bad, good)" in result.output
    result = xai("import", "--hf", hf_folder, "--module", "x.py:Net", "--data", data, "--out", tmp_path / "r")
    assert result.exit_code != 0 and "--hf reads the model" in result.output
