"""Run directories: which folders are xai's to replace, and replacing only what xai wrote.

A run directory is xai's when it carries the marker ``xai-run.json``, written atomically when xai
creates the run: xai's version, the run's identity and the files training wrote. The results later
commands write into it are recorded in its ledger (``xaicore.files``). ``--force`` replaces a run
(or fills an empty folder) and refuses any other folder, naming a file xai did not write; it
removes only the files the marker and the ledger vouch for, and only inside the run, so a user's
own files in or beside a run directory survive.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from xaicore.errors import XaiError
from xaicore.files import (
    LOCK,
    MARKER,
    STATE,
    atomic_path,
    clean_stale,
    file_digest,
    forget_written,
    inside_run,
    is_relative,
    is_temporary,
    is_write_failure,
    locked,
    run_root,
    temp_sibling,
    write_error,
    written,
)

CHECKPOINT = "checkpoint.pt"
MARKER_FORMAT = 2
# Where later commands write results from a run's model; stale once the model is replaced.
RESULTS = ("explanations", "evaluation", "evaluation.csv", "report.html", "predictions")


def marker(folder: Path) -> dict | None:
    """The marker of run ``folder``, or None when it has none (or not one xai wrote)."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and data.get("format") in (1, MARKER_FORMAT)
            and isinstance(data.get("files", []), list)):
        return None
    return data


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is an xai run directory: it carries xai's marker."""
    return marker(folder) is not None


def foreign_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides xai's lock, temporaries and (in a run) its state folder."""
    own = (LOCK, STATE) if is_run(folder) else (LOCK,)
    return sorted(p for p in folder.iterdir() if p.name not in own and not is_temporary(p.name))


def check_replaceable(out: Path, force: bool) -> None:
    """Refuse to write a run into ``out`` unless it is new, empty, or a run ``force`` replaces."""
    if out.exists() and not out.is_dir():
        raise XaiError(f"{out} exists and is not a directory")
    if not out.is_dir():
        return
    clean_stale(out)  # a killed run's temporaries do not make the folder a user's
    entries = [p for p in foreign_entries(out) if p.name != MARKER]
    if not entries:
        return
    if not is_run(out):
        raise XaiError(f"{out} holds files xai did not write (such as {entries[0].name}) and no "
                       f"{MARKER}: it is not an xai run directory; xai replaces only runs it "
                       f"created, even with --force: choose a new or empty --out")
    if not force:
        raise XaiError(f"run directory {out} already exists; pass --force to replace it (files "
                       f"xai did not write stay)")


@contextlib.contextmanager
def run_lock(out: Path, what: str) -> Iterator[None]:
    """Hold the run's lock (creating the folder if need be, and removing it again on failure
    when it stayed empty); clear temporaries that dead xai processes left in it."""
    if out.exists() and not out.is_dir():
        raise XaiError(f"{out} exists and is not a directory")
    made = [p for p in (out, *out.parents) if not p.exists()]  # the folders this will create
    try:
        with locked(out, what):
            clean_stale(out)
            clean_stale(out / STATE)
            yield
    except BaseException:
        if made:
            remove_if_empty(out)
            for folder in made[1:]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty
        raise


@contextlib.contextmanager
def hold_runs(runs: Iterable[Path], what: str, outs: Iterable[Path | None] = ()) -> Iterator[None]:
    """Hold the lock of every run in ``runs`` (each an existing folder), and of every run an
    output path in ``outs`` lies in, while ``what`` reads and writes them: no other xai command
    replaces or writes into them meanwhile."""
    held = [Path(r) for r in runs]
    for run in held:
        if not run.is_dir():
            raise XaiError(f"no run directory at {run}")
    held += [root for out in outs if out is not None
             for root in [run_root(Path(out) / "_")] if root is not None]
    with contextlib.ExitStack() as stack:
        for run in sorted({os.path.realpath(r): r for r in held}.values(),
                          key=lambda p: os.path.realpath(p)):
            stack.enter_context(locked(run, what))
        yield


def stale_reason(digest: str, run: Path) -> str | None:
    """Why a result recorded with model ``digest`` is not a result of run ``run``'s model now,
    or None when it is."""
    if not digest:
        return ("it records no model digest (an older xai, or a model wrapped in Python, wrote "
                "it), so it may be another model's")
    current = checkpoint_digest(run / CHECKPOINT)
    same = (marker(run) or {}).get("same_outputs")
    if digest != current and digest not in (same.get(current, []) if isinstance(same, dict) else []):
        return "another model computed it: the run's checkpoint has changed since"
    return None


def record_same_outputs(out: Path, digests: list[str]) -> None:
    """Note in run ``out``'s marker that results its earlier checkpoints ``digests`` computed
    (those kept when ``xai import --force`` found the same outputs) are results of the checkpoint
    now in it."""
    data = marker(out) or {}
    current = checkpoint_digest(out / CHECKPOINT)
    same = data.get("same_outputs")
    known: dict = same if isinstance(same, dict) else {}
    earlier = [d for old in digests for d in [old, *known.get(old, [])] if d != current]
    data["same_outputs"] = {current: sorted(set(earlier))} if earlier else {}
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def checkpoint_digest(path: Path) -> str:
    """sha256 of a checkpoint, read once per version of the file (size and change time)."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(path)


def create_marker(out: Path) -> None:
    """Mark ``out`` as a run xai created (an empty folder, or one of an earlier run)."""
    old = marker(out) or {}
    data = {"format": MARKER_FORMAT, "xai": xai_version(), "run": old.get("run") or uuid.uuid4().hex,
            "created": old.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": [f for f in old.get("files", []) if isinstance(f, str) and is_relative(f)]}
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def xai_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xaicore")
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def staged(out: Path, what: str, removed: list[str] | None = None,
           keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """A temporary folder to write a run's training files into, under the run's lock: on
    success they replace the run's and the old model's results go, but those ``keep`` accepts
    (``install_training``; the paths removed are added to ``removed``); on failure the folder is
    removed, and ``out`` too when this created it and it is empty."""
    created = not out.exists() or not foreign_entries(out)
    with run_lock(out, what):
        if not is_run(out):
            create_marker(out)
        state_made = not (out / STATE).exists()
        tmp = temp_sibling(out / "training", "partial")
        tmp.mkdir()
        try:
            yield tmp
            gone = install_training(tmp, out, keep)
            if removed is not None:
                removed += gone
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if created and [p.name for p in foreign_entries(out)] == [MARKER]:
                (out / MARKER).unlink()
                if state_made:
                    shutil.rmtree(out / STATE, ignore_errors=True)
            if is_write_failure(exc):
                raise write_error(out, exc, "the run's previous files are kept") from None
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def written_files(out: Path) -> list[str]:
    """The files training wrote into run ``out`` (relative paths inside it), from its marker."""
    files = (marker(out) or {}).get("files", [])
    return [f for f in files if isinstance(f, str) and inside_run(out, f) is not None]


def install_training(new: Path, out: Path, keep: Callable[[str], bool] | None = None) -> list[str]:
    """Move the training files of folder ``new`` into ``out``, each replacing its old version in
    one rename; remove training files of the old run that the new one lacks and the results
    computed from the old model but those ``keep`` accepts (the removed are returned)."""
    files = sorted(p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file())
    old = set(written_files(out))
    for rel in files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new / rel, target)
    for rel in sorted(old - set(files)):
        path = inside_run(out, rel)
        if path is not None and (path.is_file() or path.is_symlink()):
            path.unlink()
    data = {**(marker(out) or {}), "format": MARKER_FORMAT, "xai": xai_version(), "files": files}
    legacy = legacy_results(out)  # by the format-1 rule, before the marker says format 2
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    return remove_results(out, legacy, keep)


def remove_results(out: Path, legacy: list[str] | None = None,
                   keep: Callable[[str], bool] | None = None) -> list[str]:
    """Remove the results xai recorded writing into run ``out`` (its ledger, else ``legacy`` or
    those of ``legacy_results``) but those ``keep`` accepts, each only while it is inside the
    run; folders that still hold other files stay. Returns what was removed."""
    removed = []
    for rel in written(out) or (legacy_results(out) if legacy is None else legacy):
        if rel.split("/")[0] not in RESULTS or (keep is not None and keep(rel)):
            continue
        path = inside_run(out, rel)
        if path is None:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_file() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(rel)
        for parent in path.parents:
            if parent == out or out not in parent.parents:
                break
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty
    forget_written(out, set(removed))
    return removed


LEGACY_SUFFIXES = {".npz", ".png", ".svg", ".eps", ".pdf", ".json", ".csv", ".html", ".parquet"}


def legacy_results(out: Path) -> list[str]:
    """The results of a run an xai without ledgers wrote (format-1 marker): its names and kinds
    under ``RESULTS``, the rule that xai deleted them by."""
    if (marker(out) or {}).get("format") != 1:
        return []
    found = []
    for name in RESULTS:
        path = out / name
        if path.is_file() and path.suffix in LEGACY_SUFFIXES:
            found.append(name)
        elif path.is_dir() and not path.is_symlink():
            for p in path.rglob("*"):
                rel = p.relative_to(out)
                if any(part.endswith(".zarr") for part in rel.parts[:-1]):
                    continue  # inside a store: the store goes whole
                if (p.is_file() and p.suffix in LEGACY_SUFFIXES) or (p.is_dir() and
                                                                     p.suffix == ".zarr"):
                    found.append(rel.as_posix())
    return sorted(found)


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` when it holds nothing but xai's lock and state."""
    with contextlib.suppress(OSError):
        if folder.is_dir() and not foreign_entries(folder):
            (folder / LOCK).unlink(missing_ok=True)
            shutil.rmtree(folder / STATE, ignore_errors=True)
            folder.rmdir()
