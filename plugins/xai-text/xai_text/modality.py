"""Token sequences: texts as token ids, one id per position in the padded float array."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.plugin import Dataset, DataSplit, InputSource, LoadedModel, View, XaiError, build_network

from .corpus import read_texts
from .datasets import file_spec
from .modules import EmbeddingHead, TokenModule, ids_and_mask
from .tokenizer import TextTokenizer, check_vocabulary, tokenizer_from_state, tokenizer_state

BASELINES = ("zero", "pad", "mask", "unk")
SUBSTRATES = ("mask", "pad")


class TokenModality:
    """Texts as ``[sample, token, 1]`` token ids (NaN after each text), read by the tokenizer the
    run keeps; the models mask padding, so they take padded batches (explainers get groups of
    one length, cut to it, as for series). Gradient methods
    attribute on the embeddings, summed over the embedding dimension to one value per token;
    special tokens ([CLS], [SEP]) keep their embedding in every baseline and are never removed."""

    name = "tokens"
    description = "Texts as token sequences [sample, token]"
    options = ()
    axes = ("sample", "token", "feature")
    masks_padding = True
    baselines = BASELINES
    substrates = SUBSTRATES
    views = ("tokens", "words", "compare")
    position_extras = ("tokens", "word_ids")  # columns of Explanation.to_dataframe
    #: the players of perturbation games (shap, window-occlusion), none taking options
    player_units: dict[str, tuple[str, ...]] = {"words": (), "tokens": ()}

    def build(self, cls: type, dataset: Dataset, name: str, params: dict) -> LoadedModel:
        tokenizer = dataset.info.get("tokenizer")
        if not isinstance(tokenizer, TextTokenizer):
            raise XaiError(f"model {name!r} reads texts, but dataset {dataset.name!r} holds "
                           f"{dataset.n_features}-feature series; train it on a text dataset")
        longest = int(dataset.info.get("max_length", dataset.seq_len))  # the most tokens it reads
        network = build_network(cls, name, tokenizer.vocab_size, longest, dataset.n_classes,
                                pad_id=tokenizer.pad_id, **params)
        hyperparameters = dict(getattr(network, "params", None) or params)
        return token_model(network, tokenizer, name=name, class_names=dataset.class_names,
                           seq_len=longest, hyperparameters=hyperparameters, dataset=dataset.name)

    def checkpoint_entries(self, model: LoadedModel, dataset: Dataset) -> dict[str, Any]:
        return {"seq_len": model.seq_len, "tokenizer": tokenizer_state(model.tokenizer)}

    def restore(self, cls: type, checkpoint: dict, run_dir: Path | None) -> LoadedModel:
        name = checkpoint["model"]
        tokenizer = tokenizer_from_state(checkpoint.get("tokenizer"), f"the checkpoint of {name!r}")
        network = build_network(cls, name, tokenizer.vocab_size, checkpoint["seq_len"],
                                len(checkpoint["class_names"]), pad_id=tokenizer.pad_id,
                                **checkpoint["hyperparameters"],
                                refusal=f"the checkpoint's hyperparameters do not fit model {name!r}")
        return token_model(network, tokenizer, name=name, class_names=checkpoint["class_names"],
                           seq_len=checkpoint["seq_len"], hyperparameters=checkpoint["hyperparameters"],
                           dataset=(checkpoint.get("dataset") or {}).get("name", ""))

    def dataset_spec(self, path: Path, test: Path | None, columns: dict, seed: int, test_size: float,
                     data: dict) -> dict:
        """The ``texts`` dataset of a file or folder of texts (``xai train --dataset reviews.csv``)."""
        return file_spec(path, test, columns, seed, test_size, data)

    def reload(self, model: LoadedModel, dataset: Dataset) -> Dataset:
        """The run's dataset encoded by the tokenizer the run kept (a tokenizer trained again on
        the same texts may number a few tied tokens otherwise)."""
        tokenizer = dataset.info.get("tokenizer")
        texts = dataset.info.get("texts")
        if not isinstance(tokenizer, TextTokenizer) or tokenizer.digest == model.tokenizer.digest \
                or not isinstance(texts, dict):
            return dataset
        train, test = (model.tokenizer.encode(texts[part], model.seq_len).as_array()
                       for part in ("train", "test"))
        return Dataset(dataset.name, DataSplit(train, dataset.train.y), DataSplit(test, dataset.test.y),
                       dataset.class_names, dataset.feature_names,
                       {**dataset.info, "tokenizer": model.tokenizer})

    def open_input(self, model: LoadedModel, path: Path, columns: dict) -> InputSource:
        """The texts of a file (``text_column``; labels, optional, in ``label_column``) encoded by
        the model's tokenizer, for streaming: held in memory as ids (4 bytes per token)."""
        corpus = read_texts(path, columns.get("text_column"), columns.get("label_column"),
                            labels_required=False)
        X = self.check_inputs(model, corpus.texts)
        labels = None
        if corpus.labels:
            unknown = sorted(set(corpus.labels) - set(model.class_names))
            if unknown:
                raise XaiError(f"{path}: labels {', '.join(map(repr, unknown[:3]))} are not classes of "
                               f"model {model.name!r} ({', '.join(model.class_names)})")
            labels = np.array([model.class_names.index(label) for label in corpus.labels], np.int64)
        return InputSource.from_array(X, labels, str(path))

    def check_inputs(self, model: LoadedModel, inputs: Any) -> np.ndarray:
        """Texts (strings, encoded by the model's tokenizer; longer ones cut with a warning naming
        them) or token ids ``[sample, token]`` / ``[sample, token, 1]``, NaN after each text."""
        what = f"inputs for model {model.name!r}"
        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
            encoded = model.tokenizer.encode(list(inputs), model.seq_len)
            if len(encoded.truncated):
                cut = ", ".join(map(str, encoded.truncated[:5].tolist()))
                warnings.warn(f"{len(encoded.truncated)} text(s) longer than the {model.seq_len} "
                              f"tokens model {model.name!r} reads were cut to it (text {cut}"
                              f"{', ...' if len(encoded.truncated) > 5 else ''})", stacklevel=2)
            return encoded.as_array()
        if hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu().numpy()
        try:
            X = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError):
            raise XaiError(f"{what} must be texts or token ids [sample, token]") from None
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3 or X.shape[2] != 1 or X.shape[0] == 0 or X.shape[1] == 0:
            raise XaiError(f"{what} must be texts or token ids [sample, token]; got shape {X.shape}")
        values = X[..., 0]
        real = ~np.isnan(values)
        trailing = np.flip(np.logical_and.accumulate(np.flip(~real, 1), axis=1), 1)
        if (~real & ~trailing).any():
            s, t = (int(i) for i in np.argwhere(~real & ~trailing)[0])
            raise XaiError(f"{what}: sample {s} has NaN at token {t} before its end (NaN marks "
                           f"only the padding after a text)")
        if not real[:, 0].all():
            raise XaiError(f"{what}: sample {int(np.argmin(real[:, 0]))} holds no tokens")
        ids = values[real]
        bad = (ids != np.round(ids)) | (ids < 0) | (ids >= model.tokenizer.vocab_size)
        if bad.any():
            raise XaiError(f"{what}: token id {ids[bad][0]!r} is not one of the tokenizer's "
                           f"{model.tokenizer.vocab_size} ids")
        if X.shape[1] > model.seq_len:
            raise XaiError(f"{what} have {X.shape[1]} tokens; model {model.name!r} reads at most "
                           f"{model.seq_len}")
        return X

    def differentiable(self, model: LoadedModel, inputs: torch.Tensor) -> View:
        """The embeddings of ``inputs`` with a real-token and a special-token channel; attributions
        on them are summed over the embedding dimension."""
        layer = model.embedding_layer()
        ids, mask = ids_and_mask(inputs, model.tokenizer.pad_id)
        special = torch.isin(ids, torch.tensor(sorted(model.tokenizer.special_ids), device=ids.device))
        with torch.no_grad():
            embeddings = layer(ids).float()
        view = torch.cat([embeddings, mask[..., None].to(embeddings.dtype),
                          (special & mask)[..., None].to(embeddings.dtype)], dim=-1)
        dim = embeddings.shape[-1]
        return View(EmbeddingHead(model.network, layer), view,
                    lambda attributions: attributions[..., :dim].sum(-1, keepdim=True))

    def baseline(self, kind: str, model: LoadedModel, inputs: torch.Tensor, *, method: str = "baseline",
                 **options: Any) -> torch.Tensor:
        """Every real token but the special ones replaced by the embedding of the pad, mask or
        unknown token, or by zeros; special tokens and padding keep their own."""
        if kind not in BASELINES:
            raise XaiError(f"{method}: unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
        dim = inputs.shape[-1] - 2
        if kind == "zero":
            reference = torch.zeros(dim, device=inputs.device, dtype=inputs.dtype)
        else:
            token = getattr(model.tokenizer, f"{kind}_id")
            if token is None:
                raise XaiError(f"{method}: the tokenizer of model {model.name!r} has no {kind} token")
            with torch.no_grad():
                reference = model.embedding_layer()(torch.tensor([token], device=inputs.device))[0]
        replaced = (inputs[..., dim] > 0.5) & (inputs[..., dim + 1] < 0.5)
        out = inputs.clone()
        out[..., :dim] = torch.where(replaced[..., None], reference.to(inputs.dtype), inputs[..., :dim])
        return out

    def annotate(self, model: LoadedModel, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Per explained text: its token strings (``tokens``, "" in the padding) and the word each
        token belongs to (``word_ids``: a ``##`` piece continues the word before it; -1 for special
        tokens and padding), for the views and word-level attributions."""
        return token_extras(model.tokenizer, inputs)

    def players(self, model: LoadedModel, inputs: np.ndarray, unit: str | None) -> tuple[str, np.ndarray]:
        """Each token's player: its word (``words``, the default: a word's tokens are one player)
        or itself (``tokens``: each real non-special token); -1 for special tokens and padding."""
        word_ids = token_extras(model.tokenizer, inputs)["word_ids"]
        if unit in (None, "words"):
            return "words", word_ids
        real = word_ids >= 0
        return "tokens", np.where(real, np.cumsum(real, axis=1) - 1, -1)

    def substrate(self, kind: str, model: LoadedModel, inputs: np.ndarray, **options: Any) -> np.ndarray:
        """The texts with every token but the special ones replaced by the mask or pad token."""
        if kind not in SUBSTRATES:
            raise XaiError(f"substrate must be one of {', '.join(SUBSTRATES)} for texts, not {kind!r}")
        token = getattr(model.tokenizer, f"{kind}_id")
        if token is None:
            raise XaiError(f"substrate {kind!r}: the tokenizer of model {model.name!r} has no {kind} token")
        return np.where(self.removable(model, inputs), np.float32(token), inputs).astype(np.float32)

    def removable(self, model: LoadedModel, inputs: np.ndarray) -> np.ndarray:
        """The cells metrics may remove: the real tokens but the special ones."""
        return ~np.isnan(inputs) & ~np.isin(inputs, sorted(model.tokenizer.special_ids))


def token_extras(tokenizer: TextTokenizer, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """``tokens`` and ``word_ids`` ``[sample, token]`` of ids ``[sample, token, 1]``: a real token
    that is not special starts a word unless it is a ``##`` piece after one."""
    values = inputs[..., 0]
    real = ~np.isnan(values)
    ids = np.where(real, values, 0).astype(np.int64)
    tokens = np.where(real, tokenizer.strings[ids], "")
    word = real & ~np.isin(ids, sorted(tokenizer.special_ids))
    starts = word & (~np.char.startswith(tokens, "##") | (np.cumsum(word, axis=1) == 1))
    return {"tokens": tokens, "word_ids": np.where(word, np.cumsum(starts, axis=1) - 1, -1)}


def token_model(network: nn.Module, tokenizer: TextTokenizer, **info: Any) -> LoadedModel:
    """A token network as a Model: ids in the padded float array, the tokenizer beside it."""
    model = LoadedModel(network, feature_names=["token"], **info)
    model.module = TokenModule(network, tokenizer.pad_id)
    model.module.eval()
    model.tokenizer = tokenizer  # type: ignore[attr-defined]
    path = getattr(network, "embedding_layer", None)
    if not isinstance(path, str):
        raise XaiError(f"token model {info['name']!r} names no embedding_layer")
    check_vocabulary(tokenizer, model.layer(path).num_embeddings)
    # a bound partial, not a closure: a deep copy of the model (the randomisation check) finds its own
    model.embedding_layer = functools.partial(model.layer, path)  # type: ignore[attr-defined]
    return model
