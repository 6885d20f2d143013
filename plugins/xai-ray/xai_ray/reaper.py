"""Ends what is left of a local Ray when the xai process that started it dies, SIGKILL included.

Ray ties its core processes to the driver, but its two agents outlive a killed driver by about a
minute (they report the raylet's death to the dead GCS with a 60 s timeout), and on a loaded
machine its monitors may too. ``watch()`` starts this module as a small process that reads a pipe
only the driver holds: end of file means the driver is gone, and it kills every process it saw
below the driver (Ray's processes, the raylet's children among them). Linux only (``/proc``).

Run as ``python -m xai_ray.reaper DRIVER_PID`` with the pipe as standard input.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5
GRACE_SECONDS = 1.0  # Ray's own fate-sharing goes first

_PIPES: list[int] = []  # the write ends this process keeps open until it ends


def watch() -> None:
    """Start the reaper of the local Ray this process started."""
    if not sys.platform.startswith("linux"):
        return
    read, write = os.pipe()  # not inheritable: Ray's processes do not hold the write end
    subprocess.Popen([sys.executable, "-m", "xai_ray.reaper", str(os.getpid())], stdin=read,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` now, with its start time."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                when = started(pid)
                if when is not None:
                    found[pid] = when
                    frontier.append(pid)
    return found


def main(driver: int) -> None:
    seen: dict[int, str] = {}
    while True:
        ready, _, _ = select.select([sys.stdin.buffer], [], [], POLL_SECONDS)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver is gone
        if started(driver) is not None:
            seen.update(descendants(driver))
            seen.pop(os.getpid(), None)
    time.sleep(GRACE_SECONDS)
    for pid, when in seen.items():
        if started(pid) == when:  # the same process, not a new one with its pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
