"""``xai train`` and ``xai predict``; torch and the training code are imported when they run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from xaicore.errors import XaiError

COMMANDS: list = []
HF_MODEL = "hf-model"  # the registered model that reads xai import --hf folders (xai-text)
SEED = click.IntRange(0, 2**32 - 1)


def long_format_options(what: str):
    """``--id-column``, ``--time-column`` and ``--label-column``: the columns of a long-format
    CSV (``what`` says which file), passed to the command as ``columns``."""
    def decorate(command):
        for option in reversed([
            click.option("--id-column", help=f"Long-format CSV {what}: the column naming each "
                         "row's sample (rows are grouped into series by it)."),
            click.option("--time-column", help=f"Long-format CSV {what}: the column ordering a "
                         "sample's rows (numbers or ISO dates)."),
            click.option("--label-column", help=f"Long-format CSV {what}: the label column, the "
                         "same on every row of a sample (default: the last column)."),
        ]):
            command = option(command)
        return command
    return decorate


class Threads(click.ParamType):
    """``--threads``: a count, 0 (torch's default) or ``auto`` (None)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if not (text.isdigit() and int(text) <= 1024):
            self.fail(f"{value!r} is not a thread count from 0 to 1024 nor 'auto'", param, ctx)
        return int(text)


def threads_option(default: str):
    """``--threads`` of a command that runs torch on the CPU (resolved by
    ``xaicore.models.devices.choose_threads``)."""
    return click.option("--threads", default=default, show_default=True, type=Threads(),
                        help="CPU threads: N, 0 (torch's default) or auto (the CPUs this process "
                             "may use that other processes leave free, at least 1).")


def columns_of(id_column: str | None, time_column: str | None, label_column: str | None) -> dict:
    from xaicore.data.loading import long_columns

    return long_columns(id_column, time_column, label_column)


def parse_params(items: tuple[str, ...], flag: str = "--param") -> dict:
    """``--param key=value`` pairs into a dict; values are JSON when they parse (``4``, ``[8,5]``)."""
    params: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise XaiError(f"{flag} takes KEY=VALUE (e.g. num_heads=8), not {item!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def split_data(items: tuple[str, ...]) -> tuple[str, dict]:
    """``xai import --data``: the one dataset (a name or path) and the KEY=VALUE options beside it."""
    options = tuple(item for item in items if re.match(r"[A-Za-z_]\w*=", item))
    named = [item for item in items if item not in options]
    if len(named) != 1:
        raise XaiError(f"--data names one dataset (a registered name, a file or a folder), with "
                       f"KEY=VALUE options beside it; got {', '.join(map(repr, named)) or 'none'}")
    return named[0], parse_params(options, "--data")


def kind_spec(model: str | None, dataset: str, test: Path | None, columns: dict, seed: int,
              test_size: float, data: dict) -> dict | None:
    """The dataset spec the model's kind of input builds for a file it reads itself (texts: a
    CSV, TSV, JSONL file or a folder per class), or None for the default reading."""
    from xaicore.plugins import registry

    cls = registry.get_model(model) if model else None
    return file_spec(registry.get_modality(getattr(cls, "modality", None) or None), dataset, test,
                     columns, seed, test_size, data, f"model {model!r}")


def file_spec(modality: object, dataset: str, test: Path | None, columns: dict, seed: int,
              test_size: float, data: dict, reader: str) -> dict | None:
    """The dataset spec ``modality`` builds for a file it reads itself, or None for the default
    reading; ``reader`` (what reads the data) names it in the refusal of --text-column."""
    build = getattr(modality, "dataset_spec", None)  # optional: the kind reads its own files
    path = Path(dataset).expanduser()
    is_file = path.exists() or path.suffix != "" or "/" in dataset
    if not callable(build) or not is_file:
        if columns.get("text_column"):
            raise XaiError(f"--text-column reads a file of texts, but {reader} takes "
                           f"{getattr(modality, 'name', '')}; train a text model on it")
        return None
    return build(path, test, columns, seed, test_size, data)


@click.command("train")
@click.option("--dataset",
              help="A registered dataset name (GunPoint, ...; see `xai list`) or a .csv/.npz file.")
@click.option("--test", type=click.Path(path_type=Path),
              help="Test file for a .csv/.npz dataset (default: a seeded stratified split).")
@click.option("--test-size", default=0.25, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of each class held out for test when there is no test file.")
@click.option("--model", help="A registered model name (see `xai list`); default "
              "cnn-lstm-attention (with --resume: the run's model).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--epochs", type=click.IntRange(1, 100_000), help="Epochs (default: the model's recipe).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of weights, shuffling, splits.")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000),
              help="Batch size (default: the model's recipe).")
@click.option("--lr", type=click.FloatRange(0, 10, min_open=True),
              help="Learning rate (default: the model's recipe).")
@click.option("--param", "param_items", multiple=True,
              help="Model hyperparameter KEY=VALUE (repeatable; JSON values), e.g. num_heads=8.")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its optimizer state up to --epochs in total.")
@click.option("--device", default=None, help="torch device: cpu, cuda, cuda:N (default: cuda if available).")
@threads_option("1")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@long_format_options("--dataset (and --test)")
@click.option("--text-column", help="Texts: the column of --dataset (.csv, .tsv, .jsonl) holding "
              "the texts; the labels are in --label-column (default: a column named label). A "
              "folder with one subfolder of .txt files per class needs neither.")
@click.option("--data", "data_items", multiple=True,
              help="Dataset option KEY=VALUE (repeatable; JSON values), e.g. max_length=64 or "
                   "tokenizer=path/to/hf-folder (see `xai list --options DATASET`).")
def train_cmd(dataset, test, test_size, model, out, epochs, seed, batch_size, lr, param_items, force,
              resume, device, threads, quiet, id_column, time_column, label_column, text_column,
              data_items):
    """Train a model and write a run directory (checkpoint, history, metrics, figures, report)."""
    from xaicore.data.loading import dataset_spec
    from xaicore.models.devices import choose_threads
    from xaicore.runs.training import train

    params = parse_params(param_items)
    data = parse_params(data_items, "--data")
    if resume and (params or test or batch_size or lr or data or text_column or id_column
                   or time_column or label_column):
        raise XaiError("--resume continues with the run's own data and recipe; give only --epochs")
    if not resume and not dataset:
        raise XaiError("give --dataset (a registered name or a .csv/.npz file)")
    model = model or (None if resume else "cnn-lstm-attention")
    spec = None
    if not resume:
        given = {k: v for k, v in (("text_column", text_column), ("label_column", label_column))
                 if v is not None}
        spec = None if id_column or time_column else kind_spec(model, dataset, test, given, seed,
                                                                test_size, data)
        if spec is None:
            columns = columns_of(id_column, time_column, label_column)
            spec = {**dataset_spec(dataset, test=test, seed=seed, test_size=test_size, **columns),
                    **data}
    metrics = train(spec, model, out, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr,
                    params=params, force=force, device=device, progress=not quiet, resume=resume,
                    threads=choose_threads(threads, device))
    if quiet:  # otherwise train() has printed the same summary
        click.echo(f"test accuracy {metrics['test_accuracy']:.4f}  train accuracy "
                   f"{metrics['train_accuracy']:.4f}  {metrics['epochs']} epochs  "
                   f"{metrics['seconds']:.1f} s  -> {out}")


@click.command("predict")
@click.option("--run", required=True, type=click.Path(path_type=Path),
              help="Run directory written by `xai train`.")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="Samples to classify: series in a .csv (training layout, label column "
                   "optional) or an .npz with X [sample, time, feature]; texts in a .csv, .tsv or "
                   ".jsonl with a text column.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Predictions CSV (default RUN/predictions/<input name>.csv).")
@click.option("--force", is_flag=True, help="Replace an existing predictions file.")
@threads_option("auto")
@long_format_options("--input (label column optional)")
@click.option("--text-column", help="Texts: the column of --input (.csv, .tsv, .jsonl) holding the "
              "texts of a text run (default: a column named text, sentence, review or content; "
              "labels, optional, in --label-column).")
def predict_cmd(run, input_path, out, force, threads, id_column, time_column, label_column,
                text_column):
    """Predict classes and class probabilities for new samples (series, texts) with a trained run."""
    from xaicore.models.devices import use_threads
    from xaicore.runs.directory import hold_runs
    from xaicore.runs.predicting import predict

    use_threads(threads)
    columns = ({k: v for k, v in (("text_column", text_column), ("label_column", label_column))
                if v is not None} if text_column or not (id_column or time_column) and label_column
               else columns_of(id_column, time_column, label_column))
    out = out or run / "predictions" / f"{input_path.stem}.csv"
    with hold_runs([run], "xai predict", [out]):
        click.echo(f"predictions -> {predict(run, input_path, out, force=force, columns=columns)}")


@click.command("import")
@click.option("--module", "target",
              help="Your network class: MODULE:CLASS (importable from here, or installed) or "
                   "FILE.py:CLASS; or a function returning the network (torchvision.models:resnet18).")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Its trained weights: a file torch.save(net.state_dict(), ...) wrote "
                   "(read with weights_only=True).")
@click.option("--hf", "hf_folder", type=click.Path(path_type=Path),
              help="Instead of --module and --weights: a local Hugging Face sequence classifier "
                   "folder (config.json, model.safetensors or pytorch_model.bin, tokenizer files); "
                   "--data then names the texts it classifies.")
@click.option("--params", default=None,
              help="Keyword arguments the class is built with, as JSON (default: the "
                   "'hyperparameters' saved with the weights, else none).")
@click.option("--output", type=click.IntRange(0, 100),
              help="When forward returns a tuple (logits, attention, ...): the logits' position.")
@click.option("--data", "data_items", required=True, multiple=True,
              help="The data it classifies: a registered dataset (GunPoint, rotten-tomatoes, ...) "
                   "or a .csv/.npz file or a folder its kind reads (with --hf: a .csv/.tsv/.jsonl "
                   "of texts), its class order being the model's output order; repeated as "
                   "KEY=VALUE, the dataset's options as for xai train (e.g. --data size=32).")
@click.option("--text-column", help="With --hf and a file of texts: the column holding the texts "
              "(the labels are in the column named label).")
@click.option("--test", type=click.Path(path_type=Path), help="Test file for a .csv/.npz dataset.")
@click.option("--kind", help="The kind of input your network takes: a registered kind (the "
              "MODALITIES of `xai list`); default: the kind whose data --data names (a registered "
              "dataset), else time series. A file of another kind needs it, as it reads the file.")
@click.option("--layout", help="The model's input layout. Time series: NTF [batch, time, "
              "feature] (the default), NCT [batch, channel, time] or NT [batch, time] (one "
              "feature); another kind declares its own (see its error): e.g. NCHW (the default) "
              "or NHWC (channels last).")
@click.option("--gradcam-layer", help="Name of the convolution layer Grad-CAM reads, as in "
              "net.named_modules() (e.g. conv3). Default: the network's own gradcam_layer; a kind "
              "may find one (the last Conv2d run whose map is larger than 1x1).")
@click.option("--name", help="The model's name in the CLI, the report, comparison.csv and "
              "explanations (default: the class or function's name): letters, digits, _ . + -.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--force", is_flag=True, help="Replace a run directory xai wrote before (an imported "
              "run keeps the results whose model outputs are unchanged).")
def import_cmd(target, weights, hf_folder, params, output, data_items, text_column, test, kind,
               layout, gradcam_layer, name, out, force):
    """Make a model you trained yourself a run that explain, evaluate and report accept."""
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.importing import import_folder, import_model

    dataset, data = split_data(data_items)

    if hf_folder is not None:
        if (target or weights or params or output is not None or gradcam_layer or layout
                or kind or name is not None):
            raise XaiError("--hf reads the model, its weights and tokenizer from the folder; give "
                           "only --data (and --text-column, --test), --out and --force beside it")
        spec = (kind_spec(HF_MODEL, dataset, test, {} if text_column is None else
                          {"text_column": text_column}, 0, 0.25, data)
                or {**dataset_spec(dataset, test=test), **data})
        metrics = import_folder(HF_MODEL, hf_folder, spec, out, force=force)
        click.echo(f"imported {hf_folder}: test accuracy {metrics['test_accuracy']:.4f} on "
                   f"{metrics['dataset']} -> {out}")
        return
    if not (target and weights):
        raise XaiError("give --module and --weights (your network and its weights), or --hf FOLDER")
    try:
        kwargs = None if params is None else json.loads(params)
    except json.JSONDecodeError as exc:
        raise XaiError(f"--params is not valid JSON: {exc}") from None
    from xaicore.plugins import registry

    spec = (kind and file_spec(registry.get_modality(kind), dataset, test, {}, 0, 0.25, data,
                               f"kind {kind!r}")) or {**dataset_spec(dataset, test=test), **data}
    metrics = import_model(target, weights, kwargs, spec, out, kind=kind, layout=layout,
                           gradcam_layer=gradcam_layer, output=output, force=force, name=name)
    click.echo(f"imported {target} as {metrics['model']}: test accuracy "
               f"{metrics['test_accuracy']:.4f} on {metrics['dataset']} -> {out}")
    if "kept" in metrics:
        click.echo(f"of the earlier import's results, kept {len(metrics['kept'])}"
                   f"{listed(metrics['kept'])} and removed {len(metrics['removed'])}"
                   f"{listed(metrics['removed'])}: {metrics['why']}")


def listed(paths: list[str], most: int = 6) -> str:
    """`` (a, b, ...)``: the first ``most`` of ``paths``, or nothing when there are none."""
    if not paths:
        return ""
    return f" ({', '.join(paths[:most])}{', ...' if len(paths) > most else ''})"


COMMANDS.extend([train_cmd, predict_cmd, import_cmd])
