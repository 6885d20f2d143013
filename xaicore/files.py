"""Safe writes: atomic replace, stale-temporary cleanup, safe file names, run lock and run marker.

Every file xai writes goes to a sibling temporary named ``.xai-tmp-<pid>-<random>-<name>`` and is
renamed into place, so a final name never holds half a file; temporaries of dead processes are
removed by the next command that writes into the same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import unicodedata
from pathlib import Path
from typing import IO, Iterator

from .errors import XaiError

TMP_PREFIX = ".xai-tmp-"
LOCK = ".xai-lock"
MARKER = "xai-run.json"
MAX_NAME = 120
_TMP = re.compile(r"^\.xai-tmp-(\d+)-")
_LEGACY_PARTIAL = re.compile(r"^\..+\.(?:partial|old)-(\d+)$")
_UNSAFE = re.compile(r"[^\w.@:+=,-]+")


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(name: str) -> str:
    """A sibling temporary name unique to this process and call."""
    return f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}"[:200]


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove temporaries (and old ``.NAME.partial-PID`` folders) left by dead processes."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TMP.match(entry.name) or _LEGACY_PARTIAL.match(entry.name)
        if match and not pid_alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_args) -> Iterator[IO]:
    """Open a sibling temporary for writing; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    if path.is_dir():
        raise XaiError(f"{path} is a directory; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = path.with_name(temp_name(path.name))
    try:
        with open(tmp, mode, **open_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def safe_name(text: object, max_len: int = MAX_NAME) -> str:
    """A file-name component for user or data text: no separators, no ``..``, no NUL, bounded length.

    Unsafe characters become ``_``; a name that had to change (or was cut) gets a short hash of the
    original so two different texts never share a file.
    """
    original = str(text)
    name = unicodedata.normalize("NFKC", original)
    name = _UNSAFE.sub("_", name).strip("._") or "_"
    if name != original or len(name) > max_len:
        import hashlib

        digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name[:max_len - 9]}-{digest}"
    return name


def inside(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused when it would leave ``folder``."""
    folder = Path(folder)
    path = folder / name
    if Path(os.path.normpath(path)).parent != Path(os.path.normpath(folder)):
        raise XaiError(f"file name {name!r} would leave {folder}")
    return path


@contextlib.contextmanager
def run_lock(folder: str | Path, what: str = "writing") -> Iterator[None]:
    """Hold ``folder/.xai-lock`` (with this pid) while writing; another live holder is refused."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                holder = -1
            if holder == os.getpid() or pid_alive(holder):
                raise XaiError(f"{folder} is in use by another xai process (pid {holder}); wait for "
                               f"it to finish, or remove {lock} if no xai is running") from None
            lock.unlink(missing_ok=True)  # a dead holder's lock is taken over
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {what}\n")
        break
    else:
        raise XaiError(f"could not take the lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def is_run(folder: str | Path) -> bool:
    """Whether ``folder`` is a run directory xai wrote (it has the marker or a checkpoint)."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or (folder / "checkpoint.pt").is_file()


def read_marker(folder: str | Path) -> list[str]:
    """The files the run's marker says xai wrote (empty when there is none or it is unreadable)."""
    try:
        files = json.loads((Path(folder) / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f for f in files if isinstance(f, str)]


def write_marker(folder: str | Path, files: list[str]) -> None:
    """Record the files xai wrote into run ``folder``."""
    write_text(Path(folder) / MARKER,
               json.dumps({"xai_run": 1, "files": sorted(set(files))}, indent=2) + "\n")

