"""How far two models' explanations of the same samples agree, per sample and with bootstrap
intervals of the mean over samples: what ``comparison.csv`` and the comparison report show.

Per sample: the Spearman correlation of the two maps' absolute attributions over every cell
(time step x feature), the overlap of their top ``TOP_K`` cells by absolute attribution, and
whether the two models predict the same class. Each mean over the shared samples comes with a
95% percentile bootstrap interval (``N_BOOT`` resamples from seed ``SEED``, the same resamples
for every measure of a pair).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.intervals import bootstrap_indices, mean_interval
from xaicore.explaining.ranks import spearman_rows, top_k_overlap

TOP_K = 0.1  # the share of a map's cells that counts as its top cells
N_BOOT = 1000
SEED = 0
#: The measures of a pair, each a per-sample array of ``Agreement``, with what they mean.
MEASURES = {"prediction_agreement": "both models predict the same class (share of samples)",
            "spearman_abs": "Spearman correlation of |attribution| over time steps x features",
            "top_k_overlap": f"share of the top {TOP_K:.0%} cells by |attribution| in common"}


@dataclass
class Agreement:
    """One method's agreement between two models' explanations of the samples both explained."""

    method: str
    sample_ids: np.ndarray
    prediction_agreement: np.ndarray  # 1.0 where both predict the same class, else 0.0
    spearman_abs: np.ndarray
    top_k_overlap: np.ndarray

    def summary(self, n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, float]:
        """Each measure's mean over the samples with its 95% bootstrap interval
        (``{measure, measure_low, measure_high}``)."""
        indices = bootstrap_indices(len(self.sample_ids), n_boot, seed)
        out: dict[str, float] = {}
        for measure in MEASURES:
            mean, low, high = mean_interval(getattr(self, measure), indices)
            out.update({measure: mean, f"{measure}_low": low, f"{measure}_high": high})
        return out


def agreement(a: Explanation, b: Explanation) -> Agreement:
    """The agreement of ``a`` and ``b`` (one method, two models) on the samples both explained, in
    ``a``'s order; an XaiError when they explain different inputs for the same sample."""
    shared = [int(s) for s in a.sample_ids if (b.sample_ids == s).any()]
    if not shared:
        raise XaiError(f"{a.method}: the two models explained no sample in common")
    i = np.array([int(np.flatnonzero(a.sample_ids == s)[0]) for s in shared])
    j = np.array([int(np.flatnonzero(b.sample_ids == s)[0]) for s in shared])
    if a.inputs.shape[1:] != b.inputs.shape[1:] or not np.array_equal(
            a.inputs[i], b.inputs[j], equal_nan=True):
        raise XaiError(f"{a.method}: the two explanations hold different inputs for the same "
                       f"sample ids (not the same test split), so their maps cannot be compared")
    ma = np.abs(a.attributions[i].reshape(len(i), -1))
    mb = np.abs(b.attributions[j].reshape(len(j), -1))
    return Agreement(a.method, np.array(shared, dtype=np.int64),
                     (a.predictions[i] == b.predictions[j]).astype(np.float64),
                     spearman_rows(ma, mb), top_k_overlap(ma, mb, TOP_K))


def agreement_rows(explanations: list[Explanation], labels: list[str]) -> list[dict]:
    """One row per method and pair of models (``labels[k]`` names the model of
    ``explanations[k]``): the models, the number of shared samples and every measure's mean with
    its interval."""
    by_method: dict[str, list[tuple[str, Explanation]]] = {}
    for label, e in zip(labels, explanations):
        by_method.setdefault(e.method, []).append((label, e))
    rows = []
    for method, group in by_method.items():
        for k, (label_a, a) in enumerate(group):
            for label_b, b in group[k + 1:]:
                found = agreement(a, b)
                rows.append({"method": method, "model_a": label_a, "model_b": label_b,
                             "samples": len(found.sample_ids), **found.summary(),
                             "top_k": TOP_K})
    return rows


def model_labels(names: list[str], folders: list[str]) -> list[str]:
    """What names each run's model: its model name, followed by its run folder's name where
    another run's model has the same name (``cnn-lstm-attention (gp-a)``)."""
    return [name if names.count(name) == 1 else f"{name} ({folder})"
            for name, folder in zip(names, folders)]


def dataset_difference(a: dict | str, b: dict | str) -> str | None:
    """How two runs' dataset specs differ (None when they give the same splits): a file dataset is
    told by its bytes (sha256), not by where it lies."""
    a = a if isinstance(a, dict) else {"name": a}
    b = b if isinstance(b, dict) else {"name": b}
    told = {"name": "sha256", "test": "test_sha256"}  # a path and the digest of its bytes
    for key in sorted(set(a) | set(b)):
        if told.get(key) in a and told.get(key) in b:
            continue
        if a.get(key) != b.get(key):
            what = "dataset file" if key in told.values() else key
            return f"{what} {_shown(a.get(key))} vs {_shown(b.get(key))}"
    return None


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:10] + "\u2026" + text[-10:]
