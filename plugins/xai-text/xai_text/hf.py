"""Hugging Face sequence classifiers as token networks, built from a config (never downloaded):
``hf-distilbert`` from small options, ``hf-model`` from a folder's ``config.json`` (``xai import
--hf``). ``transformers`` is imported only when one is built."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xaicore.plugin import Option, XaiError, defaults_of

from .networks import check_heads, check_shape, lengths_of, resolve_params

TRAINING = {"epochs": 6, "batch_size": 32, "lr": 0.0005, "scheduler": "cosine", "weight_decay": 0.01}


class HFClassifier(nn.Module):
    """``AutoModelForSequenceClassification`` from a config, with eager attention so that every
    forward keeps each layer's ``[batch, heads, query, key]`` weights; ``embedding_layer`` is the
    word embedding (positions are added after it, so replacing its output replaces the ids)."""

    modality: ClassVar[str] = "tokens"
    gradcam_layer: ClassVar[str | None] = None
    variable_length: ClassVar[bool] = True
    training_defaults: ClassVar[dict[str, Any]] = TRAINING

    def __init__(self, config: Any) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        try:
            self.model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
        except (ValueError, KeyError, TypeError) as exc:
            raise XaiError(f"transformers cannot build a sequence classifier of model type "
                           f"{config.model_type!r}: {str(exc).splitlines()[0]}") from None
        words = self.model.get_input_embeddings()
        self.embedding_layer = "model." + next(name for name, m in self.model.named_modules() if m is words)
        self.weights: list[torch.Tensor] = []

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths_of(type(self), mask.bool())
        out = self.model(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
        self.weights = [a.detach() for a in out.attentions]  # no graph kept alive
        return out.logits

    def attention_weights(self) -> list[torch.Tensor]:
        """Weights of the last forward pass, one ``[batch, heads, query, key]`` per layer."""
        return list(self.weights)


class HFDistilBert(HFClassifier):
    """A small DistilBERT (``DistilBertConfig`` from these options), trained from scratch."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("n_layers", int, 2, "transformer layers", min=1, max=64),
        Option("dim", int, 128, "embedding and hidden width", min=1, max=4096),
        Option("n_heads", int, 2, "attention heads (must divide dim)", min=1, max=64),
        Option("hidden_dim", int, 256, "feed-forward width", min=1, max=16384),
        Option("dropout", float, 0.1, "dropout on the embeddings and hidden states", min=0.0, max=0.95),
        Option("attention_dropout", float, 0.1, "dropout on the attention weights", min=0.0, max=0.95),
        Option("seq_classif_dropout", float, 0.2, "dropout before the classifier", min=0.0, max=0.95),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int, pad_id: int = 0,
                 **params: Any) -> None:
        check_shape(type(self), vocab_size, seq_len, n_classes, pad_id)
        p = resolve_params(type(self), self.options, params)
        check_heads(type(self), p["dim"], p["n_heads"])
        from transformers import DistilBertConfig

        super().__init__(DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=seq_len,
                                          num_labels=n_classes, pad_token_id=pad_id, **p))
        self.params = p


class HFModel(HFClassifier):
    """Any architecture transformers builds a sequence classifier of, from a ``config.json``'s
    values (``config``); the data's shape must fit it."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("config", object, None, "the values of a Hugging Face config.json (model_type, "
               "vocab_size, num_labels, ...)"),
    )
    default_params: ClassVar[dict[str, Any]] = defaults_of(options)

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int, pad_id: int = 0,
                 **params: Any) -> None:
        values = resolve_params(type(self), self.options, params)["config"]
        if not (isinstance(values, dict) and isinstance(values.get("model_type"), str)):
            raise XaiError("hf-model takes config=, the values of a config.json naming its model_type")
        config = hf_config(values)
        check_shape(type(self), vocab_size, seq_len, n_classes, pad_id)
        if config.num_labels != n_classes:
            raise XaiError(f"the model's config has {config.num_labels} labels, the data {n_classes} classes")
        limit = getattr(config, "max_position_embeddings", None)
        if isinstance(limit, int) and seq_len > limit:
            raise XaiError(f"texts of {seq_len} tokens are longer than the model's "
                           f"{limit} positions (max_position_embeddings)")
        super().__init__(config)
        self.params = {"config": values}

    @classmethod
    def from_folder(cls, folder: str) -> dict[str, Any]:
        """A local model folder's params, weights, labels and data options (``hf_folder``)."""
        from .hf_folder import read_folder

        return read_folder(folder)


def hf_config(values: dict) -> Any:
    """The transformers config of a config.json's values, or a one-line error."""
    from transformers import AutoConfig

    fields = {k: v for k, v in values.items() if k not in ("model_type", "auto_map")}
    if "auto_map" in values:
        raise XaiError("the config names its own model code (auto_map); xai builds only the "
                       "architectures transformers ships")
    try:
        return AutoConfig.for_model(values["model_type"], **fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise XaiError(f"transformers has no config of model type {values['model_type']!r}: "
                       f"{str(exc).splitlines()[0]}") from None
