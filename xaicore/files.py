"""Writing files without losing any: atomic replacement, stale temporaries, locks, safe names.

Every file xai writes goes to a sibling temporary with a unique name
(``.NAME.xai-tmp-PID-RANDOM``) and is renamed over the final name only when complete, so a reader
never sees half a file and two writers never share a temporary; only a regular file (or nothing)
is ever replaced. A process killed mid-write leaves its temporary behind; the next xai command in
that run removes the temporaries of processes that no longer run (names of exactly that form, and
only inside run folders).

A folder is a run when it holds ``MARKER``, written by xai when it created the run. Every file
written inside a run through this module is recorded in the run's ledger (``.xai/written``), so
that replacing a run removes only files xai wrote, never a user's file of the same name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xaicore.errors import XaiError

_TEMP = re.compile(r"^\..+\.xai-(?:tmp|partial)-(\d{1,10})-[0-9a-f]{8}$")
LOCK = ".xai.lock"
MARKER = "xai-run.json"
STATE = ".xai"  # xai's own folder inside a run: the ledger of the files it wrote
LEDGER = "written"
MAX_NAME = 80
MAX_PID = 2**31 - 1
#: what the disk, not the code, makes a write fail with
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                errno.EFBIG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}
_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A unique hidden name beside ``path`` that marks this process as its writer."""
    return path.with_name(f".{path.name}.xai-{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of xai's temporaries (``temp_sibling``'s form, nothing looser)."""
    return _TEMP.match(name) is not None


def refuse_special(path: Path) -> None:
    """Refuse to replace a device, FIFO or socket (whatever ``--force`` says)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    kind = _KINDS.get(stat.S_IFMT(mode))
    if kind:
        raise XaiError(f"{path} is {kind}, not a regular file; xai replaces only regular files, "
                       f"even with --force: choose another path")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename.

    ``path`` must be a regular file, a link or new (a directory only when the temporary is one).
    A write that fails for lack of space or permission is one ``XaiError`` naming the path; the
    old file stays."""
    path = Path(path)
    refuse_special(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp = temp_sibling(path)
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS:
                raise  # not the disk's doing (a read of the writer's, say): as it is
            raise write_error(path, exc) from None
        if path.is_dir() and not path.is_symlink() and not tmp.is_dir():
            raise XaiError(f"{path} is a directory; xai replaces only regular files, even with "
                           f"--force: choose a file name")
        refuse_special(path)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(path, exc) from None
        record_written(path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_error(path: Path, exc: BaseException,
                stays: str = "nothing was replaced") -> XaiError:
    """One line for an error writing ``path``: the reason, the free space there, what stays."""
    reason = os_reason(exc)
    if not isinstance(exc, OSError):  # torch's writer names no errno: say what the disk shows
        with contextlib.suppress(OSError):
            full = next(shutil.disk_usage(f).free < 2**20 for f in (path, *path.parents)
                        if f.exists())
            reason = "No space left on device" if full else f"the write failed ({reason})"
    return XaiError(f"cannot write {path}: {reason}{free_space(path)}; {stays}")


def os_reason(exc: BaseException) -> str:
    """The operating system's words for ``exc`` (its first line for other errors)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def free_space(path: Path) -> str:
    """`` (N MiB free there)`` for the file system of ``path`` (its nearest existing folder)."""
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            return f" ({shutil.disk_usage(folder).free / 2**20:.1f} MiB free there)"
    return ""


def is_write_failure(exc: BaseException) -> bool:
    """An operating-system error, or torch's report of a failed write (a full disk)."""
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and any(
        text in str(exc) for text in ("PytorchStreamWriter failed", "unexpected pos")))


def run_root(path: Path) -> Path | None:
    """The run folder ``path`` lies in: the nearest of its parents with a marker."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / MARKER).is_file():
            return folder
    return None


def record_written(path: Path) -> None:
    """Add ``path`` to the ledger of the run it lies in (nothing outside runs)."""
    root = run_root(path)
    if root is None:
        return
    rel = Path(os.path.abspath(path)).relative_to(root)
    if rel.parts[0] in (MARKER, STATE, LOCK) or any(is_temporary(p) for p in rel.parts):
        return
    with contextlib.suppress(OSError):
        (root / STATE).mkdir(exist_ok=True)
        fd = os.open(root / STATE / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(rel.as_posix()) + "\n")  # one short append: atomic


def written(root: Path) -> list[str]:
    """The relative paths the ledger of run ``root`` holds, each once, in the order written."""
    try:
        lines = (root / STATE / LEDGER).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    paths = []
    for line in lines:
        with contextlib.suppress(ValueError):
            rel = json.loads(line)
            if isinstance(rel, str) and is_relative(rel):
                paths.append(rel)
    return list(dict.fromkeys(paths))


def forget_written(root: Path, removed: set[str]) -> None:
    """Drop ``removed`` from the ledger of run ``root``."""
    keep = [rel for rel in written(root) if rel not in removed]
    ledger = root / STATE / LEDGER
    if not ledger.exists():
        return
    tmp = temp_sibling(ledger)
    tmp.write_text("".join(json.dumps(rel) + "\n" for rel in keep), encoding="utf-8")
    os.replace(tmp, ledger)


def is_relative(rel: str) -> bool:
    """A relative path that stays below its folder (no ``..``, not absolute)."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def inside_run(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it is inside ``root`` once every link on the way is resolved."""
    if not is_relative(rel):
        return None
    path = root / rel
    real_root = root.resolve()
    real = path.parent.resolve() / path.name
    return path if real_root == real.parent or real_root in real.parents else None


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
    if not 0 < pid <= MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove temporaries left in ``folder`` by xai processes that no longer run; only in a run
    folder or below one (a user's folder is never cleaned)."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir() or run_root(folder / MARKER) is None:
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


_HELD: dict[str, int] = {}  # folders this process holds the lock of, and how many times


@contextlib.contextmanager
def locked(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock while ``what`` runs; another process is refused, naming the holder.

    The lock is an advisory ``flock`` on ``folder/.xai.lock``, which the kernel releases when its
    holder ends in any way (SIGKILL included), so a dead holder's lock is simply free; the file
    holds the holder's pid and command for the message. A process may take a lock it holds again.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder / LOCK, exc) from None
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = _take(folder / LOCK, what)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK)  # under the lock: a waiter sees a new file or this one gone
        os.close(fd)


def _take(lock: Path, what: str) -> int:
    """The descriptor of ``lock``, opened and flocked by this process (refused when held)."""
    import fcntl
    import time

    refuse_special(lock)
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except IsADirectoryError:
            raise XaiError(f"{lock} is a directory, not xai's lock file; remove it") from None
        except OSError as exc:
            raise write_error(lock, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise XaiError(f"{lock.parent} is in use by another xai process ({holder}); wait for "
                           f"it to finish") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False  # the holder removed it as we opened it: take the new one
        if same:
            with contextlib.suppress(OSError):  # who holds it, for messages (a full disk: none)
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what,
                                          "since": time.strftime("%H:%M:%S")}).encode(), 0)
            return fd
        os.close(fd)
    raise XaiError(f"could not take the lock {lock}")


def _holder(fd: int) -> str:
    """``pid N, COMMAND, since HH:MM:SS`` from a held lock file, as far as it says."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    parts = [f"pid {data['pid']}" if isinstance(data.get("pid"), int) else "pid unknown"]
    if data.get("what"):
        parts.append(str(data["what"])[:80])
    if data.get("since"):
        parts.append(f"since {str(data['since'])[:20]}")
    return ", ".join(parts)


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


def source_digest(path: str | Path) -> str:
    """The sha256 of a file, or of a folder's files (their paths below it and their bytes)."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\0".encode())
    return digest.hexdigest()
