"""Threads on a shared machine: the commands choose torch's CPU threads from the CPUs this process
may use and what other processes keep busy (``xaicore.models.devices.choose_threads``)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xaicore.cli import cli
from xaicore.models import devices


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A machine of ``cpus`` CPUs whose /proc/loadavg says ``load`` (1-minute average) and
    ``running`` runnable tasks; torch's default is ``default`` threads. Restores torch's count."""
    before = torch.get_num_threads()

    def make(cpus: int, load: float, running: int, default: int = 64) -> None:
        (tmp_path / "loadavg").write_text(f"{load:.2f} 0.50 0.40 {running}/300 12345\n")
        monkeypatch.setattr(devices, "LOADAVG", str(tmp_path / "loadavg"))
        monkeypatch.setattr(devices, "available_cpus", lambda: cpus)
        monkeypatch.setattr(devices, "_torch_default_threads", default)

    yield make
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, load, running, default, chosen", [
    (2, 0.05, 1, 64, 2),   # idle: every CPU
    (2, 1.02, 2, 64, 1),   # one busy competitor: the free CPU
    (2, 0.10, 2, 64, 1),   # a competitor that started a moment ago (not in the average yet)
    (2, 1.00, 1, 64, 1),   # one that paused a moment (still in the average)
    (8, 2.60, 3, 64, 5),   # 2.6 CPUs busy: 5 of 8 left (a CPU more than half busy counts)
    (8, 2.40, 3, 64, 6),
    (2, 9.00, 9, 64, 1),   # overloaded: at least one
    (8, 0.00, 1, 4, 4),    # never more than torch's default (OMP_NUM_THREADS)
])
def test_auto_takes_the_cpus_other_processes_leave_free(machine, cpus, load, running, default,
                                                         chosen):
    machine(cpus, load, running, default)
    assert devices.choose_threads() == chosen


def test_a_given_count_is_kept_and_zero_is_torchs_default(machine):
    machine(2, 5.0, 6, default=3)
    assert devices.choose_threads(7) == 7
    assert devices.choose_threads(0) == 3
    assert devices.use_threads(2) == 2 and torch.get_num_threads() == 2


def test_busy_cpus_read_the_load_average_and_the_runnable_tasks(machine):
    machine(2, 0.30, 4)
    assert devices.busy_cpus() == 3.0  # 4 runnable, one of them the reader
    machine(2, 1.70, 1)
    assert devices.busy_cpus() == 1.7


def test_available_cpus_follow_the_affinity_mask_and_the_cgroup_quota(monkeypatch, tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert 1 <= devices.available_cpus() <= cores
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs per period: 2 threads
    monkeypatch.setattr(devices, "CGROUP_CPU_FILES", ((str(tmp_path / "cpu.max"),),))
    assert devices.cgroup_cpus() == 2
    assert devices.available_cpus() == min(cores, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert devices.cgroup_cpus() is None and devices.available_cpus() == cores


@pytest.mark.parametrize("command", ["explain", "predict"])
def test_explain_and_predict_set_the_chosen_threads(machine, gunpoint_run, tmp_path, command):
    import xaicore

    np.savez(tmp_path / "new.npz", X=xaicore.load_dataset("GunPoint").test.X[:2])
    args = {"explain": ["explain", "--run", gunpoint_run, "--method", "saliency", "--samples", "0:2",
                        "--out", tmp_path / "out"],
            "predict": ["predict", "--run", gunpoint_run, "--input", tmp_path / "new.npz",
                        "--out", tmp_path / "p.csv"]}[command]
    machine(2, 1.0, 2)  # one competitor on two CPUs
    result = xai(*args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    machine(2, 0.0, 1)  # idle
    assert xai(*args, "--force").exit_code == 0
    assert torch.get_num_threads() == 2
    assert xai(*args, "--force", "--threads", "3").exit_code == 0
    assert torch.get_num_threads() == 3


def test_train_takes_one_thread_unless_told_and_auto_on_request(machine, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(24, 20, 1)).astype(np.float32),
             y=np.arange(24) % 2)
    machine(4, 1.0, 2)  # three CPUs free
    for threads, expected in ((None, 1), ("auto", 3), ("2", 2)):
        out = tmp_path / f"run-{threads}"
        extra = [] if threads is None else ["--threads", threads]
        result = xai("train", "--dataset", tmp_path / "d.npz", "--model", "fcn", "--epochs", "1",
                     "--out", out, "--quiet", *extra)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "metrics.json").read_text())["threads"] == expected


@pytest.mark.parametrize("value", ["-1", "many", "1025", "1.5"])
def test_a_bad_thread_count_is_a_one_line_usage_error(value):
    result = xai("predict", "--run", "x", "--input", "y", "--threads", value)
    assert result.exit_code == 2
    assert "is not a thread count from 0 to 1024 nor 'auto'" in result.output
