"""``xai report``: one self-contained HTML file of a run, added to ``xai`` by ``register_commands``.

Heavy imports happen inside the command.
"""

from pathlib import Path

import click


@click.command("report")
@click.option("--run", "runs", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Run directory written by xai train (one).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Report file [default: RUN/report.html].")
@click.option("--force", is_flag=True, help="Overwrite an existing report file.")
@click.option("--samples", default=None,
              help="Streamed results: samples to draw one by one (START:STOP, indices, "
                   "'misclassified', comma-separated); the dataset view covers all of them.")
def report_cmd(runs: tuple[Path, ...], out: Path | None, force: bool, samples: str | None) -> None:
    """Write RUN/report.html: model card, every explanation, evaluation, offline navigation."""
    from xaicore.application import get_renderer, hold_runs
    from xaicore.plugin import XaiError

    if len(runs) > 1:
        raise XaiError(f"xai report reports one run, not {len(runs)}: report each with its own "
                       f"xai report --run, or compare them with xai explain --run A --run B --out DIR")
    run = runs[0]
    if not run.is_dir():
        raise XaiError(f"no run directory at {run}")
    out = out if out is not None else run / "report.html"
    if out.is_dir():
        raise XaiError(f"{out} is a directory; give --out the report file's path")
    if out.exists() and not force:
        raise XaiError(f"{out} already exists; pass --force to overwrite it (or --out another file)")
    with hold_runs([run], "xai report", [out]):
        paths = get_renderer("html-report").render([], out_dir=run, run_dir=run, out=out,
                                                   samples=samples)
    click.echo(f"report -> {paths[0]}")
