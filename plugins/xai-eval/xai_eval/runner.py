"""``evaluate_run``: explain test samples of a run with every method and score them with every metric.

Writes ``RUN/evaluation.csv`` (one row per method, one column per score), ``RUN/evaluation/curves.json``
and the figures under ``RUN/evaluation/``. This is what ``xai evaluate`` runs.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.application import (
    capabilities_of,
    check_methods,
    get_explainer,
    get_metric,
    load_run_data,
    method_names,
    with_requirements,
)
from xaicore.application import names as installed_names
from xaicore.plugin import Explanation, LoadedModel, XaiError, atomic_open, modality_of, write_text

from .baseline import RandomExplainer
from .guard import RANDOM, explainer_call, metric_call
from .lanes import Lanes, WorkerDied, check_workers
from .lanes import state as lanes_state
from .stats import (
    BASELINE,
    BETTER,
    NOT_TESTED,
    RANKING,
    SANITY_ORDER,
    UNINFORMATIVE,
    WORSE,
    bootstrap_indices,
    corrected_verdict,
    holm,
    label,
    mean_interval,
    paired_verdict,
    summary,
)

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
    check_methods([name for name in requested if name != RANDOM], model)
    return requested


def choose_metrics(requested: Iterable[str], context: dict,
                   model: LoadedModel) -> tuple[list[str], dict[str, str]]:
    """The requested metrics (checked), or every installed metric that runs by default on the
    model's kind of input; and the default ones skipped, each with why (the inputs it requires are
    not available, or its ``check`` refuses the model)."""
    requested = list(dict.fromkeys(requested))
    kind = modality_of(model).name
    names = requested or [n for n in installed_names("metrics")
                          if getattr(get_metric(n), "default", True)
                          and kind in (getattr(get_metric(n), "default_kinds", ()) or (kind,))]
    chosen, skipped = [], {}
    for name in names:
        metric = get_metric(name)
        missing = [k for k in getattr(metric, "requires", ()) if k not in context]
        if missing and requested:
            raise XaiError(f"metric {name} needs {', '.join(missing)}, which this run's dataset does "
                           f"not provide (ground-truth masks come with the synthetic-* datasets)")
        check = getattr(metric, "check", None)
        try:
            reason = (f"needs {', '.join(missing)}, which this run's dataset does not provide"
                      if missing else metric_call(name, "check", check, model) if callable(check)
                      else None)
        except XaiError as exc:  # a check that raises costs its own metric
            reason = str(exc)
        if reason and requested:
            raise XaiError(f"metric {name} cannot score model {model.name!r}: {reason}")
        if reason:
            skipped[name] = reason
        else:
            chosen.append(name)
    if not chosen:
        raise XaiError("no metric to compute")
    return chosen, skipped


MAX_SAMPLES = 500
N_BOOT = 2000


def evaluate_run(run: str | Path, methods: Iterable[str] = (), metrics: Iterable[str] = (),
                 samples: int | None = None, seed: int = 0, force: bool = False, device: Any = None,
                 figures: bool = False, progress: bool = True, n_boot: int = N_BOOT,
                 full: bool = False, workers: int | None = None) -> list[dict]:
    """Evaluate a run's explanation methods; returns the rows written to ``RUN/evaluation.csv``.

    ``samples`` defaults to the whole test split (at most 500, drawn with ``seed``); a costly
    explainer explains only its ``evaluation_samples`` of them unless ``full``. The random
    baseline is always evaluated on all of them: every method gets a verdict against it on the
    samples that method explained. ``workers`` processes share the work (default: the cores, at
    most 8, on CPU; 1 on CUDA). A method whose explainer fails is a warning and is not scored
    (``failed_methods`` of ``RUN/evaluation/settings.json`` keeps why); when no method but the
    random baseline could be scored, the evaluation is an error and writes nothing.
    """
    import click

    run = Path(run)
    out_csv, out_dir = run / "evaluation.csv", run / "evaluation"
    if out_csv.exists() and not force:
        raise XaiError(f"{out_csv} exists; use --force to overwrite")
    model, dataset = load_run_data(run, device)
    workers = check_workers(workers, model.device)
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
    metric_list, skipped_metrics = choose_metrics(metrics, context, model)
    for name, reason in skipped_metrics.items():
        click.echo(f"skipping metric {name} (cannot score model {model.name!r}): {reason}", err=True)
    scored = score_methods(model, method_list, metric_list, X, y, positions, dataset.train.X,
                           context, seed, progress, full, workers)
    if scored["failed_methods"] and set(scored["rows"]) == {RANDOM}:
        raise XaiError("no method could be scored: " + "; ".join(scored["failed_methods"].values()))
    table = verdict_table(scored, len(positions), seed, n_boot)
    meta = {"samples": len(positions), "test_samples": n_test, "seed": seed, "bootstrap": n_boot,
            "workers": workers, "model_digest": model.digest,
            "failed_methods": scored["failed_methods"], "skipped_metrics": skipped_metrics,
            "interval": "95% percentile bootstrap over samples",
            "verdict": "per metric: better (worse) than random when the Wilcoxon signed-rank p of "
                       "the per-sample difference with the random baseline (same samples), "
                       "Holm-adjusted over the method's metrics, is below 0.05 and the paired "
                       "bootstrap interval of the difference lies above (below) zero; overall: "
                       "better (worse) on more informative metrics than worse (better)",
            "ranking": RANKING, **table_settings(table, scored["directions"])}
    write_results(table, scored["curves"], out_csv, out_dir, figures, meta)
    return table


def score_methods(model: LoadedModel, method_list: list[str], metric_list: list[str],
                  X: np.ndarray, y: np.ndarray, positions: np.ndarray, background: np.ndarray,
                  context: dict, seed: int, progress: bool, full: bool = True,
                  workers: int = 1) -> dict[str, Any]:
    """Explain the samples with every method, then score them with every metric: the rows, the
    per-sample scores per method, the curves, each score's direction, the scores compared with
    the random baseline and the rows each method explained.

    The work is split into tasks run side by side by ``workers`` processes (``lanes.py``): one
    per method explained, one per method and metric (per step for a metric made of independent
    parts, the randomisation), one per metric scoring several methods together. A method whose
    explainer fails is one warning line, left out of the rows and kept in ``failed_methods``
    (name -> the error); the others are scored."""
    import click

    method_list = list(dict.fromkeys(method_list))
    metrics = {name: get_metric(name) for name in metric_list}
    batched = [n for n in metric_list if "many" in capabilities_of(metrics[n])]
    results: dict[tuple[str, str], tuple[dict, dict | None]] = {}
    explained: dict[str, Explanation] = {}
    failed_methods: dict[str, str] = {}
    covered: dict[str, np.ndarray] = {}
    draws: dict[int, Explanation] = {}
    parts: dict[tuple[str, str], list] = {}
    bar = click.progressbar(length=len(method_list) * (1 + len(metric_list)), label="evaluating",
                            file=sys.stderr, hidden=not progress)
    with Lanes(model, workers, X=X, y=y, positions=positions, background=background,
               context=context) as lanes, bar:
        pending: dict[Future, tuple] = {}

        def submit(key: tuple, task: Any, *args: Any) -> None:
            pending[lanes.submit(task, *args)] = key

        for name in method_list:
            submit(("explain", name), explain_task, name, seed, full)
        for k in range(1, RANDOM_DRAWS):  # further random orders: a steadier baseline
            submit(("draw", k), explain_task, RANDOM, seed * RANDOM_DRAWS + k, True)
        if workers > 1:  # idle here meanwhile: load what the table needs (scipy.stats is slow)
            import pandas  # noqa: F401
            import scipy.stats  # noqa: F401
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: pending[f]):
                key = pending.pop(future)
                try:
                    result, caught = lanes.result(future)
                except XaiError as exc:
                    if isinstance(exc, WorkerDied) or key[0] == "draw" or key == ("explain",
                                                                                   RANDOM):
                        raise
                    if key[0] == "explain":
                        failed_methods[key[1]] = str(exc)
                        click.echo(f"\nwarning: {exc}; method {key[1]} is not scored", err=True)
                        result, caught = None, []
                    else:
                        result, caught = failed(key, exc, parts), []
                for message, category in caught:
                    warnings.warn(message, category, stacklevel=2)
                kind = key[0]
                if kind == "explain" and result is None:
                    bar.update(1 + len(metric_list))
                elif kind == "explain":
                    explained[key[1]], covered[key[1]] = result
                    bar.label = f"{key[1]}: explained"
                    bar.update(1)
                elif kind == "draw":
                    draws[key[1]] = result[0]
                elif kind == "part":
                    _, metric_name, name, k = key
                    parts[(metric_name, name)][k] = result
                    if all(p is not None for p in parts[(metric_name, name)]):
                        results[(metric_name, name)] = combine(
                            metrics[metric_name], metric_name, name, explained[name],
                            parts.pop((metric_name, name)), context)
                        bar.label = f"{metric_name}: {name}"
                        bar.update(1)
                elif kind == "score":
                    results[(key[1], key[2])] = result
                    bar.label = f"{key[1]}: {key[2]}"
                    bar.update(1)
                elif kind == "together":
                    for name, outcome in result:
                        results[(key[1], name)] = outcome
                    bar.label = key[1]
                    bar.update(len(result))
                if (kind in ("explain", "draw")
                        and len(explained) + len(failed_methods) == len(method_list)
                        and len(draws) == RANDOM_DRAWS - 1):
                    # the metrics over all methods go first: the longest tasks left
                    groups: dict[bytes, list[str]] = {}  # methods that explained the same samples
                    for name in explained:
                        groups.setdefault(covered[name].tobytes(), []).append(name)
                    for metric_name in batched:
                        for names in groups.values():
                            extra = [draws[k] for k in sorted(draws)] if RANDOM in names else []
                            submit(("together", metric_name, tuple(names)), together_task,
                                   metric_name, names, [explained[n] for n in names], extra)
                if kind == "explain" and result is not None:
                    for metric_name in metric_list:
                        if metric_name not in batched:
                            submit_method(submit, metrics[metric_name], metric_name, key[1],
                                          model, explained[key[1]], context, parts, results,
                                          bar)
    scored = [name for name in method_list if name in explained]
    return {**assemble(scored, metric_list, metrics, results, explained, covered),
            "failed_methods": failed_methods}


def explainer_for(name: str) -> Any:
    return RandomExplainer() if name == RANDOM else get_explainer(name)


def explain_task(name: str, seed: int, full: bool) -> tuple[Explanation, np.ndarray]:
    """In a lane: the explanation by ``name`` of the predicted class and the rows of the
    evaluated samples it explains: all of them, or for a costly explainer
    (``evaluation_samples``) a seeded subset unless ``full``."""
    s = lanes_state()
    model, X = s["model"], s["X"]
    explainer = explainer_for(name)
    cap = None if full else getattr(explainer, "evaluation_samples", None)
    rows = np.arange(len(X)) if cap is None or cap >= len(X) else pick_samples(len(X), cap, seed)
    options = with_requirements(explainer, {}, {"background": s["background"]})
    if name == RANDOM:
        options["seed"] = seed
    x = torch.as_tensor(X[rows], device=model.device)
    target = torch.as_tensor(model.logits(X[rows]).argmax(1), device=model.device)
    explanation = explainer_call(name, "explain", explainer.explain, model, x, target, **options)
    explanation.method = name
    explanation.labels = s["y"][rows]
    explanation.sample_ids = s["positions"][rows]
    return explanation, rows


def metric_options(metric: Any, context: dict, name: str | None = None) -> dict:
    """The context options ``metric`` takes, with the explainer of ``name`` when it takes one."""
    defaults = getattr(metric, "defaults", {})
    options = {k: v for k, v in context.items() if k in defaults}
    if name is not None and "explainer" in defaults:
        options["explainer"] = explainer_for(name)
    return options


def score_task(metric_name: str, name: str, explanation: Explanation) -> tuple[dict, dict | None]:
    """In a lane: a metric's scores of one method's explanation (and its curves if it has some)."""
    s = lanes_state()
    metric = get_metric(metric_name)
    options = metric_options(metric, s["context"], name)
    if "curves" in capabilities_of(metric):
        return metric_call(metric_name, "evaluate_curves", metric.evaluate_curves, s["model"],
                           explanation, **options)
    return metric_call(metric_name, "evaluate", metric.evaluate, s["model"], explanation,
                       **options), None


def part_task(metric_name: str, name: str, explanation: Explanation, part: int) -> Any:
    """In a lane: one independent part of a metric (a step of the randomisation)."""
    s = lanes_state()
    metric = get_metric(metric_name)
    return metric_call(metric_name, "evaluate_part", metric.evaluate_part, s["model"],
                       explanation, part, **metric_options(metric, s["context"], name))


def submit_method(submit: Any, metric: Any, metric_name: str, name: str, model: LoadedModel,
                  explanation: Explanation, context: dict, parts: dict, results: dict,
                  bar: Any) -> None:
    """Queue a metric's work on one method: a task per part when the metric has parts, else one."""
    if "parts" not in capabilities_of(metric):
        submit(("score", metric_name, name), score_task, metric_name, name, explanation)
        return
    try:
        count = metric_call(metric_name, "parts", metric.parts, model, explanation,
                            **metric_options(metric, context, name))
    except XaiError as exc:
        results[(metric_name, name)] = failed(("score", metric_name, name), exc, parts)
        count = 0
    if not count:  # nothing to run: scored (or failed) now
        results.setdefault((metric_name, name), ({}, None))
        bar.update(1)
        return
    parts[(metric_name, name)] = [None] * count
    for k in range(count):
        submit(("part", metric_name, name, k), part_task, metric_name, name, explanation, k)


def combine(metric: Any, metric_name: str, name: str, explanation: Explanation, done: list,
            context: dict) -> tuple[dict, dict | None]:
    """A parted metric's scores from its parts (a failed part fails the metric for the method)."""
    if any(p is FAILED for p in done):
        return {}, None
    try:
        return metric_call(metric_name, "combine", metric.combine, explanation, done,
                           **metric_options(metric, context, name))
    except XaiError as exc:
        return failed(("score", metric_name, name), exc, {})


FAILED = object()  # a part that failed (already warned about)


def failed(key: tuple, exc: XaiError, parts: dict) -> Any:
    """Warn that a metric failed for a method (or, batched, for all) and say what stands for it."""
    import click

    kind, metric_name = key[0], key[1]
    who = f" of {key[2]}" if kind in ("score", "part") else ""
    if kind != "part" or all(p is not FAILED for p in parts.get((metric_name, key[2]), [])):
        click.echo(f"\nwarning: {metric_name}{who} failed: {exc}", err=True)
    if kind == "part":
        return FAILED
    if kind == "together":
        return [(name, ({}, None)) for name in key[2]]
    return {}, None


def assemble(method_list: list[str], metric_list: list[str], metrics: dict[str, Any],
             results: dict, explained: dict[str, Explanation],
             covered: dict[str, np.ndarray]) -> dict[str, Any]:
    """The rows, per-sample scores, curves, directions and random-compared keys, in the order of
    the methods and metrics (whatever order the tasks finished in)."""
    curves: dict = {}
    per_sample: dict[str, dict[str, np.ndarray]] = {m: {} for m in method_list}
    directions: dict[str, bool] = {}
    versus_random: list[str] = []
    rows: dict[str, dict[str, Any]] = {m: {"method": m, "samples": len(covered[m])}
                                       for m in method_list}
    for metric_name in metric_list:
        metric = metrics[metric_name]
        for name in method_list:
            scores, curve = results.get((metric_name, name), ({}, None))
            rows[name].update(scores)
            if curve is None:
                continue
            curve = dict(curve)
            for key, values in curve.pop("per_sample", {}).items():
                per_sample[name][key] = np.asarray(values, dtype=np.float64)
                directions[key] = bool(getattr(metric, "higher_is_better", False))
                if getattr(metric, "versus_random", False) and key not in versus_random:
                    versus_random.append(key)
            if curve:
                curves.setdefault(metric_name, {})[name] = curve
    return {"rows": rows, "per_sample": per_sample, "curves": curves, "directions": directions,
            "versus_random": versus_random, "covered": covered}


def verdict_table(scored: dict[str, Any], n_samples: int, seed: int, n_boot: int) -> list[dict]:
    """Every score with its bootstrap interval, every method's per-metric verdicts against the
    random baseline (Holm-corrected over the metrics compared), the metrics that separate no
    method from random marked uninformative, each method's overall verdict and summary, the
    methods ranked (``rank_key``; verdict column first)."""
    rows, per_sample = scored["rows"], scored["per_sample"]
    directions, versus_random = scored["directions"], scored["versus_random"]
    covered = scored["covered"]
    indices = bootstrap_indices(n_samples, n_boot, seed)

    def resampling(n: int) -> np.ndarray:
        return indices if n == n_samples else bootstrap_indices(n, n_boot, seed)

    effects: dict[str, dict[str, float]] = {}
    for name, row in rows.items():
        mine = covered[name]
        # a method may explain a subset (a costly one), a metric may score one (randomisation)
        for key, values in per_sample[name].items():
            row[key], row[f"{key}_low"], row[f"{key}_high"] = mean_interval(
                values, resampling(len(values)))
        if name == RANDOM:
            continue
        tests = {key: paired_verdict(per_sample[name][key], per_sample[RANDOM][key][mine],
                                     directions[key], resampling(len(mine)))
                 for key in versus_random if key in per_sample[name] and key in per_sample[RANDOM]}
        for (key, test), p_holm in zip(tests.items(), holm([t["p"] for t in tests.values()])):
            row[f"{key}_vs_random"] = corrected_verdict(test, float(p_holm))
            row[f"{key}_p"] = test["p"]
            row[f"{key}_p_holm"] = float(p_holm)
        effects[name] = {key: test["effect"] for key, test in tests.items()}
    uninformative = [key for key in versus_random
                     if not any(r.get(f"{key}_vs_random") in (BETTER, WORSE) for r in rows.values())]
    for name, row in rows.items():
        if name == RANDOM:
            row["verdict"] = BASELINE
            continue
        counted = {}
        for key in versus_random:
            if f"{key}_vs_random" not in row:
                continue
            if key in uninformative:
                row[f"{key}_vs_random"] = UNINFORMATIVE
            else:
                counted[key] = row[f"{key}_vs_random"]
        if not effects[name]:
            row["verdict"] = NOT_TESTED
            continue
        row["verdict"], row["summary"] = summary({label(k): v for k, v in counted.items()},
                                                 row.get("randomisation"))
        row["better"] = sum(v == BETTER for v in counted.values())
        row["worse"] = sum(v == WORSE for v in counted.values())
        finite = [e for k, e in effects[name].items() if k in counted and np.isfinite(e)]
        row["effect"] = float(np.mean(finite)) if finite else float("nan")
    ordered = sorted(rows.values(), key=rank_key)
    first = ("verdict", "method", "summary")
    return [{**{k: r[k] for k in first if k in r}, **{k: v for k, v in r.items() if k not in first}}
            for r in ordered]


def table_settings(rows: list[dict], directions: dict[str, bool]) -> dict[str, Any]:
    """What a reader of the table needs besides it: which way each score is better, the scores'
    short names and the uninformative ones (``evaluation/settings.json``)."""
    return {"directions": {key: "higher" if up else "lower" for key, up in directions.items()},
            "labels": {key: label(key) for key in directions},
            "uninformative": uninformative_keys(rows)}


def uninformative_keys(rows: list[dict]) -> list[str]:
    """The scores marked uninformative in a table (``verdict_table``)."""
    return list(dict.fromkeys(key[:-len("_vs_random")] for row in rows for key, value in row.items()
                              if key.endswith("_vs_random") and value == UNINFORMATIVE))


def rank_key(row: dict) -> tuple:
    """A row's place in the ranking described by ``stats.RANKING``."""
    effect = row.get("effect", float("nan"))
    return (row["verdict"] == BASELINE, SANITY_ORDER.get(row.get("randomisation", ""), 1),
            row.get("worse", 0) - row.get("better", 0), -effect if np.isfinite(effect) else np.inf)


def together_task(metric_name: str, names: list[str], explanations: list[Explanation],
                  extra: list[Explanation]) -> list[tuple[str, tuple[dict, dict | None]]]:
    """In a lane: ``evaluate_many`` over the explanations of ``names`` (of the same samples) and
    ``extra`` random draws, averaged into the random baseline's scores."""
    s = lanes_state()
    metric = get_metric(metric_name)
    results = metric_call(metric_name, "evaluate_many", metric.evaluate_many, s["model"],
                          explanations + extra, **metric_options(metric, s["context"]))
    if extra and results[0][1] is not None:
        i = names.index(RANDOM)
        group = [results[i]] + results[len(names):]
        scores = {k: float(np.mean([g[0][k] for g in group])) for k in group[0][0]}
        curve = {k: (np.mean([g[1][k] for g in group], axis=0) if k != "per_sample" else
                     {s: np.mean([g[1]["per_sample"][s] for g in group], axis=0) for s in v})
                 for k, v in group[0][1].items()}
        results[i] = (scores, curve)
    return list(zip(names, results[:len(names)]))


def write_results(rows: list[dict], curves: dict, out_csv: Path, out_dir: Path,
                  figures: bool, meta: dict | None = None) -> None:
    """The CSV, the curves as JSON, the scores figure and (optionally) the other figures."""
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
    from .figures import render_all, summary_figure

    directions = {key: way == "higher" for key, way in (meta or {}).get("directions", {}).items()}
    if figures:
        render_all(rows, curves, out_dir, directions)
    else:
        summary_figure(rows, out_dir, directions)
