"""``xai evaluate``: score the explanation methods on a trained run (faithfulness, sanity checks).

Added to ``xai`` by the ``register_commands`` hook; heavy imports happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("evaluate")
@click.option("--run", required=True, type=click.Path(path_type=Path),
              help="Run directory written by `xai train`.")
@click.option("--method", "methods", multiple=True,
              help="Explainer to evaluate (repeatable; tsr:METHOD wraps one). Default: every "
                   "installed explainer that can explain the model, plus the random baseline. "
                   "Counterfactual methods (native-guide, comte) are scored on their own, against "
                   "the nearest unlike neighbour, into RUN/evaluation/counterfactuals.csv.")
@click.option("--metric", "metrics", multiple=True,
              help="Metric (repeatable). Default: every installed metric the run's data allows.")
@click.option("--samples", default=None, type=int,
              help="How many test samples to evaluate (drawn with --seed). Default: the whole test "
                   "split, at most 500.")
@click.option("--full", is_flag=True,
              help="Explain every evaluated sample with every method, the costly ones too (by "
                   "default a method that declares evaluation_samples, such as shap, explains a "
                   "seeded subset of that size; the table's samples column says how many).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seed of the sample draw, the random baseline and the randomisation.")
@click.option("--device", default=None, help="torch device (default: cuda when available).")
@click.option("--force", is_flag=True, help="Overwrite an existing RUN/evaluation.csv.")
@click.option("--figures", is_flag=True,
              help="Also draw the curves under RUN/evaluation/ (deletion and insertion per method, "
                   "randomisation, AUP/AUR); the scores figure is always drawn.")
@click.option("--workers", default=None, type=click.IntRange(1, 256),
              help="Processes sharing the work, one torch thread each (default: the cores, at "
                   "most 8, on CPU; 1 on CUDA). Each task seeds its own draws, so the numbers do "
                   "not depend on it (1 runs in this process, with torch's thread count).")
@click.option("--bootstrap", default=2000, show_default=True, type=click.IntRange(100, 100_000),
              help="Bootstrap resamples of the 95% intervals and of the verdict.")
def evaluate_cmd(run, methods, metrics, samples, full, seed, device, force, figures, workers,
                 bootstrap):
    """Write RUN/evaluation.csv (one row per method, one column per score) and RUN/evaluation/ figures."""
    from xai_eval.counterfactuals import is_counterfactual
    from xai_eval.runner import evaluate_run
    from xaicore.application import hold_runs

    counterfactual = [m for m in methods if is_counterfactual(m)]
    if counterfactual:
        return evaluate_counterfactual_cmd(run, methods, counterfactual, metrics, samples, full,
                                           seed, device, force, bootstrap)
    with hold_runs([run], "xai evaluate"):
        rows = evaluate_run(run, methods, metrics, samples=samples, seed=seed, force=force,
                            device=device, figures=figures, n_boot=bootstrap, full=full,
                            workers=workers)
    settings = json.loads((Path(run) / "evaluation" / "settings.json").read_text())
    click.echo(summary_table(rows, {k: v == "higher" for k, v in settings["directions"].items()}))
    click.echo(LEGEND)
    where = f"-> {Path(run) / 'evaluation.csv'}"
    click.echo(where + (f" and figures in {Path(run) / 'evaluation'}" if figures else
                        " (add --figures for the curves)"), err=True)


def evaluate_counterfactual_cmd(run, methods, counterfactual, metrics, samples, full, seed, device,
                                force, bootstrap):
    """``xai evaluate --method native-guide``: counterfactual methods against the nearest unlike
    neighbour, in RUN/evaluation/counterfactuals.csv."""
    from xai_eval.counterfactuals import FILE, evaluate_counterfactuals, table
    from xaicore.application import hold_runs
    from xaicore.plugin import XaiError

    others = [m for m in methods if m not in counterfactual]
    if others or metrics:
        raise XaiError(f"{', '.join(counterfactual)}: counterfactual methods are scored on their "
                       f"own measures against the nearest unlike neighbour; evaluate them without "
                       f"{'--metric' if metrics else ', '.join(others)} (xai evaluate --run RUN "
                       f"--method {counterfactual[0]})")
    with hold_runs([run], "xai evaluate"):
        rows = evaluate_counterfactuals(run, counterfactual, samples=samples, seed=seed,
                                        force=force, device=device, n_boot=bootstrap, full=full)
    click.echo(table(rows))
    click.echo("better / worse: than the nearest unlike neighbour as the counterfactual (Wilcoxon p, "
               "Holm-adjusted over the measures, below 0.05 and the paired bootstrap interval on "
               "one side of zero); intervals: 95% bootstrap over samples")
    click.echo(f"-> {Path(run) / 'evaluation' / FILE}", err=True)


LEGEND = ("better / worse / n.d.: than random or not distinguishable from it (Wilcoxon p, "
          "Holm-adjusted over the metrics, below 0.05 and the paired bootstrap interval on one "
          "side of zero); an uninformative metric separates no method from random and is left "
          "out of the summaries")
SHORT = {"better than random": "better", "worse than random": "worse",
         "not distinguishable": "n.d.", "uninformative": "uninformative"}
HIDDEN = ("_low", "_high", "_p", "_p_holm", "_vs_random")


def summary_table(rows: list[dict], directions: dict[str, bool]) -> str:
    """Verdict, method and summary first, then each score as ``mean [low, high]`` followed by its
    verdict against random, each header saying which way is better (``directions``: score ->
    higher is better) and whether the score is uninformative; the p-values stay in the CSV."""
    import pandas as pd

    useless = {key[:-len("_vs_random")] for row in rows for key, value in row.items()
               if key.endswith("_vs_random") and value == "uninformative"}
    shown = []
    for row in rows:
        out = {"verdict": row["verdict"], "method": row["method"],
               "summary": row.get("summary", "")}
        for key, value in row.items():
            if key in out or key in ("better", "worse", "effect") or key.endswith(HIDDEN):
                continue
            head = key
            if key in directions:
                head += f" ({'higher' if directions[key] else 'lower'} better"
                head += ", uninformative)" if key in useless else ")"
            if f"{key}_low" in row:
                out[head] = f"{value:.3f} [{row[f'{key}_low']:.3f}, {row[f'{key}_high']:.3f}]"
                if f"{key}_vs_random" in row:
                    out[head] += f" {SHORT[row[f'{key}_vs_random']]}"
            elif isinstance(value, float):
                out[head] = f"{value:.3f}"
            else:
                out[head] = value
        shown.append(out)
    return pd.DataFrame(shown).fillna("").to_string(index=False)
