"""Explaining the test samples of trained runs and writing the results (what ``xai explain`` runs)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import click

from xaicore.data.inputs import InputSource, open_input
from xaicore.data.loading import load_dataset
from xaicore.errors import UnknownNameError, XaiError
from xaicore.explaining.agreement import agreement_rows, dataset_difference, model_labels
from xaicore.explaining.api import explain, get_explainer
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.methods import check_methods, method_names, result_name, with_requirements
from xaicore.explaining.streaming import ExplainJob, stream_explanations
from xaicore.files import atomic_open, clean_stale, safe_name
from xaicore.models.checkpoints import load_checkpoint, load_run, load_run_data
from xaicore.models.kinds import modality_of
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.plugins.stages import render_stage


def parse_samples(spec: str, n: int, misclassified: list[int] | None = None) -> list[int]:
    """Sample positions from ``0:16``, ``3,5,8``, ``all`` or ``misclassified``, or a comma list of
    these (``0:16,misclassified``), checked against ``n`` test samples; order kept, no repeats."""
    positions: list[int] = []
    try:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            if part == "all":
                positions += range(n)
            elif part == "misclassified":
                if misclassified is None:
                    raise XaiError("'misclassified' needs the model's predictions")
                positions += misclassified
            elif ":" in part:
                start, _, stop = part.partition(":")
                positions += range(int(start or 0), min(int(stop) if stop else n, n))
            else:
                positions.append(int(part))
    except ValueError:
        raise XaiError(f"--samples takes START:STOP, indices, 'all' or 'misclassified' (comma-"
                       f"separated), not {spec!r}") from None
    positions = list(dict.fromkeys(positions))
    bad = [p for p in positions if not 0 <= p < n]
    if bad or not positions:
        raise XaiError(f"--samples {spec!r} selects no valid sample: the test split has {n} "
                       f"samples (0..{n - 1})" + ("; the model misclassifies none of them"
                                                  if misclassified == [] else ""))
    return positions


def run_folders(runs: list[Path]) -> list[str]:
    """One distinct, safe output folder name per run: its folder name, with a hash of its full
    path where several runs share a name (``a/gp`` and ``b/gp``)."""
    names = [safe_name(Path(os.path.abspath(run)).name, "run") for run in runs]
    return [name if names.count(name) == 1 else
            f"{name}-{hashlib.sha1(str(Path(run).resolve()).encode()).hexdigest()[:8]}"
            for name, run in zip(names, runs)]


def refuse_file(out_dir: Path) -> None:
    """An output folder that is something else (a file, a device) is refused by name."""
    if out_dir.exists() and not out_dir.is_dir():
        raise XaiError(f"{out_dir} exists and is not a folder; give --out a folder (new or one "
                       f"xai writes into)")


def explain_runs(runs: list[Path], methods, samples: str, target, options: dict[str, dict],
                 out: Path | None, figures: bool, device, force: bool,
                 texts: list[str] | None = None) -> list[Explanation]:
    """Explain the same test samples (or the given ``texts``, with a text run) with every method
    for every run; return all explanations."""
    if not texts:  # several runs are compared sample by sample: on the same test split
        for run in runs[1:]:
            same_split(runs[0], run)
    prepared = []
    folders = run_folders(runs)
    for run, folder in zip(runs, folders):
        model, dataset = load_run_data(run, device)
        given = None
        if texts:  # the user's texts in place of the test split, in their own folder
            given = model.check_inputs(list(texts))
            out = out or run / "explanations" / "texts"
        wrong = None
        if "misclassified" in samples:
            predicted = model.logits(dataset.test.X).argmax(1)
            wrong = [int(i) for i in (predicted != dataset.test.y).nonzero()[0]]
        positions = parse_samples(samples, len(dataset.test) if given is None else len(given), wrong)
        names = method_names(methods, model)
        check_methods(names, model, f" of run {run}")  # before anything is computed
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise XaiError(f"--option names method(s) not being run: {', '.join(unknown)}")
        out_dir = (out / folder if len(runs) > 1 else out) if out else run / "explanations"
        refuse_file(out_dir)
        clean_stale(out_dir)
        files = [out_dir / f"{result_name(n, target)}.npz" for n in names]
        existing = [f for f in files if f.exists()]
        if existing and not force:
            raise XaiError(f"{existing[0]} exists (and {len(existing) - 1} more); use --force to "
                           "overwrite")
        prepared.append((run, model, dataset, positions, names, out_dir, given))

    results, labels = [], []
    owners = model_labels([p[1].name for p in prepared], folders)
    for (_, model, dataset, positions, names, out_dir, given), owner in zip(prepared, owners):
        X, y = ((dataset.test.X[positions], dataset.test.y[positions]) if given is None
                else (given[positions], None))
        run_results = []
        for name in names:
            opts = with_requirements(get_explainer(name), options.get(name, {}),
                                     {"background": dataset.train.X})
            start = time.perf_counter()
            explanation = explain(model, X, method=name, target=target, labels=y,
                                  sample_ids=positions, **opts)
            explanation.dataset = dataset.name
            path = explanation.save(out_dir / f"{result_name(name, target)}.npz")
            click.echo(f"{model.name} {name:<22} {len(X)} samples  "
                       f"{time.perf_counter() - start:6.2f} s  -> {path}", err=True)
            run_results.append(explanation)
            labels.append(owner)
        if figures:
            render_figures(run_results + counterparts(run_results, out_dir, target),
                           out_dir / "figures")
        results += run_results
    if len(runs) > 1 and out is not None:  # xai explain refuses several runs without --out
        write_comparison(results, labels, out)
    return results


def counterparts(explanations: list[Explanation], out_dir: Path, target) -> list[Explanation]:
    """Earlier results of the same methods for other targets (``gradcam.npz`` beside
    ``gradcam@true.npz``), so renderers can set predicted- and true-class maps side by side."""
    found = []
    for e in explanations:
        own, stem_of_method = f"{result_name(e.method, target)}.npz", result_name(e.method, "predicted")
        for path in sorted(out_dir.glob(f"{glob_escape(stem_of_method)}*.npz")):
            stem = path.stem
            if path.name != own and (stem == stem_of_method or stem.startswith(f"{stem_of_method}@")):
                try:
                    found.append(Explanation.load(path))
                except XaiError as exc:
                    click.echo(f"warning: {exc}", err=True)
    return found


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def render_figures(explanations: list[Explanation], out_dir: Path) -> None:
    """Files from every installed renderer of stage "explanations"; a failure is a warning."""
    written, warnings = render_stage("explanations", explanations, out_dir)
    for name, paths in written.items():
        click.echo(f"{name}: {len(paths)} files in {out_dir}", err=True)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def same_split(first: Path, run: Path) -> None:
    """Refuse two runs whose test splits differ, naming the difference."""
    a, b = (load_checkpoint(r / "checkpoint.pt").get("dataset", "?") for r in (first, run))
    difference = dataset_difference(a, b)
    if difference:
        raise XaiError(f"runs {first} and {run} were trained on different datasets ({difference}): "
                       f"models are compared on the same test samples")


def write_comparison(explanations: list[Explanation], labels: list[str], out: Path) -> Path:
    """``comparison.csv``: per method and pair of models (``labels`` name the model of each
    explanation), how their attributions of the same samples agree, with bootstrap intervals."""
    import pandas as pd

    path = out / "comparison.csv"
    with atomic_open(path, "w", newline="") as handle:
        pd.DataFrame(agreement_rows(explanations, labels)).to_csv(handle, index=False)
    click.echo(f"side-by-side comparison -> {path}", err=True)
    return path


STREAM_ABOVE = 4096  # --samples all streams to stores above this many test samples
ENGINE_PLUGINS = {"ray": "xai-ray (pip install -e plugins/xai-ray)"}


def explain_streamed(runs: list[Path], methods, samples: str, target, options: dict[str, dict],
                     out: Path | None, device, force: bool, input_path: Path | None, engine: str,
                     batch_size: int, resume: bool, engine_options: dict,
                     checkpoint_seconds: float | None = None,
                     columns: dict | None = None) -> list[Path] | None:
    """Stream ``--input`` (or a large test split with ``--samples all``) through ``engine`` into
    one store per method; None when the request is a small in-memory one. ``columns``
    (``id_column``, ``time_column``, optionally ``label_column``) read a long-format CSV input."""
    if columns and input_path is None:
        raise XaiError("--id-column, --time-column and --label-column read a long-format --input "
                       "file; the test split is the run's own")
    asked = resume or engine != "local" or bool(engine_options) or checkpoint_seconds is not None
    streaming = input_path is not None or (samples.strip() == "all" and (
        asked or _test_size(runs[0]) > STREAM_ABOVE))
    if not streaming:
        if asked:
            raise XaiError("--resume, --engine, --workers, --address and --checkpoint-seconds go "
                           "with --input or --samples all")
        return None
    if len(runs) > 1:
        raise XaiError("streaming explains one --run at a time")
    run = runs[0]
    runner = get_engine(engine)
    if input_path is None:
        model, dataset = load_run_data(run, device)
        source = InputSource.from_array(dataset.test.X, dataset.test.y, f"{run} test split")
        out_dir = out or run / "explanations"
    else:
        model = load_run(run, device)
        modality = modality_of(model)
        opener = getattr(modality, "open_input", None)  # optional: the kind reads its own files
        source = (call("modalities", modality.name, f"{modality.name}.open_input", opener, model,
                       Path(input_path), columns or {}) if callable(opener) else
                  open_input(input_path, model.class_names, model.seq_len, columns, model.n_features))
        out_dir = out or run / "explanations" / safe_name(Path(input_path).stem, "input")
    refuse_file(out_dir)
    shape = tuple(source.row_shape) if len(source.row_shape) == 2 else (*source.row_shape, 1)
    shorter = modality_of(model).masks_padding  # padded rows up to the longest the model reads
    if len(shape) != 2 or shape[1] != model.n_features or (model.seq_len is not None and (
            shape[0] > model.seq_len if shorter else shape[0] != model.seq_len)):
        raise XaiError(f"{source.path} holds samples of shape {source.row_shape} (time, feature) "
                       f"but model {model.name!r} takes ({model.seq_len}, {model.n_features})")
    names = method_names(methods, model)
    check_methods(names, model, f" of run {run}")
    if target == "true" and source.labels is None:
        raise XaiError("--target true needs labels; --input data carries none")
    job = ExplainJob(str(run), source, names, options, target, batch_size, device=device)
    paths = stream_explanations(job, runner, out_dir, force=force, resume=resume,
                                checkpoint_seconds=checkpoint_seconds, **engine_options)
    for path in paths:
        click.echo(f"{model.name} {source.n_rows} samples -> {path}", err=True)
    return paths


def get_engine(name: str):
    """The engine registered as ``name``; an uninstalled known engine names its plugin."""
    try:
        return registry.get("engines", name)
    except UnknownNameError as exc:
        if name in ENGINE_PLUGINS:
            raise XaiError(f"engine {name!r} needs the plugin {ENGINE_PLUGINS[name]}") from None
        raise exc


def _test_size(run: Path) -> int:
    ckpt = load_checkpoint(run / "checkpoint.pt")
    return len(load_dataset(ckpt["dataset"]).test) if "dataset" in ckpt else 0
