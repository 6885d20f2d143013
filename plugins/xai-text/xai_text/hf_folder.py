"""A user's local Hugging Face model folder read safely: ``config.json``, the weights
(``model.safetensors``, or ``pytorch_model.bin`` read with ``weights_only=True``) and the
tokenizer files beside them. Nothing is downloaded and no code from the folder runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from xaicore.plugin import XaiError

from .tokenizer import TextTokenizer, check_vocabulary, read_json

SAFETENSORS = "model.safetensors"
PICKLED = "pytorch_model.bin"
MAX_LENGTH = 512  # most tokens per text an imported model reads (its positions permitting)
DEFAULT_LABEL = re.compile(r"LABEL_\d+")


def read_folder(folder: str | Path) -> dict[str, Any]:
    """What ``xai import --hf`` needs of ``folder``: the network's ``params`` (the config's
    values), its ``state_dict``, its ``labels`` (config ``id2label`` in output order, None when
    they are transformers' LABEL_0, LABEL_1, ...) and the ``data`` options that read texts with
    its tokenizer; a one-line error for a folder that lacks any of them."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise XaiError(f"{folder}: no such Hugging Face model folder")
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else None
    if config is None:
        raise XaiError(f"{folder} holds no config.json")
    state = read_weights(folder)
    tokenizer = TextTokenizer.load(folder)
    rows = embedding_rows(config, state)
    check_vocabulary(tokenizer, rows)
    positions = config.get("max_position_embeddings")
    length = min(MAX_LENGTH, positions) if isinstance(positions, int) else MAX_LENGTH
    return {"params": {"config": config}, "state_dict": {"model." + k: v for k, v in state.items()},
            "labels": labels(config), "data": {"tokenizer": str(folder), "max_length": length}}


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights: safetensors when present, else a ``.bin`` that a weights-only load
    reads; a folder whose weights would need pickled code is refused."""
    if (folder / SAFETENSORS).is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(folder / SAFETENSORS))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise XaiError(f"{folder / SAFETENSORS} cannot be read: {str(exc).splitlines()[0]}") from None
    if not (folder / PICKLED).is_file():
        raise XaiError(f"{folder} holds no weights: looked for {SAFETENSORS} and {PICKLED} "
                       f"(sharded weights are not read)")
    try:
        state = torch.load(folder / PICKLED, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many kinds on pickled code or a bad file
        raise XaiError(f"{folder / PICKLED} needs pickled code that a weights-only load refuses; save "
                       f"the model with save_pretrained(safe_serialization=True) instead") from None
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise XaiError(f"{folder / PICKLED} holds no state dict (a dict of tensors)")
    return state


def embedding_rows(config: dict, state: dict[str, torch.Tensor]) -> int:
    """The rows of the word embedding: the weights' ``*word_embeddings.weight``, else the config's
    ``vocab_size``."""
    found = [v.shape[0] for k, v in state.items() if k.endswith("word_embeddings.weight")]
    if found:
        return int(found[0])
    if not isinstance(config.get("vocab_size"), int):
        raise XaiError("the config.json gives no vocab_size")
    return int(config["vocab_size"])


def labels(config: dict) -> list[str] | None:
    """Class names in output order from ``id2label``; None when absent or transformers' defaults."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        ordered = [str(id2label[key]) for key in sorted(id2label, key=int)]
    except ValueError:
        raise XaiError("the config.json's id2label has keys that are not class indices") from None
    return None if all(DEFAULT_LABEL.fullmatch(name) for name in ordered) else ordered
