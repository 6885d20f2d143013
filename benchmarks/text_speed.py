"""Integrated gradients on a small DistilBERT: xai's batched path against transformers-interpret
(one text at a time) and captum's LayerIntegratedGradients (one at a time, and padded batches).

    .venv/bin/python benchmarks/text_speed.py                 # 256 texts, 20 steps, 1 thread
    .venv/bin/python benchmarks/text_speed.py --texts 64 --steps 50 --threads 2

transformers-interpret is not a dependency: ``.venv/bin/pip install transformers-interpret==0.10.0``.

Every method integrates the same path (Gauss-Legendre, ``--steps`` points) from the same
baseline (every token but [CLS] and [SEP] replaced by [PAD]) on the word embeddings. xai and
captum attribute the target logit and are checked to agree per text; transformers-interpret
attributes the softmax probability of the predicted class (its only choice), so it is timed, not
compared. The network is untrained (seeded): speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import xaicore
from xai_text.corpus import rotten_tomatoes
from xai_text.hf import HFDistilBert
from xai_text.modality import token_model
from xai_text.modules import ids_and_mask
from xai_text.tokenizer import TextTokenizer

METHOD = "gausslegendre"


def timed(work: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    out = work()
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--one-at-a-time", type=int, default=64,
                        help="texts the one-at-a-time methods explain (their rate is per text)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = rotten_tomatoes()
    tokenizer = TextTokenizer.train(corpus.texts, vocab_size=8000)
    texts = corpus.texts[:args.texts]
    torch.manual_seed(0)
    network = HFDistilBert(tokenizer.vocab_size, args.max_length, 2).eval()
    model = token_model(network, tokenizer, name="hf-distilbert", class_names=["fresh", "rotten"],
                        seq_len=args.max_length, hyperparameters=network.params, dataset="rotten-tomatoes")
    hf, words = network.model, model.embedding_layer()
    X = model.check_inputs(texts)
    ids, mask = ids_and_mask(torch.from_numpy(X), tokenizer.pad_id)
    special = torch.isin(ids, torch.tensor(sorted(tokenizer.special_ids)))
    reference = torch.where(special | ~mask, ids, torch.full_like(ids, tokenizer.pad_id))
    print(f"{len(texts)} texts, {int(mask.sum(1).float().mean())} tokens on average (longest "
          f"{ids.shape[1]}), DistilBERT {network.params}, {args.steps} steps {METHOD}, "
          f"{args.threads} thread(s)")

    def forward(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return hf(input_ids=i, attention_mask=m.long()).logits

    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(forward, words)

    def captum(rows: slice, internal: int | None) -> np.ndarray:
        n = int(mask[rows].sum(1).max())  # a batch padded to its own longest text
        return lig.attribute(ids[rows, :n], baselines=reference[rows, :n], target=targets[rows],
                             additional_forward_args=(mask[rows, :n],), n_steps=args.steps,
                             method=METHOD, internal_batch_size=internal).sum(-1).detach().numpy()

    def padded(batch: int, internal: int | None) -> np.ndarray:
        out = np.zeros(ids.shape)
        for start in range(0, len(texts), batch):
            a = captum(slice(start, start + batch), internal)
            out[start:start + batch, :a.shape[1]] = a
        return out

    for _ in range(2):  # warm-up: the first passes pay for allocations and kernel set-up
        xaicore.explain(model, texts[:16], method="integrated-gradients", n_steps=args.steps,
                        baseline="pad", integration_method=METHOD)
    xai_seconds, ours = timed(lambda: xaicore.explain(model, texts, method="integrated-gradients",
                                                      n_steps=args.steps, baseline="pad",
                                                      integration_method=METHOD))
    targets = torch.from_numpy(ours.targets)
    xai_attr = np.nan_to_num(ours.attributions[..., 0])
    rows: list[tuple[str, float, int]] = [("xai explain (batched)", xai_seconds, len(texts))]

    few = min(args.one_at_a_time, len(texts))
    seconds, one = timed(lambda: np.stack([np.pad(captum(slice(i, i + 1), None)[0],
                                                  (0, ids.shape[1] - int(mask[i].sum())))
                                           for i in range(few)]))
    rows.append(("captum LIG, one text at a time", seconds, few))
    check("captum one at a time", xai_attr[:few], one)

    best = None
    for batch, internal in ((32, 256), (32, 640), (64, 640), (64, 1280), (256, 256), (256, 1280)):
        seconds, theirs = timed(lambda b=batch, i=internal: padded(b, i))
        rows.append((f"captum LIG, batches of {batch}, internal_batch_size {internal}", seconds,
                     len(texts)))
        check(rows[-1][0], xai_attr, theirs)
        best = seconds if best is None else min(best, seconds)

    rows.append(("transformers-interpret, one text at a time", interpret(hf, tokenizer, texts[:few],
                                                                      args.steps), few))
    xai_rate = len(texts) / xai_seconds
    print(f"\n{'method':58} {'seconds':>8} {'texts/s':>8} {'xai speed-up':>12}")
    for name, seconds, n in rows:
        print(f"{name:58} {seconds:8.2f} {n / seconds:8.2f} {xai_rate / (n / seconds):11.2f}x")
    assert best is not None
    print(f"\nxai time / captum's best batched time: {xai_seconds / best:.3f}")


def check(name: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    """Per text: the largest difference relative to the text's largest attribution."""
    scale = np.abs(theirs).max(1)
    worst = float((np.abs(ours - theirs).max(1) / scale).max())
    print(f"  {name}: worst relative difference {worst:.1e}{'' if worst <= 1e-4 else '  > 1e-4!'}")


def interpret(hf: torch.nn.Module, tokenizer: TextTokenizer, texts: list[str], steps: int) -> float:
    """Seconds transformers-interpret's SequenceClassificationExplainer takes on ``texts``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    from transformers_interpret import SequenceClassificationExplainer

    names = {f"{role}_token": name for role, name in tokenizer.special_tokens.items()}
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer.tokenizer.to_str()),
                                   **names)
    explainer = SequenceClassificationExplainer(hf, fast)
    began = time.perf_counter()
    for text in texts:
        explainer(text, n_steps=steps)
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
