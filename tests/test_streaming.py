"""Streaming explanations into chunked stores: equal to in-memory results, lazy, resumable."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import xaicore
from tolerances import assert_close, assert_frames_close, assert_identical
from xaicore.cli import cli
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.store import StoredExplanation, load_explanation, store_attrs


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def setup(gunpoint_run, tmp_path_factory):
    """A copy of the shared run and 600 GunPoint-shaped series in every input format."""
    root = tmp_path_factory.mktemp("stream")
    run = root / "run"
    shutil.copytree(gunpoint_run, run)
    test = load_dataset({"name": "GunPoint"}).test.X
    rng = np.random.default_rng(0)
    X = (np.concatenate([test] * 4)[:600] + rng.normal(0, 0.05, (600, 150, 1))).astype(np.float32)
    np.save(root / "big.npy", X)
    np.savez_compressed(root / "big.npz", X=X)
    import pandas as pd
    import zarr

    pd.DataFrame(X[:200, :, 0]).to_csv(root / "big.csv", index=False)
    zarr.create_array(str(root / "big.zarr"), data=X, chunks=(64, 150, 1))
    return run, root, X


def reference(run: Path, X: np.ndarray, method: str) -> Explanation:
    return xaicore.explain(xaicore.load_run(run, "cpu"), X, method=method)


@pytest.mark.parametrize("name, rows", [("big.npy", 600), ("big.npz", 600), ("big.csv", 200),
                                        ("big.zarr", 600)])
def test_every_input_format_streams_to_a_store_equal_to_the_in_memory_result(setup, name, rows):
    run, root, X = setup
    out = root / f"out-{name}"
    result = xai("explain", "--run", run, "--input", root / name, "--method", "gradcam",
                 "--method", "saliency", "--batch-size", "128", "--out", out)
    assert result.exit_code == 0, result.output
    for method in ("gradcam", "saliency"):
        stored = load_explanation(out / f"{method}.zarr")
        assert isinstance(stored, StoredExplanation) and stored.n_samples == rows
        assert store_attrs(out / f"{method}.zarr")["complete"]
        picked = [0, 127, 128, rows - 1]  # both sides of a chunk boundary
        expected = reference(run, X[picked], method)
        got = stored.select(picked)
        assert_close(got.attributions, expected.attributions)  # batches of 128 against 4 rows
        np.testing.assert_array_equal(got.predictions, expected.predictions)
        np.testing.assert_array_equal(got.sample_ids, picked)
        assert_identical(got.inputs, X[picked])  # stored as read, float32 both


def test_a_store_opens_lazily_and_reads_only_the_chunks_asked_for(setup, monkeypatch):
    import zarr
    from zarr.storage import LocalStore, WrapperStore

    run, root, X = setup
    out = root / "lazy"
    assert xai("explain", "--run", run, "--input", root / "big.npy", "--method", "saliency",
               "--batch-size", "50", "--out", out).exit_code == 0
    # rows in chunks of the batch; per-sample scalars (ids, classes, summary columns) in one
    # chunk for all 600 rows, not 12 small files each
    chunk_files = lambda name: [p for p in (out / "saliency.zarr" / name / "c").rglob("*")  # noqa: E731
                                if p.is_file()]
    assert len(chunk_files("attributions")) == 12
    assert len(chunk_files("sample_ids")) == len(chunk_files("summary/peak_t")) == 1
    read: list[str] = []

    class Counting(WrapperStore):
        async def get(self, key, prototype, byte_range=None):
            read.append(key)
            return await super().get(key, prototype, byte_range)

    real_open = zarr.open_group
    monkeypatch.setattr(zarr, "open_group", lambda path, mode: real_open(
        Counting(LocalStore(path, read_only=True)), mode=mode))
    stored = load_explanation(out / "saliency.zarr")
    chunk_reads = lambda: [k for k in read if "/c/" in k]  # noqa: E731
    assert chunk_reads() == []  # opening reads metadata only
    e = stored.select([5, 7])
    assert e.n_samples == 2
    chunks = chunk_reads()
    assert chunks and all(k.split("/c/")[1].split("/")[0] == "0" for k in chunks), chunks
    assert len({k.split("/c/")[0] for k in chunks}) == len(chunks)  # one chunk per array


def test_a_killed_run_resumes_from_the_rows_written(setup):
    run, root, X = setup
    whole, cut = root / "whole", root / "cut"
    assert xai("explain", "--run", run, "--input", root / "big.npy", "--method", "saliency",
               "--batch-size", "32", "--out", whole).exit_code == 0
    command = [sys.executable, "-m", "xaicore.cli", "explain", "--run", str(run), "--input",
               str(root / "big.npy"), "--method", "saliency", "--batch-size", "32", "--out",
               str(cut), "--checkpoint-seconds", "0"]  # written after every batch
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    store = cut / "saliency.zarr"
    deadline = time.time() + 120
    while time.time() < deadline:
        if (store / "zarr.json").exists() and store_attrs(store)["rows_written"] >= 64:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = store_attrs(store)["rows_written"]
    assert 64 <= written < 600 and not store_attrs(store)["complete"]
    with pytest.raises(XaiError, match="incomplete"):
        load_explanation(store)
    result = xai(*command[3:])
    assert result.exit_code == 1 and "--resume" in result.output  # never silently restarted
    result = xai(*command[3:], "--resume")
    assert result.exit_code == 0, result.output
    a, b = load_explanation(store).load(), load_explanation(whole / "saliency.zarr").load()
    assert_close(a.attributions, b.attributions)  # the kill moves the batch boundaries
    np.testing.assert_array_equal(a.sample_ids, np.arange(600))
    # the summaries built while streaming count every row once across the kill and the resume
    cut_sum, whole_sum = load_explanation(store).class_summary(), \
        load_explanation(whole / "saliency.zarr").class_summary()
    for name, values in whole_sum.items():
        assert_close(cut_sum[name], values, err_msg=name)
    assert_frames_close(load_explanation(store).samples_table(),
                        load_explanation(whole / "saliency.zarr").samples_table())
    result = xai(*command[3:])
    assert result.exit_code == 1 and "--force" in result.output  # complete: needs --force
    assert not [p for p in cut.rglob(".*") if "tmp-" in p.name or p.name == ".xai.lock"]


def test_dataset_summaries_built_while_streaming_match_the_stored_attributions(setup):
    """The per-class means and the per-sample table, accumulated batch by batch, equal what a
    second pass over the complete store gives (computed here independently with numpy)."""
    import pandas as pd

    run, root, X = setup
    labels = np.arange(600) % 2
    np.savez(root / "labelled.npz", X=X, y=np.array([1.0, 2.0])[labels])  # GunPoint's "1", "2"
    out = root / "summaries"
    result = xai("explain", "--run", run, "--input", root / "labelled.npz", "--method", "gradcam",
                 "--batch-size", "96", "--out", out)
    assert result.exit_code == 0, result.output
    stored = load_explanation(out / "gradcam.zarr")
    e = stored.load()
    a = e.attributions.astype(np.float64)
    summary = stored.class_summary()
    for c in range(2):
        rows = e.targets == c
        assert summary["count"][c] == rows.sum()
        if rows.any():
            assert_close(summary["attribution_mean"][c], a[rows].mean(0))
            assert_close(summary["attribution_abs_mean"][c], np.abs(a[rows]).mean(0))
            assert_close(summary["input_mean"][c], X[rows].mean(0))
        else:
            assert np.isnan(summary["attribution_mean"][c]).all()
    table = stored.samples_table()
    csv = pd.read_csv(out / "gradcam.samples.csv")
    assert len(table) == len(csv) == 600
    np.testing.assert_array_equal(table["sample_id"], np.arange(600))
    np.testing.assert_array_equal(table["label"], labels)
    np.testing.assert_array_equal(table["prediction"], e.predictions)
    np.testing.assert_array_equal(table["correct"], labels == e.predictions)
    assert set(table["prediction_name"]) <= set(e.class_names)
    assert_identical(table["probability"], e.probabilities[np.arange(600), e.predictions])
    magnitude = np.abs(a).sum(axis=2)  # [sample, time]
    steps = np.arange(150)
    center = (magnitude * steps).sum(1) / magnitude.sum(1)
    assert_close(table["center_t"], center)
    np.testing.assert_array_equal(table["peak_t"], magnitude.argmax(1))
    assert_close(table["share_" + e.feature_names[0]], np.ones(600))
    assert_close(table["attribution_l1"], np.abs(a).sum((1, 2)))
    assert_close(csv["center_t"], table["center_t"])  # printed to the CSV and read back
    assert list(csv.columns) == list(table.columns)


def test_a_chunk_with_nan_names_the_sample_and_keeps_the_chunks_before(setup):
    run, root, X = setup
    bad = X[:300].copy()
    bad[200, 17, 0] = np.nan
    np.save(root / "nan.npy", bad)
    result = xai("explain", "--run", run, "--input", root / "nan.npy", "--method", "saliency",
                 "--batch-size", "64", "--out", root / "nan")
    assert result.exit_code == 1 and "first at sample 200" in result.output
    assert "Traceback" not in result.output
    assert store_attrs(root / "nan" / "saliency.zarr")["rows_written"] == 192
    assert "the 192 samples before them are written" in result.output
    bad[:64] = X[:64]
    bad[3, 5, 0] = np.nan
    np.save(root / "nan-first.npy", bad)
    result = xai("explain", "--run", run, "--input", root / "nan-first.npy", "--method",
                 "saliency", "--batch-size", "64", "--out", root / "nan-first")
    assert result.exit_code == 1 and result.output.rstrip().endswith("; nothing was written")


def test_bad_requests_are_one_line_errors(setup):
    run, root, X = setup
    np.save(root / "short.npy", X[:10, :140])
    result = xai("explain", "--run", run, "--input", root / "short.npy", "--method", "saliency")
    assert result.exit_code == 1 and "(140, 1)" in result.output and "(150, 1)" in result.output
    result = xai("explain", "--run", run, "--input", root / "big.npy", "--engine", "warp")
    assert result.exit_code == 1 and "unknown engine 'warp'" in result.output \
        and "local" in result.output
    result = xai("explain", "--run", run, "--input", root / "big.npy", "--engine", "ray",
                 "--method", "saliency", "--out", root / "ray-check")
    if "ray" not in __import__("xaicore").plugins.registry.names("engines"):
        assert result.exit_code == 1 and "needs the plugin xai-ray" in result.output
    result = xai("explain", "--run", run, "--resume", "--method", "saliency")
    assert result.exit_code == 1 and "go with --input or --samples all" in result.output
    result = xai("explain", "--run", run, "--input", root / "missing.npy")
    assert result.exit_code == 1 and "no input at" in result.output


def test_the_report_shows_a_dataset_view_and_draws_only_the_chosen_samples(setup):
    """`xai report` summarises a streamed result from its summaries, and `--samples` draws
    those samples of it one by one; an incomplete store is named, not read."""
    run, root, X = setup
    run = Path(shutil.copytree(run, root / "report-run"))
    labels = np.arange(300) % 2
    np.savez(root / "fleet.npz", X=X[:300], y=np.array(["1", "2"])[labels])
    assert xai("explain", "--run", run, "--input", root / "fleet.npz", "--method", "gradcam",
               "--batch-size", "128").exit_code == 0
    store = run / "explanations" / "fleet" / "gradcam.zarr"
    e = load_explanation(store).load()
    result = xai("report", "--run", run)
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert 'id="dataset"' in html and "gradcam on explanations/fleet: 300 samples" in html
    assert f"{np.mean(e.predictions == labels):.4f} (300 labelled)" in html
    assert "Drill-down" not in html
    wrong = int((e.predictions != labels).sum())
    assert (f"Misclassified: {wrong} samples" in html) == (wrong > 0)
    result = xai("report", "--run", run, "--samples", "0:3,7", "--force")
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    drill = html[html.index("Drill-down: 4 chosen samples"):]
    for sid in (0, 1, 2, 7):
        assert f"attribution of sample {sid}<" in drill
    assert "attribution of sample 3<" not in drill
    result = xai("report", "--run", run, "--samples", "0:65", "--force")
    assert result.exit_code == 1 and "at most 64" in result.output
    # a store cut short is named in the report, which still renders
    from xaicore.explaining.store import StoreWriter

    StoreWriter.create(run / "explanations" / "fleet" / "saliency.zarr", 300, 128,
                       {"method": "saliency"}, force=False)
    result = xai("report", "--run", run, "--force")
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert "saliency.zarr" in html and "incomplete (0 of 300 samples written)" in html


def test_resume_discards_class_totals_ahead_of_the_rows_on_disk(setup, tmp_path):
    """Rows on disk and the class totals checkpoint are written one after the other; totals that
    count rows the disk lacks would count them twice after a resume, so the store starts again."""
    from xaicore.explaining.store import StoreWriter
    from xaicore.explaining.streaming import store_metadata
    from xaicore.models.checkpoints import load_run

    run, root, X = setup
    e = xaicore.explain(load_run(run, "cpu"), X[:64], method="saliency",
                        sample_ids=np.arange(64))
    path = tmp_path / "saliency.zarr"
    writer = StoreWriter.create(path, 64, 16, store_metadata(e), force=False,
                                checkpoint_seconds=0)
    writer.append(e.select(np.arange(48)))  # rows and totals: 48
    writer.group.attrs["rows_written"] = 32  # as if the last rows never reached the disk
    resumed = StoreWriter.resume(path, 64, {"method": "saliency"})
    assert resumed.rows_written == 0 and resumed.totals is None
    resumed.append(e)
    resumed.finish()
    stored = load_explanation(path)
    assert stored.class_summary()["count"].sum() == 64
    assert_close(stored.class_summary()["attribution_mean"][e.targets[0]],
                 e.attributions[e.targets == e.targets[0]].mean(0))
