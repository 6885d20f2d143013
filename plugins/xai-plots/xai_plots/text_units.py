"""What a text explanation shows: its tokens or words with their attributions, and the words that
carry each class. Pure functions of an ``Explanation`` whose ``extras`` hold ``tokens`` and
``word_ids`` (the layout of xai's text input kind)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from xaicore.plugin import Explanation, XaiError

MODES = ("tokens", "words")
CONTINUATION = "##"  # WordPiece's mark of a piece that continues the word before it


def is_text(explanation: Explanation) -> bool:
    """Whether ``explanation`` explains texts (token sequences) rather than series."""
    return explanation.modality == "tokens"


@dataclass(frozen=True)
class Unit:
    """One shown piece of a text: a token or a whole word, its attribution, and whether it is a
    special token ([CLS], [SEP], ...: no word of the text)."""

    text: str
    value: float
    special: bool
    pieces: tuple[str, ...] = ()  # a word's tokens, when it has more than one


def tokens_of(e: Explanation, i: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The valid tokens of sample position ``i``, their attributions and their word ids."""
    if not is_text(e):
        raise XaiError(f"the explanation of {e.method!r} holds no tokens (extras['tokens'])")
    length = int(e.lengths[i])
    tokens = [str(t) for t in np.asarray(e.extras["tokens"])[i, :length]]
    word_ids = (np.asarray(e.extras["word_ids"], dtype=np.int64)[i, :length]
                if "word_ids" in e.extras else np.arange(length, dtype=np.int64))
    return tokens, np.asarray(e.attributions[i, :length, 0], dtype=np.float64), word_ids


def word_text(pieces: list[str] | tuple[str, ...]) -> str:
    """The word that ``pieces`` (its tokens in order) spell: continuation marks dropped."""
    return "".join(p[len(CONTINUATION):] if k and p.startswith(CONTINUATION) else p
                   for k, p in enumerate(pieces))


def groups(word_ids: np.ndarray) -> list[list[int]]:
    """Token positions of each word, in the order of their first token; a special token (word id
    -1) is a group of its own."""
    out: list[list[int]] = []
    where: dict[int, int] = {}
    for t, w in enumerate(int(w) for w in word_ids):
        if w < 0:
            out.append([t])
        elif w in where:
            out[where[w]].append(t)
        else:
            where[w] = len(out)
            out.append([t])
    return out


def units(e: Explanation, i: int, mode: str = "tokens") -> list[Unit]:
    """Sample position ``i`` as shown: one unit per token, or (``mode="words"``) one per word at
    its first token, with the sum of its tokens' attributions; special tokens stay as they are."""
    if mode not in MODES:
        raise XaiError(f"text mode must be one of {', '.join(MODES)}, got {mode!r}")
    tokens, values, word_ids = tokens_of(e, i)
    if mode == "tokens":
        return [Unit(t, float(v), bool(w < 0)) for t, v, w in zip(tokens, values, word_ids)]
    out = []
    for group in groups(word_ids):
        pieces = tuple(tokens[t] for t in group)
        special = bool(word_ids[group[0]] < 0)
        out.append(Unit(pieces[0] if special else word_text(pieces),
                        float(sum(values[t] for t in group)), special,
                        pieces if len(pieces) > 1 else ()))
    return out


def scale_of(shown: list[Unit]) -> float:
    """The largest |attribution| of a text's words or tokens (special tokens left out: they are
    drawn grey), 0 when there is none."""
    values = [abs(u.value) for u in shown if not u.special and np.isfinite(u.value)]
    return max(values, default=0.0)


@dataclass(frozen=True)
class ClassWord:
    """A word's summed attribution over the texts explained for one class, and its occurrences."""

    word: str
    total: float
    count: int


def class_words(e: Explanation, top: int = 15) -> dict[int, list[ClassWord]]:
    """Per explained class (index), the ``top`` words by attribution summed over every occurrence
    in the texts explained for it, largest first (only words with a positive sum)."""
    totals: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for i in range(e.n_samples):
        c = int(e.targets[i])
        for u in units(e, i, "words"):
            if not u.special and np.isfinite(u.value):
                totals[c][u.text] += u.value
                counts[c][u.text] += 1
    out = {}
    for c in sorted(totals):
        ranked = sorted(totals[c].items(), key=lambda kv: (-kv[1], kv[0]))
        out[c] = [ClassWord(w, total, counts[c][w]) for w, total in ranked[:top] if total > 0]
    return out
