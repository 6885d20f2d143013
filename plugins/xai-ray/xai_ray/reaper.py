"""Ends what is left of a local Ray when the xai process that started it dies, SIGKILL included.

Ray ties its core processes to the driver, but its two agents outlive a killed driver by about a
minute (they report the raylet's death to the dead GCS with a 60 s timeout), and on a loaded
machine its monitors and a worker that is still starting may too. ``watch()`` starts this module
as a small process that reads a pipe only the driver holds and, while the driver lives, notes
every process below it. At end of file (the driver is gone) it stops every process it noted, and
every process whose initial environment holds the driver's token (``OWNER_VARIABLE``, set while
Ray starts, inherited by all of Ray's processes until they retitle themselves: this finds those
started since the last look whose parent died with the driver), then every process below those,
until no new one appears; then it kills them all. Linux only (``/proc``).

Run as ``python -m xai_ray.reaper DRIVER_PID TOKEN`` with the pipe as standard input.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

OWNER_VARIABLE = "XAI_RAY_OWNER"
POLL_SECONDS = 0.2
MAX_ROUNDS = 50

_PIPES: list[int] = []  # the write ends this process keeps open until it ends


def token() -> str:
    """This process's token: its pid and start time, which no other process shares."""
    return f"{os.getpid()}-{started(os.getpid())}"


@contextlib.contextmanager
def owned(owner: str) -> Iterator[None]:
    """Set ``OWNER_VARIABLE`` to ``owner`` while the processes to watch are started."""
    before = os.environ.get(OWNER_VARIABLE)
    os.environ[OWNER_VARIABLE] = owner
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OWNER_VARIABLE, None)
        else:
            os.environ[OWNER_VARIABLE] = before


def watch(owner: str) -> None:
    """Start the reaper of what this process and the processes that inherit ``owner`` start."""
    if not sys.platform.startswith("linux"):
        return
    read, write = os.pipe()  # not inheritable: Ray's processes do not hold the write end
    env = {k: v for k, v in os.environ.items() if k != OWNER_VARIABLE}
    subprocess.Popen([sys.executable, "-m", "xai_ray.reaper", str(os.getpid()), owner],
                     stdin=read, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    os.close(read)
    _PIPES.append(write)


def started(pid: int) -> str | None:
    """The start time of ``pid`` (field 22 of /proc/PID/stat), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def processes() -> dict[int, tuple[int, str, str]]:
    """Every process now: its parent, state and start time."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            found[int(entry)] = (int(fields[1]), fields[0], fields[19])
    return found


def below(roots: set[int], table: dict[int, tuple[int, str, str]]) -> dict[int, str]:
    """Every process of ``table`` below one of ``roots``, with its start time."""
    found: dict[int, str] = {}
    frontier = list(roots)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, when) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = when
                frontier.append(pid)
    return found


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` now, with its start time."""
    return below({root}, processes())


def holders(owner: str, table: dict[int, tuple[int, str, str]]) -> dict[int, str]:
    """The live processes of ``table`` whose initial environment has ``owner``."""
    entry = f"{OWNER_VARIABLE}={owner}".encode()
    found = {}
    for pid, (_, state, when) in table.items():
        with contextlib.suppress(OSError):
            if state != "Z" and entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found[pid] = when
    return found


def reap(seen: dict[int, str], owner: str) -> None:
    """Stop every process of ``seen`` still alive, the holders of ``owner`` and every process
    below them until none is new (a stopped process starts no other), then kill them all."""
    stopped: dict[int, str] = {}
    for _ in range(MAX_ROUNDS):
        table = processes()
        alive = {pid: when for pid, when in seen.items()
                 if pid in table and table[pid][2] == when and table[pid][1] != "Z"}
        alive.update(holders(owner, table))
        alive.update(below(set(alive) | set(stopped), table))
        alive.pop(os.getpid(), None)
        new = {pid: when for pid, when in alive.items() if pid not in stopped}
        if not new:
            break
        for pid in new:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid, when in stopped.items():
        if started(pid) == when:  # the same process, not a new one with its pid
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def main(driver: int, owner: str) -> None:
    seen: dict[int, str] = {}
    while True:
        ready, _, _ = select.select([sys.stdin.buffer], [], [], POLL_SECONDS)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver is gone
        if started(driver) is not None:
            seen.update(descendants(driver))
            seen.pop(os.getpid(), None)
    reap(seen, owner)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
