"""The ray engine on a real local Ray (2 CPUs): the same numbers as the local engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tolerances import assert_close
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.explaining.store import load_explanation

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.shutdown()  # a Ray an earlier in-process command left running has other resources
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_equals_the_local_engine(gunpoint_run, tmp_path, local_ray):
    run = tmp_path / "run"
    shutil.copytree(gunpoint_run, run)
    X = np.concatenate([load_dataset({"name": "GunPoint"}).test.X] * 2)[:300]
    np.save(tmp_path / "input.npy", X)
    outs = {}
    for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
        outs[engine] = tmp_path / engine
        result = CliRunner().invoke(cli, [
            "explain", "--run", str(run), "--input", str(tmp_path / "input.npy"), "--method",
            "gradcam", "--method", "integrated-gradients", "--option",
            # 19 batches: Ray tasks of 4 batches each and a last one of 3
            "integrated-gradients.n_steps=8", "--batch-size", "16", "--engine", engine,
            "--out", str(outs[engine]), *extra])
        assert result.exit_code == 0, result.output
    for method in ("gradcam", "integrated-gradients"):
        a = load_explanation(outs["local"] / f"{method}.zarr").load()
        b = load_explanation(outs["ray"] / f"{method}.zarr").load()
        np.testing.assert_array_equal(b.sample_ids, np.arange(300))  # in input order
        assert_close(b.attributions, a.attributions)  # other processes and batch splits
        np.testing.assert_array_equal(b.predictions, a.predictions)
    a = load_explanation(outs["local"] / "integrated-gradients.zarr").load()
    b = load_explanation(outs["ray"] / "integrated-gradients.zarr").load()
    # a difference of sums: float32 error of the attributions' scale
    assert_close(b.extras["convergence_delta"], a.extras["convergence_delta"],
                 scale=float(np.abs(a.attributions).sum((1, 2)).max()))


def test_ray_engine_on_variable_length_series_equals_the_local_engine(tmp_path, local_ray):
    rng = np.random.default_rng(4)
    n, steps = 24, 30
    lengths = rng.integers(10, steps + 1, size=n)
    X = rng.normal(0, 0.3, size=(n, steps, 2))
    X[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0
    np.savez(tmp_path / "vl.npz", X=X, y=np.arange(n) % 2, lengths=lengths)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "vl.npz"), "--model",
                                      "fcn", "--out", str(run), "--epochs", "2", "--param",
                                      "filters=[8,8,8]", "--quiet"])
    assert result.exit_code == 0, result.output
    # NaN-padded, shortest first: later batches carry wider time-shaped extras than the first
    padded = X.copy()
    padded[np.arange(steps)[None, :] >= lengths[:, None]] = np.nan
    np.save(tmp_path / "padded.npy", padded[np.argsort(lengths, kind="stable")])
    outs = {}
    for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
        outs[engine] = tmp_path / engine
        result = CliRunner().invoke(cli, [
            "explain", "--run", str(run), "--input", str(tmp_path / "padded.npy"), "--method",
            "gradcam", "--batch-size", "4", "--engine", engine, "--out", str(outs[engine]),
            *extra])
        assert result.exit_code == 0, result.output
    a = load_explanation(outs["local"] / "gradcam.zarr").load()
    b = load_explanation(outs["ray"] / "gradcam.zarr").load()
    assert b.lengths.tolist() == sorted(lengths.tolist())
    assert_close(b.attributions, a.attributions, equal_nan=True)
    assert_close(b.extras["layer_heatmap"], a.extras["layer_heatmap"], equal_nan=True)
    assert np.isnan(b.attributions).any()


def test_ray_engine_decodes_an_image_folder_by_the_runs_rule_as_the_local_engine(tmp_path,
                                                                                 local_ray):
    """The workers read the image files themselves, resized by the rule the run recorded."""
    from test_image_data import digits_8bit, write_folder

    write_folder(tmp_path / "digits", digits_8bit(6, (0, 1)), scale=1)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "digits"), "--model",
                                      "image-cnn", "--out", str(run), "--epochs", "1", "--param",
                                      "channels=2", "--data", "size=16", "--quiet"])
    assert result.exit_code == 0, result.output
    outs = {}
    for engine, extra in (("local", []), ("ray", ["--workers", "2"])):
        outs[engine] = tmp_path / engine
        result = CliRunner().invoke(cli, [
            "explain", "--run", str(run), "--input", str(tmp_path / "digits"), "--method",
            "gradcam", "--batch-size", "4", "--engine", engine, "--out", str(outs[engine]),
            *extra])
        assert result.exit_code == 0, result.output
    a = load_explanation(outs["local"] / "gradcam.zarr").load()
    b = load_explanation(outs["ray"] / "gradcam.zarr").load()
    assert b.inputs.shape == (12, 256, 1) and b.labels.tolist() == [0] * 6 + [1] * 6
    assert (b.inputs == a.inputs).all()  # the same decoding in every process
    assert_close(b.attributions, a.attributions)


# joining a cluster fails fast; a request no node can hold is refused

EXPLAIN = ("import sys; from xai_ray import engine; engine.CONNECT_TIMEOUT_S = float(sys.argv[1]); "
           "from xaicore.cli import main; sys.argv[1:2] = []; main()")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch fcn run and an input of 8 of its samples."""
    root = tmp_path_factory.mktemp("tiny")
    X = np.random.default_rng(0).normal(size=(16, 20, 2))
    np.savez(root / "data.npz", X=X, y=np.arange(16) % 2)
    np.save(root / "input.npy", X[:8])
    result = CliRunner().invoke(cli, ["train", "--dataset", str(root / "data.npz"), "--model",
                                      "fcn", "--out", str(root / "run"), "--epochs", "1",
                                      "--param", "filters=[4,4,4]", "--quiet"])
    assert result.exit_code == 0, result.output
    return root


def explain_process(tiny_run, *args: str, join_timeout: float = 20) -> subprocess.Popen:
    """``xai explain --engine ray ARGS`` in a process that joins clusters within
    ``join_timeout`` and sees no GPU."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(
        [sys.executable, "-c", EXPLAIN, str(join_timeout), "explain", "--run",
         str(tiny_run / "run"), "--input", str(tiny_run / "input.npy"), "--method", "gradcam",
         "--engine", "ray", "--out", str(tiny_run / "out"), *args],
        stderr=subprocess.PIPE, text=True, env={**env, "CUDA_VISIBLE_DEVICES": ""})


def failure(tiny_run, *args: str, join_timeout: float = 20) -> tuple[str, float]:
    """The last line ``explain_process`` printed, and its seconds, when it failed within 40 s."""
    started = time.monotonic()
    process = explain_process(tiny_run, *args, join_timeout=join_timeout)
    try:
        _, err = process.communicate(timeout=40)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 1, err
    return err.strip().splitlines()[-1], time.monotonic() - started


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers; yields (port, connections so far).
    On every interface: Ray joins 127.0.0.1 at this machine's own address."""
    server = socket.create_server(("0.0.0.0", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()
    for connection in accepted:
        connection.close()


def test_an_address_where_nothing_listens_is_a_one_line_error_at_once(tiny_run):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # nothing listens there once closed
    line, seconds = failure(tiny_run, "--address", f"127.0.0.1:{port}")
    assert line == f"Error: cannot reach Ray at 127.0.0.1:{port}: Connection refused"
    assert seconds < 20  # the process's start and imports included


def test_an_address_that_does_not_answer_fails_within_the_timeout(tiny_run, silent_server):
    port, _ = silent_server
    line, seconds = failure(tiny_run, "--address", f"127.0.0.1:{port}", join_timeout=3)
    assert line == (f"Error: cannot join Ray at 127.0.0.1:{port}: no answer within 3 s (is it "
                    f"the address of a Ray cluster?)")
    assert seconds < 3 + 20


def test_sigterm_ends_the_wait_for_an_address_at_once(tiny_run, silent_server):
    port, accepted = silent_server
    process = explain_process(tiny_run, "--address", f"127.0.0.1:{port}", join_timeout=600)
    try:
        deadline = time.monotonic() + 60
        while len(accepted) < 2 and time.monotonic() < deadline:  # xai's probe, then Ray's
            time.sleep(0.05)
        assert len(accepted) >= 2 and process.poll() is None
        time.sleep(1)  # Ray is inside its native connection wait
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=5)
        assert process.returncode == -signal.SIGTERM
    finally:
        process.kill()
        process.communicate()


def test_workers_no_node_can_hold_are_refused_up_front(tiny_run):
    line, _ = failure(tiny_run, "--workers", "2", "--gpus-per-worker", "1")  # a local Ray
    assert line == ("Error: a Ray worker needs 1 CPU and 1 GPU (--gpus-per-worker 1), more than "
                    "any node of the cluster has (the cluster: 2 CPUs and 0 GPUs on 1 node)")


def test_a_local_ray_ends_soon_after_the_xai_that_started_it_is_killed(tiny_run):
    """Ray ties its core processes to the driver, but its agents outlived a SIGKILLed xai by about
    a minute: the reaper xai starts beside a local Ray ends every Ray process, started late or not."""
    from xai_ray.reaper import OWNER_VARIABLE, descendants, started

    np.save(tiny_run / "long.npy", np.random.default_rng(1).normal(size=(200_000, 20, 2)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "xaicore.cli", "explain", "--run", str(tiny_run / "run"),
         "--input", str(tiny_run / "long.npy"), "--method", "saliency", "--engine", "ray",
         "--workers", "1", "--batch-size", "64", "--out", str(tiny_run / "long-out"), "--force"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**env, "CUDA_VISIBLE_DEVICES": ""})
    try:
        deadline = time.monotonic() + 60
        seen: dict[int, str] = {}
        while time.monotonic() < deadline and process.poll() is None:
            seen = descendants(process.pid)
            if sum(1 for pid in seen if b"ray::" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   ) >= 3:  # the agents and a worker are up
                break
            time.sleep(0.2)
        assert process.poll() is None and len(seen) >= 4, seen
        time.sleep(1)
        seen.update(descendants(process.pid))
        owner = f"{OWNER_VARIABLE}={process.pid}-{started(process.pid)}".encode()
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 15
    alive = seen
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        late = {}  # Ray processes started after the last look, found by the token they inherit
        for name in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if owner in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                    late[int(name)] = started(int(name))
        alive = {pid: when for pid, when in {**seen, **late}.items() if started(pid) == when and
                 Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"}
    assert not alive, {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:60] for pid in alive}
