"""Counterfactual methods scored on the measures of Kan et al. (2024), against the nearest unlike
neighbour (NUN) as the baseline counterfactual: ``RUN/evaluation/counterfactuals.csv``.

Per sample: validity (the model, run again on the counterfactual, predicts the target),
proximity (L1, L2 and L-infinity norms of ``counterfactual - input``), sparsity (the share of
unchanged cells), segments (contiguous runs of changed time steps, counted per feature and
summed), plausibility (Euclidean distance to the nearest train series the model puts in the target
class, and the local outlier factor among those series: about 1 for an inlier, larger outside)
and the time per sample (one thread, after a first untimed call). Each mean has a 95% bootstrap
interval; each method is compared with the NUN of the same samples (its
``extras["nearest_unlike"]``: valid by construction, not sparse) by the paired test of the
attribution evaluation (Wilcoxon, Holm over the measures).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.application import check_methods, get_explainer, load_run_data, with_requirements
from xaicore.plugin import XaiError, atomic_open

from .guard import explainer_call
from .runner import pick_samples
from .stats import BETTER, WORSE, bootstrap_indices, corrected_verdict, holm, mean_interval, paired_verdict

BASELINE_NAME = "nearest-unlike-neighbour"
#: measure -> higher is better (validity is reported, not tested: the baseline is always valid)
MEASURES = {"l1": False, "l2": False, "linf": False, "sparsity": True, "segments": False,
            "plausibility": False, "lof": False}
LOF_NEIGHBOURS = 20  # scikit-learn's default n_neighbors
LOF_MEMBERS = 2000  # a class with more train series: a seeded subset of this many
FILE = "counterfactuals.csv"


def is_counterfactual(name: str) -> bool:
    """Whether the explainer ``name`` declares itself a counterfactual method."""
    try:
        return bool(getattr(get_explainer(name), "counterfactual", False))
    except XaiError:
        return False


def proximity(inputs: np.ndarray, counterfactuals: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample L1, L2 and L-infinity norms of ``counterfactual - input`` over the valid cells
    (padding, NaN in the inputs, left out)."""
    change = np.abs(np.asarray(counterfactuals, np.float64) - np.asarray(inputs, np.float64))
    change = np.nan_to_num(change.reshape(len(change), -1), nan=0.0)
    return {"l1": change.sum(1), "l2": np.sqrt((change ** 2).sum(1)), "linf": change.max(1)}


def sparsity(changed: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per sample share of unchanged cells among the valid ones (1: nothing changed)."""
    changed = np.asarray(changed, bool).reshape(len(changed), -1)
    valid = np.ones_like(changed) if valid is None else np.asarray(valid, bool).reshape(changed.shape)
    return 1.0 - (changed & valid).sum(1) / np.maximum(valid.sum(1), 1)


def segments(changed: np.ndarray) -> np.ndarray:
    """Per sample number of contiguous runs of changed time steps, counted per feature, summed."""
    changed = np.asarray(changed, bool)
    starts = changed & ~np.pad(changed, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    return starts.sum((1, 2)).astype(np.float64)


def plausibility(counterfactuals: np.ndarray, targets: np.ndarray, train: np.ndarray,
                 train_classes: np.ndarray) -> np.ndarray:
    """Per sample Euclidean distance to the nearest train series of its target class, over the
    cells valid in both (NaN when the class has none)."""
    out = np.full(len(counterfactuals), np.nan)
    for cls in np.unique(targets):
        rows, members = np.flatnonzero(targets == cls), np.flatnonzero(train_classes == cls)
        if len(members):
            out[rows] = np.sqrt(np.clip(squared_distances(counterfactuals[rows], train[members]),
                                        0, None).min(1))
    return out


def local_outlier_factor(counterfactuals: np.ndarray, targets: np.ndarray, train: np.ndarray,
                         train_classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per sample local outlier factor (Breunig et al. 2000) of the counterfactual among the train
    series of its target class, as a new point (scikit-learn's ``novelty=True``): the mean local
    reachability density of its ``LOF_NEIGHBOURS`` nearest series over its own (NaN when the class
    has fewer than two series)."""
    out = np.full(len(counterfactuals), np.nan)
    rng = np.random.default_rng(seed)
    for cls in np.unique(targets):
        rows, members = np.flatnonzero(targets == cls), np.flatnonzero(train_classes == cls)
        if len(members) < 2:
            continue
        if len(members) > LOF_MEMBERS:
            members = np.sort(rng.choice(members, LOF_MEMBERS, replace=False))
        k = min(LOF_NEIGHBOURS, len(members) - 1)
        among = np.sqrt(np.clip(squared_distances(train[members], train[members]), 0, None))
        np.fill_diagonal(among, np.inf)  # a series is not its own neighbour
        near = np.argsort(among, 1, kind="stable")[:, :k]
        k_distance = np.take_along_axis(among, near[:, -1:], 1)[:, 0]
        density = 1 / (np.maximum(k_distance[near], np.take_along_axis(among, near, 1)).mean(1)
                       + 1e-10)
        to = np.sqrt(np.clip(squared_distances(counterfactuals[rows], train[members]), 0, None))
        near_q = np.argsort(to, 1, kind="stable")[:, :k]
        reach = np.maximum(k_distance[near_q], np.take_along_axis(to, near_q, 1)).mean(1)
        out[rows] = density[near_q].mean(1) * (reach + 1e-10)
    return out


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` squared Euclidean distances over the cells valid (not NaN) in both:
    ``sum m_a m_b (a - b)^2`` expanded into three matrix products."""
    a, b = (torch.from_numpy(np.asarray(v, np.float64).reshape(len(v), -1)) for v in (a, b))
    ma, mb = ((~torch.isnan(v)).double() for v in (a, b))
    a, b = torch.nan_to_num(a), torch.nan_to_num(b)
    return ((a ** 2) @ mb.T + ma @ (b ** 2).T - 2 * a @ b.T).numpy()


def measures(model: Any, inputs: np.ndarray, counterfactuals: np.ndarray, targets: np.ndarray,
             train: np.ndarray, train_classes: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-sample measure of one set of counterfactuals; validity from the model run on
    them here."""
    valid = ~np.isnan(inputs)
    changed = (np.asarray(counterfactuals) != np.asarray(inputs)) & valid
    return {"validity": (model.logits(counterfactuals).argmax(1) == targets).astype(np.float64),
            **proximity(inputs, counterfactuals), "sparsity": sparsity(changed, valid),
            "segments": segments(changed),
            "plausibility": plausibility(counterfactuals, targets, train, train_classes),
            "lof": local_outlier_factor(counterfactuals, targets, train, train_classes)}


def verdicts(method: dict[str, np.ndarray], baseline: dict[str, np.ndarray],
             indices: np.ndarray) -> dict[str, Any]:
    """Per measure: the paired test against the baseline, its Holm-adjusted p and verdict."""
    tests = {key: paired_verdict(method[key], baseline[key], higher, indices)
             for key, higher in MEASURES.items()}
    adjusted = holm([tests[key]["p"] for key in MEASURES])
    words = {BETTER: "better than NUN", WORSE: "worse than NUN"}
    out: dict[str, Any] = {}
    for key, p_holm in zip(MEASURES, adjusted):
        out[f"{key}_p"], out[f"{key}_p_holm"] = tests[key]["p"], float(p_holm)
        out[f"{key}_vs_nun"] = words.get(corrected_verdict(tests[key], p_holm), "not distinguishable")
    return out


def summary_of(row: dict) -> str:
    """``better than NUN on l1, sparsity; worse on plausibility`` (or not distinguishable)."""
    better = [k for k in MEASURES if row.get(f"{k}_vs_nun") == "better than NUN"]
    worse = [k for k in MEASURES if row.get(f"{k}_vs_nun") == "worse than NUN"]
    parts = ([f"better than NUN on {', '.join(better)}"] if better else []) + \
        ([f"worse on {', '.join(worse)}"] if worse else [])
    return "; ".join(parts) or "not distinguishable from NUN"


def evaluate_counterfactuals(run: str | Path, methods: list[str], samples: int | None = None,
                             seed: int = 0, force: bool = False, device: Any = None,
                             n_boot: int = 2000, full: bool = False) -> list[dict]:
    """Explain test samples with each counterfactual method (target: each sample's most likely
    other class) and write one row per method, plus the NUN baseline's, to
    ``RUN/evaluation/counterfactuals.csv``; returns the rows."""
    import pandas as pd

    run = Path(run)
    out = run / "evaluation" / FILE
    if out.exists() and not force:
        raise XaiError(f"{out} exists; use --force to overwrite")
    model, dataset = load_run_data(run, device)
    check_methods(methods, model, f" of run {run}")
    n_test = len(dataset.test)
    explainers = {name: get_explainer(name) for name in methods}
    most = min(n_test, 500 if samples is None else samples)
    if not full:
        most = min([most, *(e.evaluation_samples or most for e in explainers.values())])
    positions = pick_samples(n_test, most, seed)
    X, train = dataset.test.X[positions], dataset.train.X
    train_classes = model.logits(train).argmax(1)
    indices = bootstrap_indices(len(positions), n_boot, seed)
    rows, baseline = [], None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, as each of the attribution evaluation's workers
    try:
        explained = {name: timed(name, explainer, model, X, train)
                     for name, explainer in explainers.items()}
    finally:
        torch.set_num_threads(threads)
    for name, (e, seconds) in explained.items():
        scores = measures(model, e.inputs, e.extras["counterfactual"], e.targets, train, train_classes)
        if baseline is None:
            baseline = measures(model, e.inputs, e.extras["nearest_unlike"], e.targets, train,
                                train_classes)
            rows.append({"method": BASELINE_NAME, "samples": len(positions),
                         **intervals(baseline, indices), "time_per_sample_s": float("nan"),
                         "summary": "baseline: the NUN itself as the counterfactual"})
        row = {"method": name, "samples": len(positions), **intervals(scores, indices),
               "time_per_sample_s": seconds, **verdicts(scores, baseline, indices)}
        rows.append({**row, "summary": summary_of(row)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "w") as fh:
        pd.DataFrame(rows).to_csv(fh, index=False)
    return rows


def timed(name: str, explainer: Any, model: Any, X: np.ndarray, train: np.ndarray) -> tuple[Any, float]:
    """The explanation of ``X`` (target: the most likely other class) and its time per sample,
    after an untimed first call on one sample (the plugins' imports, the first passes' set-up)."""
    options = with_requirements(explainer, {}, {"background": train})
    x = torch.from_numpy(X).to(model.device)
    explainer_call(name, "explain", explainer.explain, model, x[:1], None, **options)
    began = time.perf_counter()
    e = explainer_call(name, "explain", explainer.explain, model, x, None, **options)
    return e, (time.perf_counter() - began) / len(X)


def intervals(scores: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, float]:
    """Each measure's mean with its 95% bootstrap interval (``key``, ``key_low``, ``key_high``)."""
    out = {}
    for key, values in scores.items():
        out[key], out[f"{key}_low"], out[f"{key}_high"] = mean_interval(values, indices)
    return out


def table(rows: list[dict]) -> str:
    """The CLI table: each measure as ``mean [low, high]`` with its verdict against the NUN."""
    import pandas as pd

    heads = {"validity": "validity (higher better)", **{
        k: f"{k} ({'higher' if higher else 'lower'} better)" for k, higher in MEASURES.items()}}
    shown = []
    for row in rows:
        cells = {"method": row["method"], "summary": row["summary"]}
        for key, head in heads.items():
            cells[head] = f"{row[key]:.3f} [{row[f'{key}_low']:.3f}, {row[f'{key}_high']:.3f}]"
            if f"{key}_vs_nun" in row and row[f"{key}_vs_nun"] != "not distinguishable":
                cells[head] += " " + row[f"{key}_vs_nun"].split()[0]
        cells["s/sample"] = f"{row['time_per_sample_s']:.4f}"
        shown.append(cells)
    return pd.DataFrame(shown).to_string(index=False)
