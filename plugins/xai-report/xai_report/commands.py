"""``xai report``: one self-contained HTML file of a run, or of a comparison of several runs, added
to ``xai`` by ``register_commands``.

Heavy imports happen inside the command.
"""

from pathlib import Path

import click


@click.command("report")
@click.option("--run", "runs", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Run directory written by xai train; several (--run A --run B) write one "
                   "comparison report of their models on the same test split.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Report file [default: RUN/report.html; several runs: comparison-A-B.html "
                   "beside the first run].")
@click.option("--force", is_flag=True, help="Overwrite an existing report file.")
@click.option("--samples", default=None,
              help="Streamed results: samples to draw one by one (START:STOP, indices, "
                   "'misclassified', comma-separated); the dataset view covers all of them.")
def report_cmd(runs: tuple[Path, ...], out: Path | None, force: bool, samples: str | None) -> None:
    """Write RUN/report.html: model card, every explanation, evaluation, offline navigation."""
    from xaicore.application import get_renderer, hold_runs
    from xaicore.plugin import XaiError

    for run in runs:
        if not run.is_dir():
            raise XaiError(f"no run directory at {run}")
    if len(runs) > 1:
        from xai_report.comparison import default_out

        if samples is not None:
            raise XaiError("--samples draws a single run's streamed results; a comparison shows "
                           "the samples every run explained")
        out = out if out is not None else default_out(list(runs))
    else:
        out = out if out is not None else runs[0] / "report.html"
    if out.is_dir():
        raise XaiError(f"{out} is a directory; give --out the report file's path")
    if out.exists() and not force:
        raise XaiError(f"{out} already exists; pass --force to overwrite it (or --out another file)")
    with hold_runs(list(runs), "xai report", [out]):
        if len(runs) > 1:
            compare_runs(list(runs), out)
            return
        run = runs[0]
        paths = get_renderer("html-report").render([], out_dir=run, run_dir=run, out=out,
                                                   samples=samples)
    click.echo(f"report -> {paths[0]}")


def compare_runs(runs: list[Path], out: Path) -> None:
    """Write the comparison report and record it in each run, so that the run's report links it."""
    from xai_report.comparison import read_comparison
    from xai_report.comparison_links import record
    from xai_report.comparison_page import write_page

    comparison = read_comparison(runs)
    path = write_page(comparison, out)
    labels = [r.label for r in comparison.runs]
    for run, compared in zip(runs, comparison.runs):
        record(run, path, labels, compared.model_digest)
        if (run / "report.html").is_file():
            click.echo(f"{run / 'report.html'} links it once written again (xai report --run "
                       f"{run} --force)", err=True)
    click.echo(f"comparison report -> {path}")
