"""Evaluation workers end with their parent, even when it is SIGKILLed: no orphans."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="forked evaluation workers run on Linux only")

# two workers each running a task that would sleep for ten minutes; with the argument "thread"
# the workers are forked by a thread that has ended before the parent is killed
SCRIPT = textwrap.dedent("""
    import os, sys, threading, time
    from xai_eval.lanes import Lanes

    def task():
        sys.stdout.write(f"running {os.getpid()}\\n")  # one write: the workers share the pipe
        sys.stdout.flush()
        time.sleep(600)

    with Lanes(None, 2) as lanes:
        submit = lambda: futures.extend(lanes.submit(task) for _ in range(2))
        futures = []
        if sys.argv[1] == "thread":
            forker = threading.Thread(target=submit)
            forker.start()
            forker.join()
        else:
            submit()
        sys.stdout.write("submitted\\n")  # one write too: print's newline is a second one
        sys.stdout.flush()
        for future in futures:
            future.result()
""")


def read_lines(process: subprocess.Popen, count: int, timeout: float) -> list[str]:
    """The first ``count`` lines ``process`` prints, waiting at most ``timeout`` seconds."""
    stream = process.stdout
    assert stream is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def forward() -> None:  # a thread: select() would miss lines already read into the buffer
        for line in stream:
            lines.put(line.strip())
        lines.put(None)  # the script ended

    threading.Thread(target=forward, daemon=True).start()
    got: list[str] = []
    deadline = time.monotonic() + timeout
    with contextlib.suppress(queue.Empty):
        while len(got) < count and (line := lines.get(
                timeout=max(0.0, deadline - time.monotonic()))) is not None:
            got.append(line)
    assert len(got) == count, f"the script printed {got} and then nothing (ended: {process.poll()})"
    return got


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("forker", ["main", "thread"])
def test_workers_end_soon_after_their_parent_is_killed(forker: str) -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, forker], stdout=subprocess.PIPE,
                               text=True)
    workers: list[int] = []
    try:
        lines = read_lines(process, 3, timeout=60)
        workers = [int(line.split()[1]) for line in lines if line.startswith("running")]
        assert len(set(workers)) == 2 and "submitted" in lines, lines
        time.sleep(0.5)  # the forking thread has ended: the workers go on
        assert all(alive(pid) for pid in workers) and process.poll() is None
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), f"orphaned workers {workers}"
    finally:
        process.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
