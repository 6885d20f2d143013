"""``xai explain``: explain test samples of one or more trained runs with one or more methods."""

from __future__ import annotations

import json
from pathlib import Path

import click

from xaicore.commands.training import columns_of, long_format_options, threads_option
from xaicore.errors import XaiError

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
              help="Class to explain: predicted, true, a class name, or else a class index (a "
                   "text that names a class is that class, even '1'; spaces around it are "
                   "ignored).")
@click.option("--option", "option_items", multiple=True,
              help="Method option METHOD.NAME=VALUE, e.g. integrated-gradients.n_steps=32.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output directory (default RUN/explanations; with several runs, required).")
@click.option("--figures/--no-figures", default=False, show_default=True,
              help="Also draw figures with the installed renderers (or later: xai figures, "
                   "xai report).")
@click.option("--device", default=None, help="torch device (default: cuda when available).")
@threads_option("auto")
@click.option("--force", is_flag=True, help="Overwrite existing explanation files.")
@click.option("--input", "input_path", type=click.Path(path_type=Path),
              help="Explain this data instead of the test split (.npy, .npz with X, .csv, .zarr), "
                   "streamed in batches into one chunked store per method.")
@click.option("--engine", default="local", show_default=True,
              help="Execution engine for streamed results (see `xai list`): local, ray, ...")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Samples per batch (and per store chunk) when streaming.")
@click.option("--resume", is_flag=True,
              help="Continue incomplete stores from the rows already written.")
@click.option("--workers", type=click.IntRange(1, 100_000),
              help="Workers of a distributed engine (ray: actors, one model each).")
@click.option("--gpus-per-worker", type=click.FloatRange(0, 64),
              help="GPUs per worker of a distributed engine.")
@click.option("--address", help="Cluster to join (ray: ray://HOST:PORT or auto; default "
              "RAY_ADDRESS, else a local Ray).")
@click.option("--checkpoint-seconds", type=click.FloatRange(0, 86_400),
              help="When streaming, write the explained rows to the stores at least this often "
                   "(default 10; a killed run explains at most this much again on --resume; "
                   "0: after every batch).")
@long_format_options("--input (label column optional)")
@click.option("--text-column", help="Texts: the column of --input (.csv, .tsv, .jsonl) holding the "
              "texts of a text run (labels, optional, in --label-column).")
@click.option("--text", "texts", multiple=True,
              help="A text to explain (repeatable) with a text run, instead of its test split; "
                   "written to RUN/explanations/texts unless --out is given.")
def explain_cmd(runs, methods, samples, target, option_items, out, figures, device, threads, force,
                input_path, engine, batch_size, resume, workers, gpus_per_worker, address,
                checkpoint_seconds, id_column, time_column, label_column, text_column, texts):
    """Explain test samples of trained runs and write one .npz per method (figures on request).

    With --input, or --samples all on a large test split, results stream into one chunked
    store per method (METHOD.zarr), in constant memory, on the chosen --engine.
    """
    from xaicore.explaining.runs import explain_runs, explain_streamed, get_engine
    from xaicore.models.devices import use_threads
    from xaicore.plugins.registry import resolve_options
    from xaicore.runs.directory import hold_runs

    use_threads(threads, device)
    if len(runs) > 1 and out is None:
        raise XaiError("with several --run, give --out for the side-by-side result")
    target = target.strip()
    given = {k: v for k, v in (("workers", workers), ("gpus_per_worker", gpus_per_worker),
                               ("address", address)) if v is not None}
    # the engine's declared options: the local engine refuses --workers instead of ignoring it
    engine_options = resolve_options("engines", engine, get_engine(engine), given)
    with hold_runs(runs, "xai explain", [out]):
        columns = ({k: v for k, v in (("text_column", text_column), ("label_column", label_column))
                    if v is not None} if text_column else
                   columns_of(id_column, time_column, label_column))
        if texts:
            if input_path is not None:
                raise XaiError("give --text or --input, not both")
            explain_runs(list(runs), methods, "all", target, parse_options(option_items), out,
                         figures, device, force, texts=list(texts))
            return
        if input_path is not None and click.get_current_context().get_parameter_source(
                "samples") is click.core.ParameterSource.COMMANDLINE:
            raise XaiError("--samples picks samples of the run's test split; --input explains "
                           "every row of its file (give a file of the rows to explain)")
        streamed = explain_streamed(list(runs), methods, samples, target,
                                    parse_options(option_items), out, device, force, input_path,
                                    engine, batch_size, resume, engine_options,
                                    checkpoint_seconds, columns)
        if streamed is None:
            explain_runs(list(runs), methods, samples, target, parse_options(option_items), out,
                         figures, device, force)


COMMANDS.append(explain_cmd)
