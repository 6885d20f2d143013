"""Evaluation tasks run side by side in forked worker processes, one torch thread each.

The hybrid's passes use a second core poorly from within one process (two processes with one
thread each pass more rows per second than one process with two threads), so on CPU
the evaluation forks workers that inherit the loaded model and run whole tasks (explain one
method, one step of the randomisation, one metric over the methods). Every task seeds its own
randomness, so the numbers do not depend on which worker ran it nor on how many there are. On
CUDA, where fork is unsupported, or with one worker, tasks run in this process (with its torch
thread count, whose float rounding may differ from one thread's in the last digits).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from xaicore.application import set_memory_share
from xaicore.plugin import LoadedModel, XaiError

MAX_AUTO_WORKERS = 8


class WorkerDied(XaiError):
    """A worker process ended without returning (killed, out of memory): the evaluation stops."""


_STATE: dict[str, Any] = {}  # what the tasks share: the model and the run's arrays


def state() -> dict[str, Any]:
    """The model and arrays of the evaluation (in a worker: inherited from the parent)."""
    return _STATE


def can_fork() -> bool:
    """Fork is safe here: Linux (macOS lists fork but its system libraries are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def auto_workers(device: torch.device) -> int:
    """This machine's cores (at most 8) on CPU when fork is safe here, else 1."""
    if device.type != "cpu" or not can_fork() or threading.active_count() > 1:
        return 1  # forking a process that runs other threads may deadlock the copy
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_WORKERS, cores or 1))


def check_workers(workers: int | None, device: torch.device) -> int:
    """The worker count to use: ``workers`` checked, or ``auto_workers`` when None."""
    if workers is None:
        return auto_workers(device)
    if workers < 1:
        raise XaiError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and device.type != "cpu":
        raise XaiError(f"--workers {workers} needs the CPU (worker processes cannot share "
                       f"{device}); use --workers 1")
    if workers > 1 and not can_fork():
        raise XaiError(f"--workers {workers} needs fork-started processes, which are safe on "
                       f"Linux only; use --workers 1")
    if workers > 1 and threading.active_count() > 1:
        raise XaiError(f"workers={workers} would fork this process while it runs other threads "
                       f"(a Jupyter kernel, a server), which can deadlock the copies; use "
                       f"workers=1 here")
    return workers


PARENT_POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start_worker(workers: int, parent_pid: int, parent_main_thread: int | None) -> None:
    end_with_parent(parent_pid, parent_main_thread)
    torch.set_num_threads(1)
    set_memory_share(1 / workers)  # passes sized for this worker's share of the memory
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers


def end_with_parent(parent_pid: int, parent_main_thread: int | None) -> None:
    """Make this forked worker end when its parent process dies, by any signal (SIGKILL too).

    A worker blocks reading its task pipe, whose write end its siblings inherited, so it would
    not notice. On Linux the kernel kills it (``PR_SET_PDEATHSIG``), which it does when the
    *thread* that forked ends, so only for workers forked by the parent's main thread; others
    (and other systems) watch their parent pid from a thread.
    """
    forked_by_main = threading.get_ident() == parent_main_thread  # fork keeps the thread's id
    if not (sys.platform.startswith("linux") and forked_by_main and _kill_on_parent_death()):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                         name="xai-watch-parent").start()
    if os.getppid() != parent_pid:  # the parent died before this worker could arrange it
        os._exit(1)


def _kill_on_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent's forking thread ends; False if not."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                          ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except (AttributeError, OSError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def run_task(task: Callable[..., Any], *args: Any) -> tuple[Any, list[tuple[str, type]]]:
    """``task(*args)`` and the warnings it raised (a worker's would otherwise be lost)."""
    with warnings.catch_warnings(record=True) as caught:  # the filters in force stay
        result = task(*args)
    return result, [(str(w.message), w.category) for w in caught]


class Lanes:
    """``submit(task, *args)``: a future of ``(result, warnings)``, run by a worker process or
    (one worker) at once in this process."""

    def __init__(self, model: LoadedModel, workers: int, **shared: Any) -> None:
        _STATE.clear()
        _STATE.update(model=model, **shared)
        self.pool = None
        if workers > 1:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_start_worker,
                                            initargs=(workers, os.getpid(),
                                                      threading.main_thread().ident))

    def submit(self, task: Callable[..., Any], *args: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(run_task, task, *args)
        future: Future = Future()
        try:
            future.set_result(run_task(task, *args))
        except Exception as exc:  # handed to the caller through the future (Ctrl-C is not)
            future.set_exception(exc)
        return future

    @staticmethod
    def result(future: Future) -> Any:
        """A task's ``(result, warnings)``; a worker that died (killed, out of memory) is an
        XaiError."""
        try:
            return future.result()
        except BrokenProcessPool:
            raise WorkerDied("an evaluation worker process died (out of memory or killed?); "
                             "try fewer --workers or --workers 1") from None

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if self.pool is not None:
            if kind is not None:  # an error or Ctrl-C: stop the tasks still running too
                for process in list(getattr(self.pool, "_processes", {}).values()):
                    process.terminate()
            self.pool.shutdown(wait=True, cancel_futures=True)
        _STATE.clear()
