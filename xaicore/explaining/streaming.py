"""Explaining datasets larger than memory: inputs read in chunks, batches explained by an engine,
each batch written at once to one chunked store per method (``store.py``).

The engines (``local`` here, ``ray`` in the xai-ray plugin) differ only in where ``explain_batch``
runs; the driver (``stream_explanations``) writes what they yield, in order, and shows progress.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaicore.data.dataset import check_finite
from xaicore.data.inputs import InputSource
from xaicore.errors import XaiError
from xaicore.explaining.api import explain, get_explainer
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.methods import result_name, with_requirements
from xaicore.explaining.store import CHECKPOINT_SECONDS, StoreWriter, is_store, table_paths
from xaicore.files import clean_stale, free_space, is_write_failure, locked, os_reason
from xaicore.models.checkpoints import load_run, load_run_data
from xaicore.models.devices import revisit_threads
from xaicore.models.kinds import modality_of
from xaicore.plugins.boundary import call, iterate
from xaicore.runs.directory import CHECKPOINT, checkpoint_digest

# --- the job and one batch ----------------------------------------------------------------------

@dataclass
class ExplainJob:
    """What to explain: a run's model on the rows of a source, with methods and their options."""

    run: str
    source: InputSource
    methods: list[str]
    options: dict[str, dict] = field(default_factory=dict)
    target: Any = "predicted"
    batch_size: int = 256
    start: int = 0
    device: str | None = None

    def batches(self) -> Iterator[tuple[int, int]]:
        for start in range(self.start, self.source.n_rows, self.batch_size):
            yield start, min(start + self.batch_size, self.source.n_rows)

    def needs_background(self) -> bool:
        return any("background" in getattr(get_explainer(m), "requires", ())
                   for m in self.methods)

    def identities(self) -> dict[str, dict]:
        """What makes each method's store this job's: its input, the model, the method's options
        and the target; ``--resume`` continues a store only when all of them are the same."""
        common = {"input": fingerprint(self.source),
                  "model_digest": checkpoint_digest(Path(self.run) / CHECKPOINT),
                  "target": str(self.target)}
        return {m: {**common, "options": json.loads(json.dumps(self.options.get(m, {}),
                                                               default=repr))}
                for m in self.methods}


SMALL_FILE = 1 << 16  # a folder input's files up to this size (metadata) are hashed whole


def fingerprint(source: InputSource) -> dict:
    """The input's path, size and change time and a hash of its first and last MiB; for a folder
    (a Zarr store), every file's name, size and change time and the small files' bytes: a
    replaced or edited input differs."""
    path = Path(source.path)
    if source.kind == "memory" or not path.exists():
        return {"source": source.path, "rows": source.n_rows}
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    size = 0
    for file in files:
        stat = file.stat()
        size += stat.st_size
        digest.update(f"{file.relative_to(path) if path.is_dir() else ''}:{stat.st_size}:"
                      f"{stat.st_mtime_ns};".encode())
        if path.is_dir() and stat.st_size > SMALL_FILE:
            continue
        with open(file, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if stat.st_size > 2 << 20:
                handle.seek(-(1 << 20), 2)
                digest.update(handle.read())
    return {"source": str(path.resolve()), "rows": source.n_rows, "bytes": size,
            "sha256": digest.hexdigest()}


def load_job_model(job: ExplainJob):
    """The run's model and the options of each method, background data included where declared."""
    try:
        model, dataset = load_run_data(Path(job.run), job.device)
    except XaiError:
        if not job.needs_background():
            model, dataset = load_run(job.run, job.device), None
        else:
            raise
    available = {} if dataset is None else {"background": dataset.train.X}
    return model, {m: with_requirements(get_explainer(m), job.options.get(m, {}), available)
                   for m in job.methods}


def explain_batch(model, options: dict[str, dict], job: ExplainJob, start: int,
                  stop: int) -> dict[str, Explanation]:
    """Read rows ``start:stop`` and explain them with every method of the job (the one function
    every engine runs)."""
    X, labels = job.source.read(start, stop)
    shorter = modality_of(model).masks_padding  # padded rows up to the longest the model reads
    if X.shape[2] != model.n_features or (model.seq_len is not None and (
            X.shape[1] > model.seq_len if shorter else X.shape[1] != model.seq_len)):
        raise XaiError(f"{job.source.path}: samples are {X.shape[1:]} (time, feature) but model "
                       f"{model.name!r} takes ({model.seq_len}, {model.n_features})")
    check_finite(X, f"{job.source.path}: rows {start}..{stop - 1}", start,
                 f"; the {start} samples before them are written" if start else
                 "; nothing was written")
    ids = np.arange(start, stop, dtype=np.int64)
    return {m: explain(model, X, method=m, target=job.target, labels=labels, sample_ids=ids,
                       **options[m]) for m in job.methods}


class LocalEngine:
    """In this process: read a batch, explain it, hand it to the writer, repeat (the default)."""

    name = "local"
    description = "In-process streaming: constant memory, one batch at a time"
    options: tuple = ()  # one process, one batch at a time: nothing to choose

    def run(self, job: ExplainJob) -> Iterator[tuple[int, dict[str, Explanation]]]:
        model, method_options = load_job_model(job)
        for start, stop in job.batches():
            yield start, explain_batch(model, method_options, job, start, stop)


# --- the driver ---------------------------------------------------------------------------------

class Progress:
    """``rows/s`` and ETA on stderr, at most a few times a second, and a change of CPU threads."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self.began: float | None = None
        self.first, self.shown = done, 0.0
        self.threads: tuple[int, int] | None = None  # (before, after), not yet shown

    def update(self, rows: int, threads: tuple[int, int] | None = None) -> None:
        """Count ``rows`` more; the rate is measured from the first batch on (model loading and
        the first batch's warm-up are not in it). ``threads`` (before, after): the CPU threads
        changed, said on the next line shown, which stays on screen."""
        self.done += rows
        self.threads = threads or self.threads
        now = time.perf_counter()
        if self.began is None:
            self.began, self.first = now, self.done
            return
        if not self.enabled or (now - self.shown < 0.5 and self.done < self.total
                                and self.threads is None):
            return
        self.shown = now
        rate = (self.done - self.first) / max(now - self.began, 1e-9) if self.done > self.first \
            else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        note = "" if self.threads is None else f" threads {self.threads[0]} -> {self.threads[1]}"
        sys.stderr.write(f"\rexplained {self.done}/{self.total} rows  {rate:,.0f} rows/s  "
                         f"ETA {eta:,.0f} s {note}")
        if self.done >= self.total or self.threads is not None:
            sys.stderr.write("\n")
        self.threads = None
        sys.stderr.flush()


class WriteBehind:
    """Writes one batch in a thread while the engine explains the next (store compression and
    I/O overlap the model's compute); at most one batch waits, so memory stays bounded."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="xai-store")
        self.pending: Future | None = None

    def submit(self, fn, *args) -> None:
        self.wait()
        self.pending = self.pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self, quiet: bool = False) -> None:
        """Finish the batch in flight; with ``quiet``, an error writing it is not raised (another
        error is on its way)."""
        try:
            self.wait()
        except Exception:
            if not quiet:
                raise
        finally:
            self.pool.shutdown()


def stream_explanations(job: ExplainJob, engine: Any, out_dir: Path, *, force: bool,
                        resume: bool, progress: bool = True,
                        checkpoint_seconds: float | None = None,
                        **engine_options: Any) -> list[Path]:
    """Explain every row of ``job`` with ``engine`` into one store per method in ``out_dir``,
    checkpointed every ``checkpoint_seconds`` (default ``store.CHECKPOINT_SECONDS``)."""
    every = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds

    n = job.source.n_rows
    paths = {m: out_dir / f"{result_name(m, job.target)}.zarr" for m in job.methods}
    for path in paths.values():  # refuse before any work
        if path.exists() and not (force or (resume and is_store(path))):
            raise XaiError(f"{path} exists; use --force to overwrite it or --resume to continue "
                           f"it")
        for table in table_paths(path):
            if table.exists() and not path.exists() and not force:
                raise XaiError(f"{table} exists; use --force to overwrite it")
    with locked(out_dir, "xai explain"):
        clean_stale(out_dir)
        writers: dict[str, StoreWriter] = {}
        identities = job.identities()
        if resume:
            writers = {m: StoreWriter.resume(p, n, {"method": m, "job": identities[m]}, every)
                       for m, p in paths.items() if p.exists()}
        job.start = min([w.rows_written for w in writers.values()], default=0) \
            if len(writers) == len(paths) else 0
        bar = Progress(n, job.start, progress)

        def write(start: int, results: dict[str, Explanation]) -> None:
            for method, explanation in results.items():
                if method not in writers:
                    writers[method] = StoreWriter.create(
                        paths[method], n, job.batch_size,
                        {**store_metadata(explanation), "job": identities[method]}, force, every)
                writers[method].append_from(start, explanation)

        behind = WriteBehind()
        try:
            name = getattr(engine, "name", type(engine).__name__)
            where = f"engine {name}.run"
            for start, results in iterate("engines", name, where, call(
                    "engines", name, where, engine.run, job, **engine_options)):
                behind.submit(write, start, results)
                # an in-process run re-chooses its automatic threads as the machine's load changes
                bar.update(next(iter(results.values())).n_samples,
                           revisit_threads() if isinstance(engine, LocalEngine) else None)
        except KeyboardInterrupt:
            keep(behind, writers)
            raise XaiError(f"interrupted; the stores in {out_dir} keep the rows written so far: "
                           f"continue with the same command and --resume") from None
        except BaseException as exc:
            keep(behind, writers)  # the batches explained before the error are kept
            if is_write_failure(exc):
                raise XaiError(f"cannot write the stores in {out_dir}: {os_reason(exc)}"
                               f"{free_space(out_dir)}; they keep the rows written so far: make "
                               f"room and continue with --resume") from None
            raise
        behind.close()
        for writer in writers.values():
            writer.finish()
    return list(paths.values())


def keep(behind: WriteBehind, writers: dict) -> None:
    """On the way out with an error: write the rows each method explained so far, as far as
    possible (the error on its way is the one reported)."""
    behind.close(quiet=True)
    for writer in writers.values():
        try:
            writer.flush()
        except Exception:
            pass  # this method's rows since its last checkpoint are explained again on --resume


def store_metadata(explanation: Explanation) -> dict:
    return {"method": explanation.method, "options": explanation.options,
            "class_names": explanation.class_names, "feature_names": explanation.feature_names,
            "model_name": explanation.model_name, "dataset": explanation.dataset,
            "model_digest": explanation.model_digest, "modality": explanation.modality}
