"""The ray engine on a real local Ray (2 CPUs): the same numbers as the local engine."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.explaining.explanation import Explanation

from tolerances import assert_close

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
        a = Explanation.load(outs["local"] / f"{method}.zarr").load()
        b = Explanation.load(outs["ray"] / f"{method}.zarr").load()
        np.testing.assert_array_equal(b.sample_ids, np.arange(300))  # in input order
        assert_close(b.attributions, a.attributions)  # other processes and batch splits
        np.testing.assert_array_equal(b.predictions, a.predictions)
    a = Explanation.load(outs["local"] / "integrated-gradients.zarr").load()
    b = Explanation.load(outs["ray"] / "integrated-gradients.zarr").load()
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
    a = Explanation.load(outs["local"] / "gradcam.zarr").load()
    b = Explanation.load(outs["ray"] / "gradcam.zarr").load()
    assert b.lengths.tolist() == sorted(lengths.tolist())
    assert_close(b.attributions, a.attributions, equal_nan=True)
    assert_close(b.extras["layer_heatmap"], a.extras["layer_heatmap"], equal_nan=True)
    assert np.isnan(b.attributions).any()
