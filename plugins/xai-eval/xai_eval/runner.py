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
    names = requested or installed_names("metrics")
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
                 positions: np.ndarray, background: np.ndarray, seed: int) -> tuple[Any, Explanation]:
    """The explainer of ``name`` and its explanation of the predicted class of every sample."""
    explainer = RandomExplainer() if name == RANDOM else get_explainer(name)
    needs_background = "background" in getattr(explainer, "requires", ())
    options = {"background": background} if needs_background else {}
    if name == RANDOM:
        options["seed"] = seed
    x = torch.as_tensor(X, device=model.device)
    target = torch.as_tensor(model.logits(X).argmax(1), device=model.device)
    explanation = explainer.explain(model, x, target, **options)
    explanation.method = name
    explanation.labels = y
    explanation.sample_ids = positions
    return explainer, explanation


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


def evaluate_run(run: str | Path, methods: Iterable[str] = (), metrics: Iterable[str] = (),
                 samples: int = 32, seed: int = 0, force: bool = False, device: Any = None,
                 figures: bool = True, progress: bool = True) -> list[dict]:
    """Evaluate a run's explanations; returns the rows written to ``RUN/evaluation.csv``."""
    import click

    run = Path(run)
    out_csv, out_dir = run / "evaluation.csv", run / "evaluation"
    if out_csv.exists() and not force:
        raise XaiError(f"{out_csv} exists; use --force to overwrite")
    model, dataset = load_run_data(run, device)
    positions = pick_samples(len(dataset.test), samples, seed)
    X, y = dataset.test.X[positions], dataset.test.y[positions]
    context: dict[str, Any] = {"background": dataset.train.X, "seed": seed}
    if "mask_test" in dataset.info:
        context["mask"] = np.asarray(dataset.info["mask_test"])[positions]
    method_list = choose_methods(methods, model)
    metric_list = choose_metrics(metrics, context)
    rows, curves = [], {}
    bar = click.progressbar(length=len(method_list) * (1 + len(metric_list)), label="evaluating",
                            file=sys.stderr, hidden=not progress)
    with bar:
        for name in method_list:
            bar.label = f"{name}: explaining"
            explainer, explanation = explain_with(name, model, X, y, positions, dataset.train.X, seed)
            bar.update(1)
            row: dict[str, Any] = {"method": name}
            for metric_name in metric_list:
                bar.label = f"{name}: {metric_name}"
                metric = get_metric(metric_name)
                try:
                    scores, curve = score(metric, model, explanation, explainer, context)
                except XaiError as exc:
                    click.echo(f"\nwarning: {metric_name} of {name} failed: {exc}", err=True)
                    scores, curve = {}, None
                row.update(scores)
                if curve is not None:
                    curves.setdefault(metric_name, {})[name] = curve
                bar.update(1)
            rows.append(row)
    write_results(rows, curves, out_csv, out_dir, figures)
    return rows


def write_results(rows: list[dict], curves: dict, out_csv: Path, out_dir: Path,
                  figures: bool) -> None:
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
    if figures:
        from .figures import render_all

        render_all(rows, curves, out_dir)
