"""``xai evaluate``: score the explanation methods on a trained run (faithfulness, sanity checks).

Added to ``xai`` by the ``register_commands`` hook; heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("evaluate")
@click.option("--run", required=True, type=click.Path(path_type=Path),
              help="Run directory written by `xai train`.")
@click.option("--method", "methods", multiple=True,
              help="Explainer to evaluate (repeatable; tsr:METHOD wraps one). Default: every "
                   "installed explainer that can explain the model, plus the random baseline.")
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
              help="Also draw the figures under RUN/evaluation/ (curves, AUC summary, randomisation).")
@click.option("--workers", default=None, type=click.IntRange(1, 256),
              help="Processes sharing the work, one torch thread each (default: the cores, at "
                   "most 8, on CPU; 1 on CUDA). Each task seeds its own draws, so the numbers do "
                   "not depend on it (1 runs in this process, with torch's thread count).")
@click.option("--bootstrap", default=2000, show_default=True, type=click.IntRange(100, 100_000),
              help="Bootstrap resamples of the 95% intervals and of the verdict.")
def evaluate_cmd(run, methods, metrics, samples, full, seed, device, force, figures, workers,
                 bootstrap):
    """Write RUN/evaluation.csv (one row per method, one column per score) and RUN/evaluation/ figures."""
    from xai_eval.runner import evaluate_run
    from xaicore.application import hold_runs

    with hold_runs([run], "xai evaluate"):
        rows = evaluate_run(run, methods, metrics, samples=samples, seed=seed, force=force,
                            device=device, figures=figures, n_boot=bootstrap, full=full,
                            workers=workers)
    click.echo(summary_table(rows))
    where = f"-> {Path(run) / 'evaluation.csv'}"
    click.echo(where + (f" and figures in {Path(run) / 'evaluation'}" if figures else
                        " (add --figures for the figures)"), err=True)


def summary_table(rows: list[dict]) -> str:
    """Verdict first, then each score as ``mean [low, high]``; the p-values and per-metric verdicts
    stay in the CSV."""
    import pandas as pd

    shown = []
    for row in rows:
        out = {"verdict": row["verdict"], "method": row["method"]}
        for key, value in row.items():
            if key in out or key.endswith(("_low", "_high", "_p", "_vs_random")):
                continue
            if f"{key}_low" in row:
                out[key] = f"{value:.3f} [{row[f'{key}_low']:.3f}, {row[f'{key}_high']:.3f}]"
            elif isinstance(value, float):
                out[key] = f"{value:.3f}"
            else:
                out[key] = value
        shown.append(out)
    return pd.DataFrame(shown).to_string(index=False)
