"""``evaluate_run``: explain test samples of a run with every method and score them with every metric.

Writes ``RUN/evaluation.csv`` (one row per method, one column per score), ``RUN/evaluation/curves.json``
and the figures under ``RUN/evaluation/``. This is what ``xai evaluate`` runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from xaicore.plugin import (
    Explanation, LoadedModel, XaiError, atomic_open, get_explainer, get_metric, load_run_data,
    method_names, write_text,
)
from xaicore.plugin import names as installed_names

from .baseline import RandomExplainer

RANDOM = "random"
RANDOM_DRAWS = 4  # random orders averaged per sample on the batched metrics: a steadier baseline


def pick_samples(n_test: int, samples: int, seed: int) -> np.ndarray:
    """``samples`` test positions drawn without replacement (seeded), in increasing order."""
    if samples < 1:
        raise XaiError(f"--samples must be at least 1, got {samples}")
    if samples >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(seed).choice(n_test, samples, replace=False))


def choose_methods(requested: Iterable[str], model: LoadedModel) -> list[str]:
    """The requested methods (checked), or every installed explainer able to explain the model plus random."""
    requested = list(dict.fromkeys(requested))
    if not requested:
        return [m for m in method_names((), model) if m != RANDOM] + [RANDOM]
    for name in requested:
        if name != RANDOM:
            reason = get_explainer(name).check(model)
            if reason:
                raise XaiError(f"{name} cannot explain model {model.name!r}: {reason}")
    return requested


def choose_metrics(requested: Iterable[str], context: dict) -> list[str]:
    """The requested metrics, or every installed metric whose required inputs are available."""
    requested = list(dict.fromkeys(requested))
    names = requested or [n for n in installed_names("metrics")
                          if getattr(get_metric(n), "default", True)]
    chosen = []
    for name in names:
        missing = [k for k in getattr(get_metric(name), "requires", ()) if k not in context]
        if not missing:
            chosen.append(name)
        elif requested:
            raise XaiError(f"metric {name} needs {', '.join(missing)}, which this run's dataset does "
                           f"not provide (ground-truth masks come with the synthetic-* datasets)")
    if not chosen:
        raise XaiError("no metric to compute")
    return chosen


def explain_with(name: str, model: LoadedModel, X: np.ndarray, y: np.ndarray,
                 positions: np.ndarray, background: np.ndarray, seed: int,
                 full: bool = True) -> tuple[Any, Explanation, np.ndarray]:
    """The explainer of ``name``, its explanation of the predicted class and the rows of ``X`` it
    explains: all of them, or for a costly explainer (``evaluation_samples``) a seeded subset
    unless ``full``."""
    explainer = RandomExplainer() if name == RANDOM else get_explainer(name)
    cap = None if full else getattr(explainer, "evaluation_samples", None)
    rows = np.arange(len(X)) if cap is None or cap >= len(X) else pick_samples(len(X), cap, seed)
    needs_background = "background" in getattr(explainer, "requires", ())
    options = {"background": background} if needs_background else {}
    if name == RANDOM:
        options["seed"] = seed
    x = torch.as_tensor(X[rows], device=model.device)
    target = torch.as_tensor(model.logits(X[rows]).argmax(1), device=model.device)
    explanation = explainer.explain(model, x, target, **options)
    explanation.method = name
    explanation.labels = y[rows]
    explanation.sample_ids = positions[rows]
    return explainer, explanation, rows


def score(metric: Any, model: LoadedModel, explanation: Explanation, explainer: Any,
          context: dict) -> tuple[dict, dict | None]:
    """A metric's scores (and curves when it offers them) with the context options it takes."""
    defaults = getattr(metric, "defaults", {})
    options = {k: v for k, v in context.items() if k in defaults}
    if "explainer" in defaults:
        options["explainer"] = explainer
    if hasattr(metric, "evaluate_curves"):
        return metric.evaluate_curves(model, explanation, **options)
    return metric.evaluate(model, explanation, **options), None


MAX_SAMPLES = 500
N_BOOT = 2000


def evaluate_run(run: str | Path, methods: Iterable[str] = (), metrics: Iterable[str] = (),
                 samples: int | None = None, seed: int = 0, force: bool = False, device: Any = None,
                 figures: bool = False, progress: bool = True, n_boot: int = N_BOOT,
                 full: bool = False) -> list[dict]:
    """Evaluate a run's explanation methods; returns the rows written to ``RUN/evaluation.csv``.

    ``samples`` defaults to the whole test split (at most 500, drawn with ``seed``); a costly
    explainer explains only its ``evaluation_samples`` of them unless ``full``. The random
    baseline is always evaluated on all of them: every method gets a verdict against it on the
    samples that method explained.
    """
    run = Path(run)
    out_csv, out_dir = run / "evaluation.csv", run / "evaluation"
    if out_csv.exists() and not force:
        raise XaiError(f"{out_csv} exists; use --force to overwrite")
    model, dataset = load_run_data(run, device)
    n_test = len(dataset.test)
    positions = pick_samples(n_test, min(n_test, MAX_SAMPLES) if samples is None else samples, seed)
    X, y = dataset.test.X[positions], dataset.test.y[positions]
    context: dict[str, Any] = {"background": dataset.train.X, "seed": seed,
                               "random_baseline": False}
    if "mask_test" in dataset.info:
        context["mask"] = np.asarray(dataset.info["mask_test"])[positions]
    method_list = choose_methods(methods, model)
    if RANDOM not in method_list:
        method_list.append(RANDOM)
    scored = score_methods(model, method_list, choose_metrics(metrics, context), X, y, positions,
                           dataset.train.X, context, seed, progress, full)
    table = verdict_table(scored, len(positions), seed, n_boot)
    meta = {"samples": len(positions), "test_samples": n_test, "seed": seed, "bootstrap": n_boot,
            "interval": "95% percentile bootstrap over samples",
            "verdict": "paired bootstrap of the per-sample difference with the random baseline "
                       "(same samples); p: Wilcoxon signed-rank"}
    write_results(table, scored["curves"], out_csv, out_dir, figures, meta)
    return table


def score_methods(model: LoadedModel, method_list: list[str], metric_list: list[str],
                  X: np.ndarray, y: np.ndarray, positions: np.ndarray, background: np.ndarray,
                  context: dict, seed: int, progress: bool, full: bool = True) -> dict[str, Any]:
    """Explain the samples with every method, then score them with every metric: the rows, the
    per-sample scores per method, the curves, each score's direction, the scores compared with
    the random baseline and the rows each method explained."""
    import click

    curves: dict = {}
    per_sample: dict[str, dict[str, np.ndarray]] = {m: {} for m in method_list}
    directions: dict[str, bool] = {}
    versus_random: list[str] = []
    rows: dict[str, dict[str, Any]] = {m: {"method": m} for m in method_list}
    bar = click.progressbar(length=len(method_list) + len(metric_list), label="evaluating",
                            file=sys.stderr, hidden=not progress)
    with bar:
        explained: dict[str, tuple[Any, Explanation]] = {}
        covered: dict[str, np.ndarray] = {}
        for name in method_list:
            bar.label = f"{name}: explaining"
            explainer, explanation, covered[name] = explain_with(name, model, X, y, positions,
                                                                 background, seed, full)
            explained[name] = (explainer, explanation)
            rows[name]["samples"] = len(covered[name])
            bar.update(1)
        draws = [explain_with(RANDOM, model, X, y, positions, background,
                              seed * RANDOM_DRAWS + k)[1] for k in range(1, RANDOM_DRAWS)]
        for metric_name in metric_list:
            bar.label = metric_name
            metric = get_metric(metric_name)
            for name, (scores, curve) in score_all(metric, metric_name, model, explained, context,
                                                   draws, covered):
                rows[name].update(scores)
                if curve is None:
                    continue
                for key, values in curve.pop("per_sample", {}).items():
                    per_sample[name][key] = np.asarray(values, dtype=np.float64)
                    directions[key] = bool(getattr(metric, "higher_is_better", False))
                    if getattr(metric, "versus_random", False) and key not in versus_random:
                        versus_random.append(key)
                if curve:
                    curves.setdefault(metric_name, {})[name] = curve
            bar.update(1)
    return {"rows": rows, "per_sample": per_sample, "curves": curves, "directions": directions,
            "versus_random": versus_random, "covered": covered}


def verdict_table(scored: dict[str, Any], n_samples: int, seed: int, n_boot: int) -> list[dict]:
    """Every score with its bootstrap interval, every method's verdict against the random
    baseline, the methods ranked by verdict (verdict column first)."""
    from .stats import BASELINE, VERDICT_ORDER, bootstrap_indices, mean_interval, overall_verdict, \
        paired_verdict

    rows, per_sample = scored["rows"], scored["per_sample"]
    directions, versus_random = scored["directions"], scored["versus_random"]
    covered = scored["covered"]
    indices = bootstrap_indices(n_samples, n_boot, seed)

    def resampling(n: int) -> np.ndarray:
        return indices if n == n_samples else bootstrap_indices(n, n_boot, seed)

    for name, row in rows.items():
        mine = covered[name]
        # a method may explain a subset (a costly one), a metric may score one (randomisation)
        for key, values in per_sample[name].items():
            row[key], row[f"{key}_low"], row[f"{key}_high"] = mean_interval(
                values, resampling(len(values)))
        if name == RANDOM:
            row["verdict"] = BASELINE
            continue
        verdicts = []
        for key in versus_random:
            if key in per_sample[name] and key in per_sample[RANDOM]:
                test = paired_verdict(per_sample[name][key], per_sample[RANDOM][key][mine],
                                      directions[key], resampling(len(mine)))
                row[f"{key}_vs_random"] = test["verdict"]
                row[f"{key}_p"] = test["p"]
                verdicts.append(test["verdict"])
        row["verdict"] = overall_verdict(verdicts) if verdicts else "not tested"
    ordered = sorted(rows.values(), key=lambda r: (VERDICT_ORDER.get(r["verdict"], 1.5),
                                                   -sum(r.get(f"{k}_vs_random") == "better than random"
                                                        for k in versus_random),
                                                   rank_key(r, versus_random, directions)))
    return [{"verdict": r["verdict"], **{k: v for k, v in r.items() if k != "verdict"}}
            for r in ordered]


def rank_key(row: dict, keys: list[str], directions: dict[str, bool]) -> float:
    """Within a verdict: the first verdict score, best first (in the metric's direction)."""
    for key in keys:
        value = row.get(key)
        if value is not None and np.isfinite(value):
            return -value if directions[key] else value
    return float("inf")


def score_all(metric: Any, metric_name: str, model: LoadedModel,
              explained: dict[str, tuple[Any, Explanation]], context: dict,
              random_draws: list[Explanation], covered: dict[str, np.ndarray]):
    """``(method, (scores, curve))`` for every method: in one batch per set of explained samples
    when the metric offers ``evaluate_many`` (the random baseline then averaged with
    ``random_draws``, further seeded random explanations), else method by method; a metric failing
    for a method is warned about."""
    import click

    if hasattr(metric, "evaluate_many"):
        groups: dict[bytes, list[str]] = {}  # methods that explained the same samples
        for name in explained:
            groups.setdefault(covered[name].tobytes(), []).append(name)
        for names in groups.values():
            yield from score_together(metric, metric_name, model, explained, names, context,
                                      list(random_draws) if RANDOM in names else [])
        return
    for name in explained:
        explainer, explanation = explained[name]
        try:
            yield name, score(metric, model, explanation, explainer, context)
        except XaiError as exc:
            click.echo(f"\nwarning: {metric_name} of {name} failed: {exc}", err=True)
            yield name, ({}, None)


def score_together(metric: Any, metric_name: str, model: LoadedModel,
                   explained: dict[str, tuple[Any, Explanation]], names: list[str], context: dict,
                   extra: list[Explanation]):
    """``evaluate_many`` over the explanations of ``names`` (of the same samples) and ``extra``
    random draws, averaged into the random baseline's scores."""
    import click

    defaults = getattr(metric, "defaults", {})
    options = {k: v for k, v in context.items() if k in defaults}
    try:
        results = metric.evaluate_many(model, [explained[n][1] for n in names] + extra, **options)
    except XaiError as exc:
        click.echo(f"\nwarning: {metric_name} failed: {exc}", err=True)
        results = [({}, None)] * (len(names) + len(extra))
    if extra and results[0][1] is not None:
        i = names.index(RANDOM)
        group = [results[i]] + results[len(names):]
        scores = {k: float(np.mean([g[0][k] for g in group])) for k in group[0][0]}
        curve = {k: (np.mean([g[1][k] for g in group], axis=0) if k != "per_sample" else
                     {s: np.mean([g[1]["per_sample"][s] for g in group], axis=0) for s in v})
                 for k, v in group[0][1].items()}
        results[i] = (scores, curve)
    yield from zip(names, results[:len(names)])


def write_results(rows: list[dict], curves: dict, out_csv: Path, out_dir: Path,
                  figures: bool, meta: dict | None = None) -> None:
    """The CSV, the curves as JSON and (optionally) the figures."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_csv, "w", newline="") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False, float_format="%.6g")
    jsonable = {metric: {method: {k: np.asarray(v).tolist() if not isinstance(v, list) else v
                                  for k, v in curve.items()}
                         for method, curve in by_method.items()}
                for metric, by_method in curves.items()}
    write_text(out_dir / "curves.json", json.dumps(jsonable, indent=1))
    if meta is not None:
        write_text(out_dir / "settings.json", json.dumps(meta, indent=1))
    if figures:
        from .figures import render_all

        render_all(rows, curves, out_dir)
