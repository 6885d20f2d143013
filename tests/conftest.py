"""Shared fixtures: one small trained GunPoint run for every test that needs a real model."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Small networks run many times faster on one thread when the machine's cores are shared
    (torch's threads then wait for each other at every operation)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def own_state_folder(tmp_path_factory):
    """xai's per-user state (the record of imported code) in a folder of the test session's,
    never the developer's home."""
    import os

    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture
def thread_free():
    """This test process with no thread but the main one, as forking evaluation workers needs
    (``xai_eval.lanes.check_workers`` refuses otherwise). A test that streamed into a Zarr store
    in-process leaves zarr's IO loop and its executor threads running; they are stopped here
    (zarr starts them again on its next use). Any other thread fails the test by name."""
    import sys
    import threading
    import time

    if "zarr.core.sync" in sys.modules:
        sys.modules["zarr.core.sync"].cleanup_resources()
    deadline = time.monotonic() + 5.0
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # executor threads end once they see the loop closed
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    assert not others, f"threads left running by earlier tests: {others}"


def assert_evaluated_and_reported(run: Path, methods: tuple[str, ...], *extra: str) -> None:
    """``xai evaluate`` of ``methods`` against random (8 samples, deletion; ``extra`` arguments
    after them) gives each a verdict in evaluation.csv, and ``xai report`` names each."""
    import pandas as pd
    from click.testing import CliRunner

    from xaicore.cli import cli

    flags = [arg for method in methods for arg in ("--method", method)]
    evaluated = CliRunner().invoke(cli, ["evaluate", "--run", str(run), *flags, "--method", "random",
                                         "--samples", "8", "--metric", "deletion", *extra])
    assert evaluated.exit_code == 0, evaluated.output
    table = pd.read_csv(run / "evaluation.csv").set_index("method")
    assert set(methods) <= set(table.index)
    assert table.loc[list(methods), "verdict"].notna().all()
    report = CliRunner().invoke(cli, ["report", "--run", str(run)])
    assert report.exit_code == 0, report.output
    html = (run / "report.html").read_text()
    assert all(method in html for method in methods)


@pytest.fixture(scope="session")
def gunpoint_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of cnn-lstm-attention trained on GunPoint (seed 0, test accuracy > 0.8).

    Read-only for tests: copy it (shutil.copytree) before writing into it.
    """
    from xaicore.data.loading import dataset_spec
    from xaicore.runs.training import train

    run = tmp_path_factory.mktemp("runs") / "gunpoint"
    metrics = train(dataset_spec("GunPoint"), "cnn-lstm-attention", run, epochs=30, seed=0,
                    progress=False)
    assert metrics["test_accuracy"] > 0.8, metrics
    return run
