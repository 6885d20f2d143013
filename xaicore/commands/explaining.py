"""``xai explain``: explain test samples of one or more trained runs with one or more methods."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import XaiError

COMMANDS: list = []


def parse_options(items: tuple[str, ...]) -> dict[str, dict]:
    """``--option gradcam.layer=cnn.3`` into ``{"gradcam": {"layer": "cnn.3"}}`` (JSON values)."""
    options: dict[str, dict] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, name = key.rpartition(".")
        if not sep or not dot or not method or not name:
            raise XaiError(f"--option takes METHOD.NAME=VALUE (e.g. integrated-gradients.n_steps=32), "
                           f"not {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method, {})[name] = value
    return options


@click.command("explain")
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Run directory written by `xai train` (repeat to compare models).")
@click.option("--method", "methods", multiple=True,
              help="Explainer name (repeatable), or 'all' (default).")
@click.option("--samples", default="0:16", show_default=True,
              help="Test samples: START:STOP, indices, 'all', 'misclassified', comma-separated.")
@click.option("--target", default="predicted", show_default=True,
              help="Class to explain: predicted, true, a class index or a class name.")
@click.option("--option", "option_items", multiple=True,
              help="Method option METHOD.NAME=VALUE, e.g. integrated-gradients.n_steps=32.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output directory (default RUN/explanations; with several runs, required).")
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="Render figures with the installed renderers.")
@click.option("--device", default=None, help="torch device (default: cuda when available).")
@click.option("--force", is_flag=True, help="Overwrite existing explanation files.")
def explain_cmd(runs, methods, samples, target, option_items, out, figures, device, force):
    """Explain test samples of trained runs and write one .npz per method (and figures)."""
    from ..explaining import explain_runs

    if len(runs) > 1 and out is None:
        raise XaiError("with several --run, give --out for the side-by-side result")
    explain_runs(list(runs), methods, samples, target, parse_options(option_items), out, figures,
                 device, force)


COMMANDS.append(explain_cmd)
