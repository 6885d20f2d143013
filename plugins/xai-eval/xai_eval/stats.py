"""Uncertainty of the scores and the verdicts against the random baseline.

Every per-sample score gets a percentile bootstrap interval of its mean over samples. A method is
compared with the random baseline on the same samples: the per-sample difference (oriented so that
positive means "better than random", using the metric's direction) is resampled with the same
bootstrap indices, and tested with the Wilcoxon signed-rank test. One method's p-values over the
metrics compared are adjusted with Holm's step-down method; a metric's verdict is "better" (or
"worse") when its adjusted p is below ``ALPHA`` and the bootstrap interval of the difference lies
above (or below) zero. The indices come from one seeded generator, so the same run and seed give
the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xaicore.application import bootstrap_indices as bootstrap_indices  # used by runner, randomisation
from xaicore.application import mean_interval

BETTER, SAME, WORSE, BASELINE = ("better than random", "not distinguishable", "worse than random",
                                 "baseline")
UNINFORMATIVE = "uninformative"  # a metric on which no method differs from random in a run
NOT_TESTED = "not tested"
ALPHA = 0.05  # family-wise error rate of one method's comparisons with random
SANITY_ORDER = {"pass": 0, "fail": 2}  # randomisation verdicts; undecided or not run: 1
RANKING = ("the random baseline last; before it, the methods that pass the randomisation check, "
           "then those undecided or not checked, then those that fail it; within each group, by "
           "the number of informative metrics better than random minus the number worse (after "
           "Holm), then by the mean standardized effect over those metrics, largest first")
#: Short names of the scores in summaries and headers; any other score is named by its key.
LABELS = {"deletion_auc": "deletion", "insertion_auc": "insertion", "road_morf_auc": "ROAD MoRF",
          "road_lerf_auc": "ROAD LeRF"}


def label(key: str) -> str:
    """The short name of a score (``road_lerf_auc`` -> ``ROAD LeRF``)."""
    return LABELS.get(key, key.replace("_", " "))


def paired_verdict(method: np.ndarray, baseline: np.ndarray, higher_is_better: bool,
                   indices: np.ndarray, level: float = 0.95) -> dict:
    """Paired comparison with the baseline on the same samples.

    ``gain`` is the mean per-sample improvement over random (positive = better, in the metric's
    direction) with its bootstrap interval; ``effect`` is it in standard deviations of the
    per-sample improvement (NaN when that is zero); ``p`` is the two-sided Wilcoxon signed-rank
    p-value; ``verdict`` follows from the interval alone (no correction for other metrics).
    """
    diff = np.asarray(method, np.float64) - np.asarray(baseline, np.float64)
    if not higher_is_better:
        diff = -diff
    gain, low, high = mean_interval(diff, indices, level)
    p = effect = float("nan")
    finite = diff[np.isfinite(diff)]
    if finite.size and np.any(finite != 0):
        from scipy.stats import wilcoxon

        p = float(wilcoxon(finite, zero_method="zsplit").pvalue)
    if finite.size > 1 and np.std(finite) > 0:
        effect = float(np.mean(finite) / np.std(finite, ddof=1))
    verdict = SAME if not np.isfinite(gain) else BETTER if low > 0 else WORSE if high < 0 else SAME
    return {"gain": gain, "gain_low": low, "gain_high": high, "effect": effect, "p": p,
            "verdict": verdict}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of one family of p-values: the k-th smallest of the m tested
    ones becomes ``max over j <= k of min(1, (m - j + 1) p_(j))``. A NaN (no test: every
    difference zero) stays NaN and is not counted in m."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    running = 0.0
    for k, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (len(tested) - k) * float(p[i])))
        adjusted[i] = running
    return adjusted


def corrected_verdict(test: dict, p_holm: float) -> str:
    """A metric's verdict from its paired test (``paired_verdict``) and its Holm-adjusted p."""
    if not (np.isfinite(p_holm) and p_holm < ALPHA):
        return SAME
    return BETTER if test["gain_low"] > 0 else WORSE if test["gain_high"] < 0 else SAME


def summary(verdicts: dict[str, str], randomisation: str | None = None) -> tuple[str, str]:
    """The overall verdict and a one-line summary from the verdicts on the informative metrics
    (short name -> verdict): better when better on more of them than worse, worse when the
    reverse, else not distinguishable. A failed randomisation check is said."""
    n = len(verdicts)
    better = [name for name, v in verdicts.items() if v == BETTER]
    worse = [name for name, v in verdicts.items() if v == WORSE]
    overall = BETTER if len(better) > len(worse) else WORSE if len(worse) > len(better) else SAME
    metrics = f"metric{'s' * (n != 1)}"
    parts = []
    for word, names in (("better", better), ("worse", worse)):
        if names and parts:  # worse, after better: which ones
            parts.append(f"{word} on {', '.join(names)}")
        elif names:
            parts.append(f"{word} on {'all ' * (n > 1)}{n} {metrics}" if len(names) == n else
                         f"{word} on {len(names)} of {n} {metrics} ({', '.join(names)})")
    if not n:
        parts.append("no informative metric")
    elif not parts:
        parts.append(f"not distinguishable on {'any of ' * (n > 1)}{n} {metrics}")
    text = ", ".join(parts)
    if randomisation == "fail":
        text += "; fails the randomisation check (ranked after the methods that pass it)"
    return overall, text
