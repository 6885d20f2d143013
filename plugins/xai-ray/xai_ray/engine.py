"""``RayEngine``: the job's batches explained by a pool of Ray actors, yielded in order.

Each actor loads the run's model once and runs ``xaicore.application.explain_batch`` (the function
the local engine runs) on the batches it is given, reading their rows from the input itself, so
only row ranges and results cross the network. Ray Data streams with backpressure: the driver
writes each batch's results to the stores as they arrive, in input order. The input and the run
directory must be readable at the same path on every node (a shared file system) when the
cluster spans machines.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from xaicore.application import ExplainJob, explain_batch, load_job_model
from xaicore.plugin import Explanation, Option, XaiError

BATCHES_PER_TASK = 4
CONNECT_TIMEOUT_S = 20.0  # joining a cluster (--address) fails after this long


class BatchExplainer:
    """A Ray actor: the model loaded once, then one explained batch per call."""

    def __init__(self, job: ExplainJob, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job = job
        self.model, self.options = load_job_model(job)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for start in batch["start"]:
            start = int(start)
            stop = min(start + self.job.batch_size, self.job.source.n_rows)
            results.append(pickle.dumps(explain_batch(self.model, self.options, self.job, start,
                                                      stop)))
        return {"start": batch["start"], "results": np.array(results, dtype=object)}


class RayEngine:
    """Ray Data ``map_batches`` with an actor pool of ``workers`` (one torch thread each)."""

    name = "ray"
    description = "Ray Data actor pool: one model per worker, local Ray or a cluster"
    options = (
        Option("workers", int, None, "actors, one model each (default: the CPU count)", min=1,
               max=100_000),
        Option("gpus_per_worker", float, None, "GPUs per actor (default: none)", min=0.0,
               max=64.0),
        Option("address", str, None, "cluster to join: ray://HOST:PORT or auto (default: "
               "RAY_ADDRESS, else a local Ray)"),
    )

    def run(self, job: ExplainJob, workers: int | None = None, gpus_per_worker: float | None = None,
            address: str | None = None) -> Iterator[tuple[int, dict[str, Explanation]]]:
        import ray

        workers = workers or max(1, (os.cpu_count() or 1))
        connect(ray, address or os.environ.get("RAY_ADDRESS"), workers)
        check_resources(ray, gpus_per_worker or 0)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        starts = [start for start, _ in job.batches()]
        if not starts:
            return
        # a few batches per Ray task: Ray Data's per-task cost is then paid once for them, while
        # short inputs still give every worker work
        per_task = max(1, min(BATCHES_PER_TASK, len(starts) // (2 * workers)))
        dataset = ray.data.from_items([{"start": s} for s in starts],
                                      override_num_blocks=-(-len(starts) // per_task))
        explained = dataset.map_batches(
            BatchExplainer, fn_constructor_args=(job, 1), batch_size=per_task,
            concurrency=workers, num_cpus=1, num_gpus=gpus_per_worker or 0, batch_format="numpy")
        for row in explained.iter_rows():
            yield int(row["start"]), pickle.loads(row["results"])


class RayUnreachable(XaiError):
    """The Ray cluster at ``--address`` did not answer, or refused to be joined."""


class RayResourcesMissing(XaiError):
    """A worker asks for more CPUs or GPUs than any node of the Ray cluster has."""


def connect(ray, address: str | None, workers: int) -> None:
    """Join the cluster at ``address``, or start a local Ray with ``workers`` CPUs; a Ray already
    running in this process is used as it is (Ray itself shuts down at exit)."""
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        join(ray, address, quiet)
        return
    from .reaper import owned, token, watch

    owner = token()
    watch(owner)
    try:
        with owned(owner):
            ray.init(num_cpus=workers, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise XaiError(f"cannot start Ray: {first_line(exc)}") from None


def join(ray, address: str, options: dict[str, Any]) -> None:
    """``ray.init(address=address)`` within ``CONNECT_TIMEOUT_S``, else RayUnreachable.

    Ray retries an address that does not answer for many minutes, in native code where this
    thread would not see a signal; so a helper thread joins while this one waits, and SIGTERM or
    Ctrl-C stop the wait (joining starts no process, so none fate-shares with the helper).
    """
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    probe(address, CONNECT_TIMEOUT_S)
    outcome: list[Exception | None] = []

    def init() -> None:
        try:
            ray.init(address=address, **options)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - reported by the waiting thread
            outcome.append(exc)

    helper = threading.Thread(target=init, name="xai-ray-join", daemon=True)
    helper.start()
    helper.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise RayUnreachable(f"cannot join Ray at {address}: no answer within "
                             f"{CONNECT_TIMEOUT_S:g} s (is it the address of a Ray cluster?)")
    if outcome[0] is not None:
        raise RayUnreachable(f"cannot join Ray at {address}: {first_line(outcome[0])}")


def probe(address: str, timeout: float) -> None:
    """Fail at once when nothing listens at ``address`` (``HOST:PORT``, ``ray://HOST:PORT``;
    other forms, such as ``auto``, are left to Ray)."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnreachable(f"cannot reach Ray at {address}: "
                             f"{exc.strerror or type(exc).__name__}") from None


def check_resources(ray, gpus_per_worker: float) -> None:
    """Refuse workers that no node of the cluster can hold (Ray would wait for them forever)."""
    wanted = {"CPU": 1.0, "GPU": gpus_per_worker}
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(kind, 0) >= amount for kind, amount in wanted.items()) for node in nodes):
        return
    total = ray.cluster_resources()
    request = f"1 CPU and {gpus_per_worker:g} GPU (--gpus-per-worker {gpus_per_worker:g})" \
        if gpus_per_worker else "1 CPU"
    raise RayResourcesMissing(
        f"a Ray worker needs {request}, more than any node of the cluster has (the cluster: "
        f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs on {len(nodes)} "
        f"node{'s' * (len(nodes) != 1)})")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
