"""One tokenizer for xai's texts: trained here (WordPiece) or a user's local Hugging Face folder.

Texts become xai's padded arrays: ``X`` float32 ``[text, position, 1]`` holding token ids and NaN
after each text's length. ``transformers`` is never imported: a folder is read with ``tokenizers``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import (
    Encoding,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from xaicore.plugin import XaiError, write_text

ROLES = ("pad", "unk", "cls", "sep", "mask")
BERT = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
KNOWN = {"pad": ("[PAD]", "<pad>"), "unk": ("[UNK]", "<unk>"), "cls": ("[CLS]", "<s>"),
         "sep": ("[SEP]", "</s>"), "mask": ("[MASK]", "<mask>")}  # BERT's and RoBERTa's names
TOKENIZER, VOCAB, META = "tokenizer.json", "vocab.txt", "xai_tokenizer.json"
CONFIGS = ("special_tokens_map.json", "tokenizer_config.json")  # Hugging Face's, first one first
EXACT_IDS = 2**24  # ids up to this are exact in float32


@dataclass
class Encoded:
    """Texts as token ids, padded with the pad id to the longest (``T`` positions)."""

    ids: np.ndarray  # int64 [n, T]
    lengths: np.ndarray  # int64 [n]
    word_ids: np.ndarray  # int64 [n, T]: the word of each token, from 0 per text; -1 special or padding
    truncated: np.ndarray  # int64: indices of the texts cut to max_length (the closing token kept)
    token_strings: list[list[str]]  # per text, its own length
    words: list[list[str]]  # per text, the surface string of each word that word_ids counts

    def as_array(self) -> np.ndarray:
        """xai's convention: float32 ``[n, T, 1]`` token ids, NaN after each text's length."""
        X = self.ids.astype(np.float32)
        X[np.arange(X.shape[1]) >= self.lengths[:, None]] = np.nan
        return X[:, :, None]


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` and the names of its special tokens (``pad`` at least)."""

    def __init__(self, tokenizer: Tokenizer, special: dict[str, str], where: str = "the tokenizer"):
        tokenizer.no_padding()  # xai pads itself; truncation is set per encode call
        tokenizer.no_truncation()
        for role, name in special.items():
            if tokenizer.token_to_id(name) is None:
                raise XaiError(f"{where}: its {role} token {name!r} is not in its vocabulary")
        if "pad" not in special:
            raise XaiError(f"{where} has no pad token: looked for pad_token in {' and '.join(CONFIGS)} "
                           f"and for {' or '.join(KNOWN['pad'])} in its vocabulary")
        self.tokenizer = tokenizer  # the wrapped tokenizers.Tokenizer; encode sets its truncation
        self.special_tokens = {role: special[role] for role in ROLES if role in special}
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        if self.vocab_size > EXACT_IDS:
            raise XaiError(f"{where} has {self.vocab_size} ids; xai carries ids in float32, exact up "
                           f"to {EXACT_IDS}")
        canonical = json.dumps({"tokenizer": json.loads(tokenizer.to_str()), "special": self.special_tokens},
                               sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 8000, lowercase: bool = True,
              min_frequency: int = 2) -> TextTokenizer:
        """A WordPiece tokenizer trained on ``texts`` (the train split's), BERT's normalisation and
        pre-tokenisation, ``[PAD]`` id 0, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]`` and every text
        wrapped as ``[CLS] ... [SEP]``; the same texts give the same vocabulary."""
        if not texts:
            raise XaiError("cannot train a tokenizer on no texts")
        trained = bert_tokenizer({}, lowercase)
        # The trainer numbers the word-inner pieces ("##a") in the order of a hash map, and breaks
        # ties between merges by those numbers: naming them up front, sorted, fixes both.
        inner = sorted({"##" + char for text in texts for word, _ in
                        trained.pre_tokenizer.pre_tokenize_str(trained.normalizer.normalize_str(text))
                        for char in word[1:]})
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=[BERT[role] for role in ROLES] + inner,
                                            show_progress=False)
        trained.train_from_iterator(texts, trainer, length=len(texts))
        # the same vocabulary in a tokenizer whose only special tokens are the five
        tokenizer = bert_tokenizer(trained.get_vocab(), lowercase)
        tokenizer.add_special_tokens([BERT[role] for role in ROLES])
        tokenizer.post_processor = bert_template(tokenizer, BERT["cls"], BERT["sep"])
        return cls(tokenizer, dict(BERT))

    @classmethod
    def load(cls, folder: str | Path) -> TextTokenizer:
        """A tokenizer saved by ``save``, or a local Hugging Face tokenizer folder: ``tokenizer.json``,
        or a BERT ``vocab.txt`` alone; the special tokens from ``xai_tokenizer.json``, else
        ``special_tokens_map.json``/``tokenizer_config.json``, else BERT's or RoBERTa's names."""
        folder = Path(folder)
        if not folder.is_dir():
            raise XaiError(f"{folder}: no such tokenizer folder")
        configs = {name: read_json(folder / name) for name in CONFIGS if (folder / name).is_file()}
        if (folder / TOKENIZER).is_file():
            try:
                tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
            except Exception as exc:  # tokenizers raises plain Exception on a malformed file
                raise XaiError(f"{folder / TOKENIZER} is not a tokenizers file: {exc}") from None
        elif (folder / VOCAB).is_file():
            tokenizer = vocab_tokenizer(folder / VOCAB, configs)
        else:
            raise XaiError(f"{folder} holds no tokenizer: looked for {TOKENIZER} and {VOCAB}")
        meta = folder / META
        special = (read_json(meta).get("special_tokens") if meta.is_file()
                   else special_names(tokenizer, configs))
        if not isinstance(special, dict) or not all(isinstance(name, str) for name in special.values()):
            raise XaiError(f"{meta}: expected special_tokens, an object of token names by role")
        return cls(tokenizer, special, str(folder))

    def save(self, folder: str | Path) -> None:
        """``tokenizer.json`` and ``xai_tokenizer.json`` (the special tokens' names) in ``folder``."""
        folder = Path(folder)
        write_text(folder / TOKENIZER, self.tokenizer.to_str())
        write_text(folder / META, json.dumps({"special_tokens": self.special_tokens}, indent=2) + "\n")

    @functools.cached_property
    def strings(self) -> np.ndarray:
        """The token string of every id (``""`` for an id without one), indexable by id arrays."""
        return np.array([self.tokenizer.id_to_token(i) or "" for i in range(self.vocab_size)])

    def role_id(self, role: str) -> int | None:
        """The id of the special token of ``role`` (one of ``ROLES``), None if it has none."""
        name = self.special_tokens.get(role)
        return None if name is None else self.tokenizer.token_to_id(name)

    @property
    def pad_id(self) -> int:
        pad = self.role_id("pad")
        assert pad is not None  # __init__ requires a pad token
        return pad

    @property
    def mask_id(self) -> int | None:
        return self.role_id("mask")

    @property
    def unk_id(self) -> int | None:
        return self.role_id("unk")

    @property
    def special_ids(self) -> frozenset[int]:
        """The ids of every special token: the named roles' and those the tokenizer marks special."""
        marked = {i for i, token in self.tokenizer.get_added_tokens_decoder().items() if token.special}
        return frozenset(marked | {i for role in ROLES if (i := self.role_id(role)) is not None})

    def encode(self, texts: Sequence[str], max_length: int) -> Encoded:
        """``texts`` as ids, at most ``max_length`` each (longer ones cut, their closing special token
        kept), with each token's word; an empty text is an error naming its index."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        if not texts:
            raise XaiError("no texts to encode")
        added = self.tokenizer.num_special_tokens_to_add(False)
        if max_length <= added:
            raise XaiError(f"max_length {max_length} leaves no room for a text beside the tokenizer's "
                           f"{added} special tokens")
        empty = next((i for i, text in enumerate(texts) if not text.strip()), None)
        if empty is not None:
            raise XaiError(f"text {empty} is empty; an empty text cannot be explained")
        self.tokenizer.enable_truncation(max_length)
        try:
            encodings = self.tokenizer.encode_batch(list(texts))
        finally:
            self.tokenizer.no_truncation()
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        ids = np.full((len(texts), int(lengths.max())), self.pad_id, dtype=np.int64)
        word_ids = np.full(ids.shape, -1, dtype=np.int64)
        for i, encoding in enumerate(encodings):
            ids[i, :lengths[i]] = encoding.ids
            word_ids[i, :lengths[i]] = [-1 if w is None else w for w in encoding.word_ids]
            if word_ids[i].max() < 0:
                raise XaiError(f"text {i} has no tokens (only characters the tokenizer drops)")
        truncated = np.array([i for i, e in enumerate(encodings) if e.overflowing], dtype=np.int64)
        words = [surface_words(text, encoding) for text, encoding in zip(texts, encodings)]
        return Encoded(ids, lengths, word_ids, truncated, [e.tokens for e in encodings], words)

    def tokens(self, ids_row: np.ndarray | Sequence[float]) -> list[str]:
        """The token strings of one row of ids (an ``X`` row's NaN padding left out)."""
        row = np.asarray(ids_row, dtype=np.float64).ravel()
        out = []
        for value in row[~np.isnan(row)]:
            token = self.tokenizer.id_to_token(int(value))
            if token is None:
                raise XaiError(f"id {int(value)} is not in the tokenizer's vocabulary "
                               f"({self.vocab_size} ids)")
            out.append(token)
        return out


def check_vocabulary(tokenizer: TextTokenizer, embedding_rows: int) -> None:
    """A one-line error when the tokenizer has ids that the model's embedding has no row for."""
    if tokenizer.vocab_size > embedding_rows:
        raise XaiError(f"the tokenizer's ids run to {tokenizer.vocab_size - 1} but the model's embedding "
                       f"has {embedding_rows} rows: the model was trained with another tokenizer")


def surface_words(text: str, encoding: Encoding) -> list[str]:
    """Each word's string in ``text``, from its first token's start to its last token's end (so
    WordPiece's ``##`` pieces and byte-level pieces are joined)."""
    spans: dict[int, tuple[int, int]] = {}
    for word, (start, end) in zip(encoding.word_ids, encoding.offsets):
        if word is not None:
            first, last = spans.get(word, (start, end))
            spans[word] = (min(first, start), max(last, end))
    return [text[slice(*spans[w])].strip() if w in spans else "" for w in range(max(spans, default=-1) + 1)]


def bert_tokenizer(vocab: dict[str, int], lowercase: bool, unk: str = BERT["unk"],
                   strip_accents: bool | None = None) -> Tokenizer:
    """A WordPiece tokenizer on ``vocab`` with BERT's normalisation, pre-tokenisation and decoding."""
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=unk))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=strip_accents)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def bert_template(tokenizer: Tokenizer, cls: str, sep: str) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))])


def vocab_tokenizer(path: Path, configs: dict[str, dict]) -> Tokenizer:
    """A BERT tokenizer on a ``vocab.txt`` (one token a line, id = line number), as Hugging Face
    builds one: lowercase unless ``tokenizer_config.json`` says ``do_lower_case: false``."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise XaiError(f"cannot read {path}: {exc}") from None
    vocab = {token: i for i, token in enumerate(line.rstrip("\r") for line in lines) if token}
    config = configs.get("tokenizer_config.json", {})
    named = configured_names(configs)
    unk = named.get("unk") or next((name for name in KNOWN["unk"] if name in vocab), BERT["unk"])
    tokenizer = bert_tokenizer(vocab, bool(config.get("do_lower_case", True)), unk,
                               config.get("strip_accents"))
    special = special_names(tokenizer, configs)
    tokenizer.add_special_tokens([name for name in special.values() if name in vocab])  # else refused
    if "cls" in special and "sep" in special:
        tokenizer.post_processor = bert_template(tokenizer, special["cls"], special["sep"])
    return tokenizer


def special_names(tokenizer: Tokenizer, configs: dict[str, dict]) -> dict[str, str]:
    """The special tokens' names: as the Hugging Face configs name them, else BERT's or RoBERTa's
    name when the vocabulary has it."""
    named = configured_names(configs)
    for role in ROLES:
        if role not in named:
            found = next((n for n in KNOWN[role] if tokenizer.token_to_id(n) is not None), None)
            if found is not None:
                named[role] = found
    return named


def configured_names(configs: dict[str, dict]) -> dict[str, str]:
    """``ROLE_token`` entries of the configs (a name, or ``{"content": name}``), the first config's
    first."""
    named: dict[str, str] = {}
    for config in configs.values():
        for role in ROLES:
            value = config.get(f"{role}_token")
            name = value.get("content") if isinstance(value, dict) else value
            if isinstance(name, str) and role not in named:
                named[role] = name
    return named


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XaiError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise XaiError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def tokenizer_state(tokenizer: TextTokenizer) -> dict[str, Any]:
    """The tokenizer as plain JSON-able values, stored in a run's checkpoint."""
    return {"json": tokenizer.tokenizer.to_str(), "special_tokens": dict(tokenizer.special_tokens)}


def tokenizer_from_state(state: Any, where: str) -> TextTokenizer:
    """The tokenizer ``tokenizer_state`` stored, or a one-line error naming ``where``."""
    if not (isinstance(state, dict) and isinstance(state.get("json"), str)
            and isinstance(state.get("special_tokens"), dict)):
        raise XaiError(f"{where} lacks its tokenizer (a 'json' text and 'special_tokens')")
    try:
        tokenizer = Tokenizer.from_str(state["json"])
    except Exception as exc:  # tokenizers raises plain Exception on malformed JSON
        raise XaiError(f"{where}: its tokenizer does not load: {exc}") from None
    return TextTokenizer(tokenizer, {str(k): str(v) for k, v in state["special_tokens"].items()}, where)
