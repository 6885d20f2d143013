"""``xai figures``: draw chosen samples and methods of a run's saved explanations as PNG, SVG,
PDF or EPS (``xai explain`` draws nothing unless asked). Heavy imports happen inside the command."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("figures")
@click.option("--run", "run", required=True, type=click.Path(path_type=Path),
              help="Run directory written by xai train.")
@click.option("--method", "methods", multiple=True,
              help="Explanations to draw (repeatable; default every saved one).")
@click.option("--samples", default=None,
              help="Test samples to draw: START:STOP, indices, 'misclassified', comma-separated "
                   "(default the first 16 of each explanation).")
@click.option("--format", "formats", multiple=True, default=("png",), show_default=True,
              type=click.Choice(["png", "svg", "pdf", "eps"], case_sensitive=False),
              help="File format (repeatable: --format pdf --format eps for a paper).")
@click.option("--training", is_flag=True,
              help="Also draw the run's training curves and confusion matrix in these formats.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder [default: RUN/explanations/figures].")
def figures_cmd(run: Path, methods: tuple[str, ...], samples: str | None,
                formats: tuple[str, ...], training: bool, out: Path | None) -> None:
    """Draw the figures of saved explanations: each sample with its attribution, methods side
    by side, misclassified samples' predicted- against true-class maps, global importance, SHAP
    and attention views."""
    from xaicore.application import hold_runs

    with hold_runs([run], "xai figures", [out]):
        _figures(run, methods, samples, formats, training, out)


def _figures(run: Path, methods: tuple[str, ...], samples: str | None, formats: tuple[str, ...],
             training: bool, out: Path | None) -> None:
    from xaicore.application import parse_samples, render_stage
    from xaicore.plugin import Explanation, XaiError

    folder = run / "explanations"
    paths = sorted(folder.glob("*.npz"))
    explanations = []
    for path in paths:
        try:
            e = Explanation.load(path)
        except XaiError as exc:
            click.echo(f"warning: {exc}", err=True)
            continue
        if not methods or e.method in methods:
            explanations.append(e)
    if not explanations:
        raise XaiError(f"no saved explanations{' of ' + ', '.join(methods) if methods else ''} "
                       f"in {folder}: write them with xai explain --run {run} --method ...")
    if samples:
        explanations = [_chosen(e, samples, parse_samples) for e in explanations]
    out = out or folder / "figures"
    formats = [f.lower() for f in formats]
    written, warnings = render_stage("explanations", explanations, out, formats=formats,
                                     samples=None, max_samples=10_000 if samples else 16)
    if training:
        more, more_warnings = render_stage("run", [], run, run_dir=run, formats=formats)
        written.update(more)
        warnings += more_warnings
    if not any(written.values()):
        raise XaiError(f"no figure was written to {out}" + (f": {warnings[0]}" if warnings else ""))
    for name, files in written.items():
        click.echo(f"{name}: {len(files)} files", err=True)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"figures -> {out}")


def _chosen(e, samples: str, parse_samples):
    """The explained samples among the test samples ``samples`` names (by test-split index)."""
    import numpy as np

    from xaicore.plugin import XaiError

    wrong = [int(s) for s, p, t in zip(e.sample_ids, e.predictions, e.labels) if t >= 0 and p != t]
    try:
        wanted = parse_samples(samples, int(e.sample_ids.max()) + 1, wrong)
    except XaiError:
        wanted = []
    positions = [int(np.flatnonzero(e.sample_ids == s)[0]) for s in wanted
                 if (e.sample_ids == s).any()]
    if not positions:
        raise XaiError(f"{e.method} explained none of the samples {samples!r} (it explained "
                       f"{', '.join(map(str, e.sample_ids[:10].tolist()))}...)")
    return e.select(positions)
