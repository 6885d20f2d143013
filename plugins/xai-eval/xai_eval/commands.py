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
@click.option("--samples", default=32, show_default=True, type=int,
              help="How many test samples to evaluate (drawn with --seed).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seed of the sample draw, the random baseline and the randomisation.")
@click.option("--device", default=None, help="torch device (default: cuda when available).")
@click.option("--force", is_flag=True, help="Overwrite an existing RUN/evaluation.csv.")
def evaluate_cmd(run, methods, metrics, samples, seed, device, force):
    """Write RUN/evaluation.csv (one row per method, one column per score) and RUN/evaluation/ figures."""
    import pandas as pd

    from xai_eval.runner import evaluate_run

    rows = evaluate_run(run, methods, metrics, samples=samples, seed=seed, force=force,
                        device=device)
    click.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"-> {Path(run) / 'evaluation.csv'} and figures in {Path(run) / 'evaluation'}",
               err=True)
