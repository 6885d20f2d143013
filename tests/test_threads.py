"""Threads on a shared machine: the commands choose torch's CPU threads from the CPUs this process
may use and what other processes keep busy now (``xaicore.models.devices.choose_threads``), and a
streaming run revisits the choice as the load changes (``revisit_threads``).

The machine is simulated (``FakeMachine``): /proc/stat, the clock and this process's CPU time
advance only when a test says so, so nothing here is timed."""

from __future__ import annotations

import json
import os
import re
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaicore
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.explaining import streaming
from xaicore.explaining.store import load_explanation
from xaicore.models import devices


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class FakeMachine:
    """``cpus`` CPUs, of which this process may use ``allowed`` (default all), shared with
    ``competitors`` CPU-bound single-thread processes that run on the allowed CPUs, while
    ``elsewhere`` CPUs outside them are kept busy by others. Time passes only in ``advance``
    (and in devices' ``time.sleep``, with this process idle); runnable threads share the allowed
    CPUs fairly, as the kernel's scheduler shares them. /proc/stat is written as the kernel
    writes it, this process's own CPU time is what ``time.process_time`` returns."""

    def __init__(self, path, cpus: int, competitors: int = 0, allowed: set[int] | None = None,
                 elsewhere: set[int] = frozenset()) -> None:
        self.path, self.competitors = path, competitors
        self.allowed = set(range(cpus)) if allowed is None else allowed
        self.elsewhere = elsewhere
        self.now, self.own = 1000.0, 0.0  # seconds: the clock, this process's CPU time
        self.busy = [50.0] * cpus  # each CPU's busy seconds since boot
        self.idle = [80.0] * cpus
        self.sleeps: list[float] = []
        self.write()

    def advance(self, seconds: float, working: bool = False) -> None:
        """Let ``seconds`` pass, this process running torch's threads when ``working``."""
        threads = torch.get_num_threads() if working else 0
        demand = self.competitors + threads
        share = min(1.0, len(self.allowed) / demand) if demand else 1.0
        used = (self.competitors + threads) * share  # of the allowed CPUs, spread evenly
        for cpu in range(len(self.busy)):
            busy = (seconds if cpu in self.elsewhere else
                    used * seconds / len(self.allowed) if cpu in self.allowed else 0.0)
            self.busy[cpu] += busy
            self.idle[cpu] += seconds - busy
        self.own += threads * share * seconds
        self.now += seconds
        self.write()

    def write(self) -> None:
        """/proc/stat: busy time in user, system and softirq (guest time counted inside user, as
        the kernel counts it), idle time in idle and iowait, in clock ticks."""
        tick = os.sysconf("SC_CLK_TCK")

        def line(name: str, busy: float, idle: float) -> str:
            user, system, softirq, guest = 0.7 * busy, 0.2 * busy, 0.1 * busy, 0.3 * busy
            fields = (user, 0, system, 0.8 * idle, 0.2 * idle, 0, softirq, 0, guest, 0)
            return name + " " + " ".join(str(round(f * tick)) for f in fields)

        lines = [line("cpu ", sum(self.busy), sum(self.idle))]
        lines += [line(f"cpu{i}", b, i_) for i, (b, i_) in enumerate(zip(self.busy, self.idle))]
        self.path.write_text("\n".join(lines) + "\nintr 1 2 3\nctxt 99\nprocs_running 2\n")

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """``machine(cpus, ...)``: this test's FakeMachine (arguments as FakeMachine's), with
    /proc/loadavg saying ``load`` (1-minute average) and ``running`` runnable tasks, no cgroup
    CPU quota, torch's default ``default`` threads; ``proc_stat=False``: a machine without
    /proc/stat (macOS). Restores torch's thread count and forgets the automatic choice."""
    before = torch.get_num_threads()

    def make(cpus: int, competitors: int = 0, *, load: float = 0.0, running: int = 1,
             default: int = 64, proc_stat: bool = True, **placement) -> FakeMachine:
        fake = FakeMachine(tmp_path / "stat", cpus, competitors, **placement)
        (tmp_path / "loadavg").write_text(f"{load:.2f} 0.50 0.40 {running}/300 12345\n")
        monkeypatch.setattr(devices, "PROC_STAT", str(tmp_path / ("stat" if proc_stat else "none")))
        monkeypatch.setattr(devices, "LOADAVG", str(tmp_path / "loadavg"))
        monkeypatch.setattr(devices, "CGROUP_CPU_FILES", ())
        monkeypatch.setattr(devices, "cpu_ids", lambda: set(fake.allowed))
        monkeypatch.setattr(devices, "_torch_default_threads", default)
        monkeypatch.setattr(devices, "time", types.SimpleNamespace(
            monotonic=lambda: fake.now, process_time=lambda: fake.own, sleep=fake.sleep))
        monkeypatch.setattr(devices, "_revisit", None)
        return fake

    yield make
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, competitors, default, chosen", [
    (2, 0, 64, 2),   # idle: every CPU
    (2, 1, 64, 1),   # one busy competitor: the free CPU
    (2, 2, 64, 1),   # two: none free, at least one
    (4, 1, 64, 3),
    (8, 3, 64, 5),
    (8, 0, 4, 4),    # never more than torch's default (OMP_NUM_THREADS)
])
def test_auto_takes_the_cpus_other_processes_use_now(machine, cpus, competitors, default, chosen):
    fake = machine(cpus, competitors, default=default)
    assert devices.choose_threads() == chosen
    assert fake.sleeps == [devices.SAMPLE_SECONDS]  # measured over the moment before


def test_right_after_a_busy_command_auto_sees_the_idle_machine_not_the_load_average(machine):
    machine(2, 0, load=1.4, running=1)  # a competitor ended a moment ago: in the 1-minute average
    assert devices.choose_threads() == 2
    assert int(devices.available_cpus() - devices.busy_cpus() + 0.5) == 1  # what the load says
    machine(2, 1, load=0.0, running=1)  # one that started a moment ago: not in the average yet
    assert devices.choose_threads() == 1


def test_this_process_own_cpu_time_is_not_counted_as_load(machine):
    fake = machine(2)
    sampler = devices.CpuSampler()
    torch.set_num_threads(2)
    fake.advance(10.0, working=True)  # both CPUs busy, all of it this process
    assert_close(sampler.others_busy(), 0.0, scale=1.0, rtol=0.02)  # within /proc/stat's ticks
    fake.competitors = 1
    fake.advance(10.0, working=True)  # 3 threads on 2 CPUs: the competitor gets 2/3 of one
    assert_close(sampler.others_busy(), 2 / 3, scale=1.0, rtol=0.02)


def test_only_the_cpus_this_process_may_run_on_count_within_its_cgroup_quota(machine, monkeypatch,
                                                                             tmp_path):
    machine(4, 0, allowed={2, 3}, elsewhere={0, 1})  # others keep the CPUs it may not use busy
    assert devices.choose_threads() == 2
    machine(8, 3)
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # 2 CPUs per period, 5 of 8 free
    monkeypatch.setattr(devices, "CGROUP_CPU_FILES", ((str(tmp_path / "cpu.max"),),))
    assert devices.choose_threads() == 2


@pytest.mark.parametrize("cpus, load, running, chosen", [
    (2, 0.05, 1, 2),   # idle
    (2, 1.02, 2, 1),   # one busy competitor
    (2, 0.10, 2, 1),   # one that started a moment ago (runnable, not in the average yet)
    (8, 2.60, 3, 5),   # 2.6 CPUs busy: 5 of 8 left (a CPU more than half busy counts)
    (8, 2.40, 3, 6),
    (2, 9.00, 9, 1),   # overloaded: at least one
])
def test_without_proc_stat_auto_falls_back_to_the_load(machine, cpus, load, running, chosen):
    fake = machine(cpus, 0, load=load, running=running, proc_stat=False)
    assert devices.choose_threads() == chosen
    assert fake.sleeps == []  # nothing to watch: no waiting


def test_without_proc_loadavg_the_load_average_comes_from_the_os(machine, monkeypatch, tmp_path):
    machine(2, 0, proc_stat=False)
    monkeypatch.setattr(devices, "LOADAVG", str(tmp_path / "no-loadavg"))  # macOS
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (1.3, 0.9, 0.5))
    assert devices.busy_cpus() == 1.3 and devices.choose_threads() == 1


def test_on_cuda_auto_keeps_the_load_rule_and_is_not_revisited(machine, monkeypatch):
    fake = machine(2, 0, load=1.2, running=2)  # idle now, but the load says one CPU is busy
    monkeypatch.setattr(devices, "resolve_device", lambda device: torch.device("cuda"))
    assert devices.use_threads(None, "cuda") == 1 and fake.sleeps == []
    fake.advance(10.0)
    assert devices.revisit_threads() is None and torch.get_num_threads() == 1


def test_a_given_count_is_kept_and_zero_is_torchs_default(machine):
    fake = machine(2, 2, default=3)
    assert devices.choose_threads(7) == 7
    assert devices.choose_threads(0) == 3
    assert devices.use_threads(2) == 2 and torch.get_num_threads() == 2
    fake.competitors = 0
    fake.advance(10.0)
    assert devices.revisit_threads() is None and torch.get_num_threads() == 2  # not automatic
    assert fake.sleeps == []


def test_busy_cpus_read_the_load_average_and_the_runnable_tasks(machine):
    machine(2, load=0.30, running=4)
    assert devices.busy_cpus() == 3.0  # 4 runnable, one of them the reader
    machine(2, load=1.70, running=1)
    assert devices.busy_cpus() == 1.7


def test_available_cpus_follow_the_affinity_mask_and_the_cgroup_quota(monkeypatch, tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert devices.cpu_ids() == os.sched_getaffinity(0)
    assert 1 <= devices.available_cpus() <= cores
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs per period: 2 threads
    monkeypatch.setattr(devices, "CGROUP_CPU_FILES", ((str(tmp_path / "cpu.max"),),))
    assert devices.cgroup_cpus() == 2
    assert devices.available_cpus() == min(cores, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert devices.cgroup_cpus() is None and devices.available_cpus() == cores


def test_the_real_proc_stat_is_read_where_there_is_one():
    if not os.path.exists(devices.PROC_STAT):
        pytest.skip("no /proc/stat on this platform")
    sampler = devices.CpuSampler()
    assert sampler.last is not None and sampler.last[1] > 0
    busy = devices.busy_seconds(None)
    assert busy is not None and busy >= devices.busy_seconds(devices.cpu_ids())


@pytest.mark.parametrize("command", ["explain", "predict"])
def test_explain_and_predict_set_the_chosen_threads(machine, gunpoint_run, tmp_path, command):
    np.savez(tmp_path / "new.npz", X=xaicore.load_dataset("GunPoint").test.X[:2])
    args = {"explain": ["explain", "--run", gunpoint_run, "--method", "saliency", "--samples", "0:2",
                        "--out", tmp_path / "out"],
            "predict": ["predict", "--run", gunpoint_run, "--input", tmp_path / "new.npz",
                        "--out", tmp_path / "p.csv"]}[command]
    machine(2, 1)  # one competitor on two CPUs
    result = xai(*args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    machine(2, 0, load=1.5)  # idle now, though busy a moment ago
    assert xai(*args, "--force").exit_code == 0
    assert torch.get_num_threads() == 2
    assert xai(*args, "--force", "--threads", "3").exit_code == 0
    assert torch.get_num_threads() == 3


def test_train_takes_one_thread_unless_told_and_auto_on_request(machine, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(24, 20, 1)).astype(np.float32),
             y=np.arange(24) % 2)
    machine(4, 1)  # three CPUs free
    for threads, expected in ((None, 1), ("auto", 3), ("2", 2)):
        out = tmp_path / f"run-{threads}"
        extra = [] if threads is None else ["--threads", threads]
        result = xai("train", "--dataset", tmp_path / "d.npz", "--model", "fcn", "--epochs", "1",
                     "--out", out, "--quiet", *extra)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "metrics.json").read_text())["threads"] == expected


BATCH_SECONDS = 0.7  # the simulated time one batch takes
LOADED = range(5, 15)  # batches explained beside one CPU-bound competitor (of 25)


@pytest.mark.parametrize("threads", ["auto", "2"])
def test_a_streaming_run_rechooses_its_threads_as_the_load_comes_and_goes(
        machine, gunpoint_run, tmp_path, monkeypatch, threads):
    X = np.concatenate([xaicore.load_dataset("GunPoint").test.X] * 4)[:600].astype(np.float32)
    np.save(tmp_path / "in.npy", X)
    fake = machine(2)
    batches: list[tuple[float, int]] = []  # (start time, threads) of each batch
    reads = []
    real_batch, real_busy = streaming.explain_batch, devices.busy_seconds

    def batch(model, options, job, start, stop):
        fake.competitors = int(len(batches) in LOADED)
        batches.append((fake.now, torch.get_num_threads()))
        result = real_batch(model, options, job, start, stop)
        fake.advance(BATCH_SECONDS, working=True)
        return result

    monkeypatch.setattr(streaming, "explain_batch", batch)
    monkeypatch.setattr(devices, "busy_seconds", lambda cpus: reads.append(fake.now) or
                        real_busy(cpus))
    result = xai("explain", "--run", gunpoint_run, "--input", tmp_path / "in.npy", "--method",
                 "gradcam", "--batch-size", "24", "--out", tmp_path / "out", "--device", "cpu",
                 "--threads", threads)
    assert result.exit_code == 0, result.output
    assert len(batches) == 25
    changes = re.findall(r"threads (\d) -> (\d)", result.output)
    if threads == "2":  # obeyed: never looked at
        assert {t for _, t in batches} == {2} and not changes and not reads
    else:
        # each change is seen within two looks (a look's window may straddle it)
        lag = 2 * (devices.RECHECK_SECONDS + BATCH_SECONDS)
        began, ended = batches[LOADED[0]][0], batches[LOADED[-1] + 1][0]
        for start, chosen in batches:
            if start < began or start >= ended + lag:
                assert chosen == 2, batches
            elif began + lag <= start < ended:
                assert chosen == 1, batches
        assert changes == [("2", "1"), ("1", "2")]  # said once each, in the progress line
        assert fake.sleeps == [devices.SAMPLE_SECONDS]  # the revisits wait for nothing
        assert all(b - a >= devices.RECHECK_SECONDS for a, b in zip(reads[1:], reads[2:]))
    stored = load_explanation(tmp_path / "out" / "gradcam.zarr")
    torch.set_num_threads(1)
    expected = xaicore.explain(xaicore.load_run(gunpoint_run, "cpu"), X, method="gradcam")
    # the same rows on other thread counts and in other batches: equal up to float rounding
    assert_close(stored.load().attributions, expected.attributions)
    np.testing.assert_array_equal(stored.load().predictions, expected.predictions)


@pytest.mark.parametrize("value", ["-1", "many", "1025", "1.5"])
def test_a_bad_thread_count_is_a_one_line_usage_error(value):
    result = xai("predict", "--run", "x", "--input", "y", "--threads", value)
    assert result.exit_code == 2
    assert "is not a thread count from 0 to 1024 nor 'auto'" in result.output
