"""Run directories: which folders are xai's to replace, and replacing only what xai wrote.

A run directory carries ``xai-run.json``, the list of the files training wrote. ``--force``
replaces a run (or fills an empty folder) and refuses any other folder; it removes only files xai
wrote, so a user's own files in a run directory survive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from xaicore.errors import XaiError
from xaicore.files import atomic_path, clean_stale, locked, temp_sibling

MARKER = "xai-run.json"
CHECKPOINT = "checkpoint.pt"
# Results later commands write from a run's model; stale once the model is replaced.
RESULTS = ("explanations", "evaluation", "evaluation.csv", "report.html", "predictions")
RESULT_SUFFIXES = {".npz", ".png", ".svg", ".eps", ".pdf", ".json", ".csv", ".html", ".parquet"}


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is an xai run directory (its marker, or a checkpoint of an older xai)."""
    return (folder / MARKER).is_file() or (folder / CHECKPOINT).is_file()


def check_replaceable(out: Path, force: bool) -> None:
    """Refuse to train into ``out`` unless it is new, empty, or a run that ``force`` replaces."""
    if out.exists() and not out.is_dir():
        raise XaiError(f"{out} exists and is not a directory")
    if out.is_dir():
        clean_stale(out)  # a killed run's temporaries do not make the folder a user's
    if not out.is_dir() or not any(p.name != ".xai.lock" for p in out.iterdir()):
        return
    if not is_run(out):
        raise XaiError(f"{out} is not empty and is not an xai run directory; xai replaces only "
                       f"its own runs, even with --force: choose a new or empty --out")
    if not force:
        raise XaiError(f"run directory {out} already exists; pass --force to replace it (files "
                       f"xai did not write stay)")


@contextlib.contextmanager
def run_lock(out: Path, what: str) -> Iterator[None]:
    """Hold the run's lock and clear temporaries that dead xai processes left in it."""
    with locked(out, what):
        clean_stale(out)
        clean_stale(out.parent)
        yield


@contextlib.contextmanager
def staged(out: Path, what: str, keep_results: bool = False) -> Iterator[Path]:
    """A temporary folder to write a run's training files into, under the run's lock: on
    success they replace the run's (``install_training``); on failure the folder is removed, and
    ``out`` too when this created it and it is empty."""
    created = not out.exists()
    with run_lock(out, what):
        tmp = temp_sibling(out / "training", "partial")
        tmp.mkdir()
        try:
            yield tmp
            install_training(tmp, out, keep_results=keep_results)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if created:
                remove_if_empty(out)
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def written_files(out: Path) -> list[str]:
    """The files training wrote into run ``out`` (relative paths), from its marker."""
    try:
        files = json.loads((out / MARKER).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and _relative(f)]


def install_training(new: Path, out: Path, keep_results: bool) -> None:
    """Move the training files of folder ``new`` into ``out``, each replacing its old version in
    one rename; remove training files of the old run that the new one lacks and, unless
    ``keep_results`` (resume), the results computed from the old model."""
    files = sorted(p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file())
    old = set(written_files(out))
    if not keep_results:
        remove_results(out)
    for rel in files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new / rel, target)
    for rel in sorted(old - set(files)):
        (out / rel).unlink(missing_ok=True)
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps({"format": 1, "files": files}, indent=1) + "\n")


def remove_results(out: Path) -> None:
    """Remove the result files xai writes (by their names and kinds) under ``out``; other files
    stay, and so do folders that still hold them."""
    for name in RESULTS:
        path = out / name
        if path.is_file() and path.suffix in RESULT_SUFFIXES:
            path.unlink()
        elif path.is_dir() and not path.is_symlink():
            for entry in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
                if entry.is_dir() and entry.suffix == ".zarr" and not entry.is_symlink():
                    shutil.rmtree(entry)
                elif entry.is_file() and entry.suffix in RESULT_SUFFIXES:
                    entry.unlink()
                elif entry.is_dir() and not any(entry.iterdir()):
                    entry.rmdir()
            remove_if_empty(path)


def remove_if_empty(folder: Path) -> None:
    lock = folder / ".xai.lock"
    with contextlib.suppress(OSError):
        if folder.is_dir() and all(p == lock for p in folder.iterdir()):
            lock.unlink(missing_ok=True)
            folder.rmdir()


def _relative(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts
