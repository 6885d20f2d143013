"""Writing files without losing any: atomic replacement, stale temporaries, locks, safe names.

Every file xai writes goes to a sibling temporary with a unique name (``.NAME.tmp-PID-RANDOM``) and
is renamed over the final name only when complete, so a reader never sees half a file and two
writers never share a temporary. A process killed mid-write leaves its temporary behind; the next
xai command in that folder removes the temporaries of processes that no longer run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import unicodedata
from pathlib import Path
from typing import IO, Iterator

from xaicore.errors import XaiError

_TEMP = re.compile(r"^\..+\.(?:tmp|partial|old)-(\d+)(?:-[0-9a-f]+)?$")
LOCK = ".xai.lock"
MAX_NAME = 80


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A unique hidden name beside ``path`` that marks this process as its writer."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open`` for writing whose result appears under ``path`` only once it is complete."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove temporaries left in ``folder`` by xai processes that no longer run."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP.match(entry.name)
        if match and int(match[1]) != os.getpid() and not pid_alive(int(match[1])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def locked(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock while ``what`` runs; a second holder is refused, naming the first.

    The lock is a file holding the holder's pid; the lock of a process that no longer runs is taken
    over.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and pid_alive(holder) and holder != os.getpid():
                raise XaiError(f"{folder} is in use by another xai process (pid {holder}); wait "
                               f"for it to finish, or remove {lock} if that process is gone") from None
            lock.unlink(missing_ok=True)  # the holder died: take the lock over
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "what": what}))
        break
    else:
        raise XaiError(f"could not take the lock {lock}")
    try:
        yield
    finally:
        if _lock_holder(lock) == os.getpid():
            lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def safe_name(text: str, fallback: str = "item") -> str:
    """A file name made from user or data text that stays inside its folder.

    Path separators, NUL and control characters, leading dots and ``..`` cannot survive; letters
    of any script, digits and ``_ . + - @ =`` are kept; names that had to change, or that are
    longer than ``MAX_NAME``, get a short hash of the original so that distinct texts never collide.
    """
    text = str(text)
    normal = unicodedata.normalize("NFC", text)
    safe = "".join(c if (c.isalnum() or c in "_.+-@=") else "_" for c in normal)
    safe = re.sub(r"_+", "_", safe).strip("._") or fallback
    if safe != text or len(safe) > MAX_NAME:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[:MAX_NAME - 9]}-{digest}"
    return safe


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing any name that would leave ``folder``."""
    path = folder / name
    if Path(os.path.normpath(path)).parent != Path(os.path.normpath(folder)) or name in ("", ".", ".."):
        raise XaiError(f"{name!r} is not a plain file name")
    return path


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
