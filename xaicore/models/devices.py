"""Where models run and how much they may take: the device, rows per pass, free memory.

Explainers plan their passes with these: ``pass_rows`` for forward passes without gradients,
``free_memory`` and ``saved_bytes_per_row`` for passes that keep tensors for a backward, and
``memory_share`` for processes that work side by side (``set_memory_share``). The commands choose
their CPU threads with ``choose_threads``: as many as the CPUs this process may use that other
processes leave free, at least one, measured over the moment before (``CpuSampler``); a long run
revisits the choice between its chunks (``revisit_threads``).
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaicore.errors import XaiError


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


LOADAVG = "/proc/loadavg"
#: the kernel's CPU time counters, the whole machine's and each CPU's (``cpuN`` lines)
PROC_STAT = "/proc/stat"
#: cgroup CPU quota files: v2 (``QUOTA PERIOD`` or ``max PERIOD``), then v1 (quota, period).
CGROUP_CPU_FILES = (("/sys/fs/cgroup/cpu.max",),
                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
#: how long ``choose_threads`` watches the CPUs before choosing (the command waits this long)
SAMPLE_SECONDS = 0.2
#: a long run revisits its automatic choice at most this often (``revisit_threads``)
RECHECK_SECONDS = 2.0
#: /proc/stat's busy fields of a ``cpu`` line: user, nice, system, irq, softirq, steal (guest
#: time is already in user and nice; idle and iowait are not busy)
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def cpu_ids() -> set[int] | None:
    """The CPUs this process may run on (its affinity mask; None where the platform has none)."""
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, within its cgroup's CPU quota."""
    ids = cpu_ids()
    cores = len(ids) if ids else os.cpu_count()
    quota = cgroup_cpus()
    return max(1, min(cores or 1, quota or cores or 1))


def cgroup_cpus() -> int | None:
    """The CPUs (rounded up) this process's cgroup may use per period, or None when unlimited."""
    for files in CGROUP_CPU_FILES:
        try:
            parts = " ".join(Path(f).read_text() for f in files).split()
            quota, period = int(parts[0]), int(parts[1])
        except (OSError, ValueError, IndexError):
            continue
        return -(-quota // period) if quota > 0 and period > 0 else None
    return None


def busy_cpus() -> float:
    """CPUs other processes keep busy by the load: the larger of the 1-minute load average and
    the tasks runnable right now (less the one reading), from ``/proc/loadavg``; where there is
    none, the 1-minute load average of ``os.getloadavg`` (0 where there is neither).

    The load average remembers a competitor that paused a moment, or that stopped a minute ago;
    the runnable count sees one that started seconds ago. ``CpuSampler`` sees both as they are."""
    try:
        fields = Path(LOADAVG).read_text().split()
        return max(float(fields[0]), float(fields[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def busy_seconds(cpus: set[int] | None) -> float | None:
    """Busy CPU time (s) the kernel counts on ``cpus`` (all CPUs: None) since boot, from
    ``/proc/stat``; None where it is missing or names none of them."""
    try:
        lines = Path(PROC_STAT).read_text().splitlines()
    except OSError:
        return None
    ticks, seen = 0, False
    for line in lines:
        name, _, rest = line.partition(" ")  # "cpu" (the machine's) or "cpuN"
        wanted = name == "cpu" if cpus is None else name[3:].isdigit() and int(name[3:]) in cpus
        if not name.startswith("cpu") or not wanted:
            continue
        fields = rest.split()
        try:
            ticks += sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields))
        except ValueError:
            return None
        seen = True
    return ticks / os.sysconf("SC_CLK_TCK") if seen else None


class CpuSampler:
    """The CPUs other processes keep busy between two readings: the busy time ``/proc/stat``
    counts on the CPUs this process may run on, less this process's own CPU time, per second of
    the wall time between them."""

    def __init__(self) -> None:
        self.cpus = cpu_ids()
        self.n_cpus = len(self.cpus) if self.cpus else os.cpu_count() or 1
        self.last = self.reading()

    def reading(self) -> tuple[float, float, float] | None:
        """(wall clock, busy seconds of the CPUs, this process's CPU seconds); None without
        /proc/stat."""
        busy = busy_seconds(self.cpus)
        return None if busy is None else (time.monotonic(), busy, time.process_time())

    def seconds_since(self) -> float:
        """Wall seconds since the last reading (infinite when there was none)."""
        return time.monotonic() - self.last[0] if self.last else float("inf")

    def others_busy(self) -> float | None:
        """CPUs other processes kept busy since the last reading, which this one replaces (None
        without /proc/stat or when no time has passed)."""
        now = self.reading()
        last, self.last = self.last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])

    def free_cpus(self) -> float | None:
        """The CPUs this process may run on that others left free since the last reading."""
        busy = self.others_busy()
        return None if busy is None else self.n_cpus - busy


def choose_threads(requested: int | None = None, device: str | torch.device | None = None) -> int:
    """CPU threads for this process's torch work: ``requested`` when given (0: torch's default),
    else (None: automatic) the CPUs this process may use that other processes leave free, at
    least 1 and at most torch's default (which follows ``OMP_NUM_THREADS``).

    The free CPUs are measured over ``SAMPLE_SECONDS`` (``CpuSampler``), within the cgroup's
    quota; where there is no /proc/stat, and on CUDA (where the threads only feed the device),
    they are the available CPUs less the load (``busy_cpus``). A CPU counts as busy when others
    use more than half of it. torch's threads wait for each other at every operation, so a
    thread whose CPU another process holds stalls all of them; one thread per free CPU never
    waits for a busy one."""
    if requested is not None and requested < 0:
        raise XaiError(f"threads must be 0 (torch's default), a positive count or automatic, not "
                       f"{requested}")
    if requested == 0:
        return _torch_default_threads
    if requested:
        return requested
    return _automatic(device)[0]


def _automatic(device: str | torch.device | None) -> tuple[int, CpuSampler | None]:
    """The automatic count, and the sampler that measured it (None: measured by the load)."""
    if resolve_device(device).type != "cuda":
        sampler = CpuSampler()
        if sampler.last is not None:
            time.sleep(SAMPLE_SECONDS)
            free = sampler.free_cpus()
            if free is not None:
                return threads_for(free), sampler
    return threads_for(available_cpus() - busy_cpus()), None


def threads_for(free: float) -> int:
    """Threads for ``free`` CPUs (rounded: a CPU more than half busy is busy), at least 1 and at
    most the available CPUs and torch's default."""
    return max(1, min(int(free + 0.5), available_cpus(), _torch_default_threads))


class _Revisit:
    """An automatic choice a long run may revisit: its sampler and the count it set."""

    def __init__(self, sampler: CpuSampler, threads: int) -> None:
        self.sampler, self.threads = sampler, threads


_revisit: _Revisit | None = None


def use_threads(requested: int | None = None, device: str | torch.device | None = None) -> int:
    """Set torch's CPU threads to ``choose_threads(requested, device)``; the count set. An
    automatic choice measured on the CPUs may be revisited (``revisit_threads``) until the next
    call."""
    global _revisit
    sampler = None
    if requested is None:
        threads, sampler = _automatic(device)
    else:
        threads = choose_threads(requested, device)
    _revisit = _Revisit(sampler, threads) if sampler is not None else None
    torch.set_num_threads(threads)
    return threads


def revisit_threads() -> tuple[int, int] | None:
    """Between the chunks of a long run: when ``use_threads`` chose automatically from the CPUs
    and ``RECHECK_SECONDS`` have passed since the last look, choose again from what other
    processes used since then (no waiting) and set it; (before, after) when the count changed."""
    if _revisit is None or _revisit.sampler.seconds_since() < RECHECK_SECONDS:
        return None
    free = _revisit.sampler.free_cpus()
    if free is None:
        return None
    before, _revisit.threads = _revisit.threads, threads_for(free)
    if _revisit.threads == before:
        return None
    torch.set_num_threads(_revisit.threads)
    return before, _revisit.threads


_torch_default_threads = torch.get_num_threads()  # before any command changes it


def pass_rows(device: torch.device | str, values_per_row: int) -> int:
    """Rows per no-grad forward pass of series with ``values_per_row`` (time x feature) values.

    On CPU small passes stay in cache and run fastest (rows/s fall beyond a few hundred rows of a
    GunPoint-sized series); on CUDA large passes fill the device.
    """
    cpu = torch.device(device).type == "cpu"
    most, values = (256, 2 ** 16) if cpu else (8192, 2 ** 23)
    return int(min(most, max(1, values // max(1, values_per_row))))


_memory_share = 1.0


def set_memory_share(fraction: float) -> None:
    """Let this process plan its passes with ``fraction`` of the free memory it sees: processes
    working side by side (the evaluation's workers) each take their share."""
    global _memory_share
    if not 0 < fraction <= 1:
        raise ValueError(f"memory share must be in (0, 1], got {fraction}")
    _memory_share = float(fraction)


def memory_share() -> float:
    """The fraction of the free memory this process may plan with (``set_memory_share``; 1 alone)."""
    return _memory_share

#: cgroup memory limit and usage files: v2, then v1 (a container sees its own group at the root).
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def free_memory(device: torch.device | str) -> int:
    """Bytes this process may still allocate on ``device``: free memory on CUDA; otherwise the
    least of the available RAM, what its address-space and data limits leave (RLIMIT_AS against
    VmSize, RLIMIT_DATA against VmData) and what its cgroup's memory limit leaves."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return max(0, min([available_ram(), *limit_headroom(), *cgroup_headroom()]))


def pass_budget(device: torch.device | str) -> int:
    """Bytes one pass (or one group of samples) may take: half of this process's share of the
    free memory on ``device`` (``free_memory``, ``memory_share``)."""
    return int(free_memory(device) * memory_share()) // 2


def available_ram() -> int:
    """MemAvailable of /proc/meminfo, else the free physical pages."""
    meminfo = _read_kib("/proc/meminfo")
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def limit_headroom() -> list[int]:
    """Bytes left under this process's finite RLIMIT_AS and RLIMIT_DATA."""
    try:
        import resource
    except ImportError:  # no POSIX limits on this platform
        return []
    status = _read_kib("/proc/self/status")
    left = []
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and used in status:
            left.append(soft - status[used])
    return left


def cgroup_headroom() -> list[int]:
    """Bytes left under the memory limit of this process's cgroup (none when unlimited)."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**62:  # "max" or a huge number: no limit
            return [int(limit) - usage]
        return []
    return []


def _read_kib(path: str) -> dict[str, int]:
    """``Name: N kB`` lines of a /proc file as bytes (an empty dict where there is no /proc)."""
    values = {}
    try:
        with open(path) as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                    values[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


_saved_bytes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def saved_bytes_per_row(module: nn.Module, row: torch.Tensor) -> int:
    """Bytes of the tensors a forward of ``module`` keeps for its backward, per input row like
    ``row``: measured on probes of 2 and 4 copies of it (their difference leaves out what does
    not grow with the batch, the parameters), once per module, row shape, type and device."""
    key = (tuple(row.shape), row.dtype, row.device, module.training)
    known = _saved_bytes.setdefault(module, {})
    if key not in known:
        known[key] = _measure_saved_bytes(module, row)
    return known[key]


def _measure_saved_bytes(module: nn.Module, row: torch.Tensor) -> int:
    def saved(rows: int) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.layout == torch.strided:
                storage = tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        x = row.detach()[None].expand(rows, *row.shape).clone().requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        return sum(storages.values())

    return max(0, (saved(4) - saved(2)) // 2)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device that exists here (None or "auto": cuda when available)."""
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise XaiError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise XaiError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index or 0) >= torch.cuda.device_count()):
        raise XaiError(f"device {device!r} requested but that CUDA device is not available here")
    return dev


@contextlib.contextmanager
def backward_safe(model: Any) -> Iterator[None]:
    """Allow backward through the RNNs of ``model`` (a ``Model``) in eval mode: cuDNN refuses it,
    so it is disabled on CUDA."""
    if model.device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield
