"""Evaluation tasks run side by side in forked worker processes, one torch thread each.

The hybrid's passes use a second core poorly from within one process (one process with two
threads: 5.1k forward rows/s on the demo run; two processes with one thread each: 6.8k), so on CPU
the evaluation forks workers that inherit the loaded model and run whole tasks (explain one
method, one step of the randomisation, one metric over the methods). Every task seeds its own
randomness, so the numbers do not depend on which worker ran it. On CUDA, where fork is
unsupported, or with one worker, tasks run in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

import torch

from xaicore.plugin import LoadedModel, XaiError

MAX_AUTO_WORKERS = 8
_STATE: dict[str, Any] = {}  # what the tasks share: the model and the run's arrays


def state() -> dict[str, Any]:
    """The model and arrays of the evaluation (in a worker: inherited from the parent)."""
    return _STATE


def auto_workers(device: torch.device) -> int:
    """This machine's cores (at most 8) on CPU when fork is safe here, else 1."""
    if (device.type != "cpu" or "fork" not in multiprocessing.get_all_start_methods()
            or threading.active_count() > 1):  # forking a threaded process may deadlock
        return 1
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
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise XaiError(f"--workers {workers} needs fork-started processes, which this platform "
                       f"lacks; use --workers 1")
    return workers


def _start_worker() -> None:
    torch.set_num_threads(1)


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
                                            initializer=_start_worker)

    def submit(self, task: Callable[..., Any], *args: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(run_task, task, *args)
        future: Future = Future()
        try:
            future.set_result(run_task(task, *args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future

    def __enter__(self) -> "Lanes":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        _STATE.clear()
