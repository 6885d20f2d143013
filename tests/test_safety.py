"""xai deletes only what it wrote, writes atomically, keeps names inside their folder,
bounds its work and turns bad values into one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tolerances import assert_close, assert_identical
from xaicore import files
from xaicore.cli import cli
from xaicore.data.dataset import DataSplit, as_series
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.runs import result_name, run_folders
from xaicore.explaining.store import load_explanation
from xaicore.models.checkpoints import load_checkpoint
from xaicore.runs import directory as runs
from xaicore.runs.training import train

SMALL = {"cnn_channels": 4, "lstm_hidden_size": 4, "lstm_num_layers": 1, "num_heads": 2}
HOSTILE = ["../../../../outside/PWNED", "/etc/passwd", "a/b", "..", ".", "", "a\x00b",
           "é" * 300, "x" * 1000, "CON", "名前", ".hidden", "a\\b"]


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def toy_npz(path: Path, names=("early", "late"), n: int = 24, length: int = 16) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % len(names)
    X = rng.normal(scale=0.3, size=(n, length))
    for i, c in enumerate(y):
        X[i, 2 + c * length // 2: 6 + c * length // 2] += 2
    np.savez(path, X=X, y=np.array(names)[y])
    return path


def small_train(tmp_path: Path, out: Path, **kwargs) -> dict:
    spec = dataset_spec(toy_npz(tmp_path / "toy.npz"))
    options = {"epochs": 1, "params": SMALL, "progress": False, **kwargs}
    return train(spec, "cnn-lstm-attention", out, **options)


LOOK_ALIKES = [".bashrc.old-20240101", ".notes.old-99999999999999999999", ".x.tmp-1-abcd",
               ".y.partial-1", f".z.xai-tmp-{2**66}-abcd1234", ".w.xai-tmp-1-nothex!"]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if files.is_temporary(p.name) or p.name == files.LOCK]


@contextlib.contextmanager
def held(folder: Path, what: str = "xai test-holder"):
    """Another process holding ``folder``'s lock until the block ends; yields its pid."""
    code = ("import sys\nfrom xaicore import files\nwith files.locked(sys.argv[1], sys.argv[2]):"
            "\n    print('held', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), what],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


# --- xaicore.files ---------------------------------------------------------------------------

def test_atomic_write_replaces_whole_or_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.txt"
    files.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with files.atomic_open(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and temporaries(tmp_path) == []
    files.write_text(target, "new")
    assert target.read_text() == "new" and temporaries(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_cleaned_live_ones_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    runs.create_marker(run)
    dead = run / f".x.npz.xai-tmp-{dead_pid()}-abcd0123"
    dead.write_text("half")
    dead_dir = run / f".training.xai-partial-{dead_pid()}-0000ffff"
    dead_dir.mkdir()
    live = run / f".y.npz.xai-tmp-{os.getppid()}-abcd0123"
    live.write_text("being written")
    mine = [run / "notes.partial.txt", *(run / name for name in LOOK_ALIKES)]
    for path in mine:
        path.write_text("mine")
    files.clean_stale(run)
    assert not dead.exists() and not dead_dir.exists()
    assert live.exists() and all(p.read_text() == "mine" for p in mine)
    # a folder that is not a run is never cleaned, not even of xai's own temporaries
    user = tmp_path / "user"
    user.mkdir()
    theirs = user / f".x.npz.xai-tmp-{dead_pid()}-abcd0123"
    theirs.write_text("whatever it is")
    assert files.clean_stale(user) == [] and theirs.exists()


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_name_stays_inside_its_folder(tmp_path, text):
    name = files.safe_name(text)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in ("", ".", "..") and len(name) <= files.MAX_NAME
    path = files.inside(tmp_path, name)
    path.write_text("ok")  # a real, writable file name directly in the folder
    assert path.parent == tmp_path


def test_safe_names_of_different_texts_differ():
    names = [files.safe_name(t) for t in HOSTILE + ["a_b", "a:b", "gradcam"]]
    assert len(set(names)) == len(names)
    assert files.safe_name("gradcam") == "gradcam"


def test_inside_refuses_a_name_that_leaves(tmp_path):
    for bad in ("../x", "a/../../x", "/abs"):
        with pytest.raises(XaiError, match="not a plain file name"):
            files.inside(tmp_path, bad)


def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    with held(tmp_path, "xai explain") as pid:
        with pytest.raises(XaiError, match=f"in use by another xai process \\(pid {pid}, xai "
                                           f"explain, since"):
            with files.locked(tmp_path, "test"):
                pass
    for stale in ({"pid": dead_pid()}, {"pid": 2**66}, "not json"):  # what a dead holder left
        (tmp_path / files.LOCK).write_text(json.dumps(stale) if isinstance(stale, dict) else stale)
        with files.locked(tmp_path, "test"):
            assert json.loads((tmp_path / files.LOCK).read_text())["pid"] == os.getpid()
            with files.locked(tmp_path, "the same process again"):
                pass
        assert not (tmp_path / files.LOCK).exists()
    (tmp_path / files.LOCK).mkdir()
    with pytest.raises(XaiError, match="is a directory, not xai's lock file"):
        with files.locked(tmp_path, "test"):
            pass


def test_a_lock_is_free_again_the_moment_its_holder_is_killed(tmp_path):
    code = ("import sys, time\nfrom xaicore import files\nwith files.locked(sys.argv[1], 'x'):"
            "\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(XaiError, match="in use"):
        with files.locked(tmp_path, "test"):
            pass
    proc.kill()
    proc.wait()
    with files.locked(tmp_path, "test"):  # no stale-pid guess: the kernel released it
        pass


# --- training: --force, --resume, interrupted runs -------------------------------------------

def test_force_refuses_a_folder_that_is_not_a_run(tmp_path):
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.tex").write_text("thesis")
    (precious / "sub" / "notes.txt").write_text("mine")
    for force in ([], ["--force"]):
        result = xai("train", "--dataset", toy_npz(tmp_path / "toy.npz"), "--model", "fcn",
                     "--out", precious, "--epochs", "1", *force)
        assert result.exit_code == 1 and "not an xai run" in result.output, force
    assert (precious / "thesis.tex").read_text() == "thesis"
    assert (precious / "sub" / "notes.txt").read_text() == "mine"
    assert not (precious / "checkpoint.pt").exists() and temporaries(precious) == []


def test_out_dot_force_in_a_user_folder_is_refused_and_in_an_empty_one_trains(tmp_path,
                                                                              monkeypatch):
    data = toy_npz(tmp_path / "toy.npz")
    monkeypatch.chdir(tmp_path)  # holds toy.npz: not a run
    result = xai("train", "--dataset", data, "--model", "fcn", "--out", ".", "--epochs", "1",
                 "--force", "--quiet")
    assert result.exit_code == 1 and "not an xai run" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = xai("train", "--dataset", data, "--model", "fcn", "--out", ".", "--epochs", "1",
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert (empty / "checkpoint.pt").is_file() and (empty / runs.MARKER).is_file()
    assert temporaries(empty) == []


def test_force_replaces_a_run_but_keeps_files_xai_did_not_write(tmp_path):
    run = tmp_path / "run"
    small_train(tmp_path, run)
    (run / "notes.md").write_text("mine")
    files.write_text(run / "explanations" / "gradcam.npz", "old result")  # as xai writes it
    files.write_text(run / "report.html", "<old>")
    (run / "explanations" / "reading.md").write_text("mine too")
    (run / "explanations" / "mine.csv").write_text("my own table")  # a result's name, not xai's
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(XaiError, match="--force"):
        small_train(tmp_path, run)
    assert (run / "checkpoint.pt").read_bytes() == before
    small_train(tmp_path, run, force=True, seed=1)
    assert (run / "checkpoint.pt").read_bytes() != before
    assert (run / "notes.md").read_text() == "mine"
    assert (run / "explanations" / "reading.md").read_text() == "mine too"
    assert (run / "explanations" / "mine.csv").read_text() == "my own table"
    assert not (run / "explanations" / "gradcam.npz").exists()  # results of the old model go
    assert not (run / "report.html").exists()
    assert "checkpoint.pt" in runs.written_files(run) and "notes.md" not in runs.written_files(run)


def test_resume_invalidates_the_old_models_results_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    small_train(tmp_path, run)
    results = ["explanations/gradcam.npz", "evaluation.csv", "evaluation/x.png", "report.html",
               "predictions/p.csv"]
    for rel in results:
        files.write_text(run / rel, "a result of the model before")
    (run / "explanations" / "notes.md").write_text("mine")
    train(None, None, run, epochs=2, resume=True, progress=True)
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
    assert not [rel for rel in results if (run / rel).exists()]
    assert (run / "explanations" / "notes.md").read_text() == "mine"
    said = capsys.readouterr().err
    assert "resumed" in said and "kept its data, recipe, seed, history and optimizer state" in said
    assert "removed 5 result file(s) of the old model" in said
    assert temporaries(run) == []


def test_interrupted_training_leaves_the_old_run_and_no_temporary(tmp_path, monkeypatch):
    import xaicore.runs.training as training

    run = tmp_path / "run"
    small_train(tmp_path, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_render", interrupt)
    with pytest.raises(KeyboardInterrupt):
        small_train(tmp_path, run, force=True, seed=3)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert temporaries(tmp_path) == []


def test_leftovers_of_a_killed_run_are_cleaned_and_the_parent_folder_is_never_touched(tmp_path):
    parent = tmp_path / "par"
    run = parent / "run"
    run.mkdir(parents=True)
    runs.create_marker(run)  # what a first training killed part way leaves
    pid = dead_pid()
    (run / f".training.xai-partial-{pid}-0123abcd").mkdir()
    (run / files.LOCK).write_text(json.dumps({"pid": pid}))
    theirs = [parent / name for name in LOOK_ALIKES + [f".run.xai-partial-{pid}-0123abcd"]]
    for path in theirs:
        path.write_text("mine")
    (parent / ".emacs.d.old-2019").mkdir()
    small_train(tmp_path, run)
    assert temporaries(run) == [] and (run / "checkpoint.pt").is_file()
    assert all(p.read_text() == "mine" for p in theirs) and (parent / ".emacs.d.old-2019").is_dir()


def test_training_into_a_run_held_by_a_live_process_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with held(run, "xai train"):
        with pytest.raises(XaiError, match="in use by another xai process .*xai train"):
            small_train(tmp_path, run, force=True)
    assert not (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("command", ["explain", "evaluate", "report", "figures", "predict"])
def test_no_command_writes_into_a_run_another_command_holds(gunpoint_run, tmp_path, command):
    """``train --force`` while ``xai explain`` runs would mix two models' results: every command
    that writes into a run takes its lock, and a second one is refused naming the first."""
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = {"explain": ["--method", "saliency", "--samples", "0:2"], "evaluate": [],
            "report": [], "figures": [], "predict": ["--input", str(toy_npz(tmp_path / "x.npz"))]}
    with held(run, "xai train") as pid:
        result = xai(command, "--run", run, *args[command])
        assert result.exit_code == 1, result.output
        assert f"in use by another xai process (pid {pid}, xai train" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


# --- explain: names, folders, corrupt results, locks -----------------------------------------

@pytest.mark.parametrize("target", HOSTILE)
def test_result_names_never_leave_the_folder(tmp_path, target):
    stem = result_name("gradcam", target)
    assert files.inside(tmp_path, f"{stem}.npz").parent == tmp_path


def test_runs_with_the_same_folder_name_get_distinct_folders(tmp_path):
    runs = [tmp_path / "a" / "gp", tmp_path / "b" / "gp", tmp_path / "c" / "other",
            tmp_path / "d" / "x" / ".."]
    names = run_folders(runs)
    assert len(set(names)) == 4 and names[2] == "other" and names[3] == "d"
    for name in names:
        assert files.inside(tmp_path, name).parent == tmp_path


def test_class_names_with_path_text_stay_inside_the_run(tmp_path):
    data = toy_npz(tmp_path / "toy.npz", names=("../../../../outside/PWNED", "a/b"))
    run = tmp_path / "runs" / "run"
    train(dataset_spec(data), "fcn", run, epochs=1, progress=False)
    result = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2",
                 "--target", "../../../../outside/PWNED", "--no-figures")
    assert result.exit_code == 0, result.output
    written = list((run / "explanations").iterdir())
    assert len(written) == 1 and written[0].name.startswith("saliency@")
    assert not (tmp_path / "outside").exists() and not (run / "explanations" / "saliency@a").exists()


def test_two_runs_with_one_name_do_not_overwrite_each_other(gunpoint_run, tmp_path):
    a, b = tmp_path / "a" / "gp", tmp_path / "b" / "gp"
    shutil.copytree(gunpoint_run, a)
    shutil.copytree(gunpoint_run, b)
    out = tmp_path / "out"
    result = xai("explain", "--run", a, "--run", b, "--method", "saliency", "--samples", "0:2",
                 "--out", out, "--no-figures")
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*/saliency.npz"))) == 2


def test_a_corrupt_result_is_named_with_the_command_that_regenerates_it(gunpoint_run, tmp_path):
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    result = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2",
                 "--no-figures")
    assert result.exit_code == 0, result.output
    good = (run / "explanations" / "saliency.npz").read_bytes()
    (run / "explanations" / "saliency.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(XaiError, match="saliency.npz is corrupt.*xai explain --method saliency"):
        Explanation.load(run / "explanations" / "saliency.npz")
    (run / "explanations" / "saliency@true.npz").write_bytes(good[:200] + b"\0" * 500)
    result = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2",
                 "--no-figures", "--force")
    assert result.exit_code == 0, result.output
    result = xai("report", "--run", run)
    assert result.exit_code == 0, result.output
    assert "saliency@true.npz" in (run / "report.html").read_text()


def test_two_explain_processes_on_one_run_never_leave_a_corrupt_file(gunpoint_run, tmp_path):
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    xai_bin = Path(sys.executable).with_name("xai")
    args = [str(xai_bin), "explain", "--run", str(run), "--method", "saliency", "--samples",
            "0:4", "--no-figures", "--force"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in outcomes), outcomes
    for code, err in outcomes:
        assert code == 0 or (code == 1 and "in use by another xai process" in err
                             and "Traceback" not in err), err
    assert Explanation.load(run / "explanations" / "saliency.npz").attributions.shape[0] == 4
    assert temporaries(run) == []


def test_report_out_an_existing_directory_is_one_line(gunpoint_run, tmp_path):
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    (tmp_path / "dir").mkdir()
    result = xai("report", "--run", run, "--out", tmp_path / "dir", "--force")
    assert result.exit_code == 1 and "is a directory" in result.output
    assert "Traceback" not in result.output


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, message", [
    (["--device", "foo"], 1, "unknown device 'foo'"),
    (["--device", "meta"], 1, "device 'meta' is not supported"),
    (["--seed", "-1"], 2, "Invalid value for '--seed'"),
    (["--seed", str(2**32)], 2, "Invalid value for '--seed'"),
    (["--threads", "-1"], 2, "Invalid value for '--threads'"),
])
def test_bad_train_values_are_one_line_errors(tmp_path, args, code, message):
    result = xai("train", "--dataset", toy_npz(tmp_path / "toy.npz"), "--model", "fcn",
                 "--out", tmp_path / "run", "--epochs", "1", *args)
    assert result.exit_code == code and message in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_explain_with_an_unknown_device_is_one_line(gunpoint_run):
    result = xai("explain", "--run", gunpoint_run, "--method", "saliency", "--device", "foo")
    assert result.exit_code == 1 and "unknown device 'foo'" in result.output


def _checkpoint_with(gunpoint_run: Path, tmp_path: Path, **fields) -> Path:
    ckpt = torch.load(gunpoint_run / "checkpoint.pt", weights_only=True)
    ckpt.update(fields)
    path = tmp_path / "checkpoint.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("field, value, message", [
    ("hyperparameters", [1, 2], "field 'hyperparameters'"),
    ("seq_len", "150", "field 'seq_len' must be a positive int up to 10,000,000 or None"),
    ("seq_len", True, "field 'seq_len' must be a positive int up to 10,000,000 or None"),
    ("class_names", [1, 2], "field 'class_names'"),
    ("class_names", ["1", "1"], "at least 2 distinct class names"),
    ("feature_names", "value", "field 'feature_names'"),
    ("model", 3, "field 'model'"),
    ("state_dict", {"w": [1.0]}, "field 'state_dict'"),
    ("normalisation", {"mean": ["a"], "std": [1.0]}, "'normalisation'"),
])
def test_checkpoint_fields_of_the_wrong_type_are_named(gunpoint_run, tmp_path, field, value,
                                                       message):
    path = _checkpoint_with(gunpoint_run, tmp_path, **{field: value})
    with pytest.raises(XaiError, match=message):
        load_checkpoint(path)


def test_nan_weights_are_refused_on_load(gunpoint_run, tmp_path):
    ckpt = torch.load(gunpoint_run / "checkpoint.pt", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.numel())
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.raises(XaiError, match=f"weights {key} hold NaN or infinite"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_integer_like_float_labels_are_one_class(tmp_path):
    X = np.random.default_rng(0).normal(size=(12, 8))
    np.savez(tmp_path / "d.npz", X=X, y=np.array(["1", "1.0", "2", "2.00"] * 3))
    dataset = load_dataset(dataset_spec(tmp_path / "d.npz"))
    assert dataset.class_names == ["1", "2"]
    np.savez(tmp_path / "f.npz", X=X, y=np.array([1.0, 2.0] * 6))
    assert load_dataset(dataset_spec(tmp_path / "f.npz")).class_names == ["1", "2"]
    (tmp_path / "d.csv").write_text("t0,t1,label\n1,2,1\n3,4,1.0\n5,6,2\n7,8,2.0\n1,1,1\n2,2,2\n"
                                    "3,3,1\n4,4,2\n")
    assert load_dataset(dataset_spec(tmp_path / "d.csv")).class_names == ["1", "2"]


def test_complex_inputs_are_refused(tmp_path):
    X = np.ones((4, 8, 1)) + 1j
    with pytest.raises(XaiError, match="complex"):
        as_series(X, "inputs", 1)
    with pytest.raises(XaiError, match="complex"):
        DataSplit(X, np.zeros(4))
    np.savez(tmp_path / "c.npz", X=X[:, :, 0], y=np.array(["a", "b"] * 2))
    with pytest.raises(XaiError, match="complex"):
        load_dataset(dataset_spec(tmp_path / "c.npz"))


def test_a_dataset_file_changed_since_training_is_detected(tmp_path):
    run = tmp_path / "run"
    small_train(tmp_path, run)
    spec = load_checkpoint(run / "checkpoint.pt")["dataset"]
    assert len(spec["sha256"]) == 64
    load_dataset(spec)  # unchanged: fine
    data = np.load(tmp_path / "toy.npz")
    np.savez(tmp_path / "toy.npz", X=data["X"] * 2, y=data["y"])
    with pytest.raises(XaiError, match="has changed since the run was trained"):
        load_dataset(spec)
    result = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2")
    assert result.exit_code == 1 and "has changed since the run was trained" in result.output
    old = {k: v for k, v in spec.items() if k not in ("sha256", "test_sha256")}
    assert len(load_dataset(old).train) > 0  # a checkpoint from before hashes still loads


# --- bounded work ----------------------------------------------------------------------------

def test_integrated_gradients_is_chunked_to_fit_memory_and_refuses_what_cannot_fit(monkeypatch):
    from xai_captum import passes
    from xai_captum.integrated import integrated_gradients
    from xaicore.models import devices

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20 * 2, 3))
    inputs, baselines = torch.randn(6, 20, 2), torch.zeros(6, 20, 2)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    whole = integrated_gradients(module, inputs, baselines, target, 16, "gausslegendre", None)
    row = 20 * 2 * 4 * passes.BYTES_FACTOR
    calls = []
    forward = module.forward
    monkeypatch.setattr(module, "forward", lambda x: calls.append(len(x)) or forward(x))
    monkeypatch.setattr(devices, "free_memory", lambda device: 2 * row * 2)  # two rows fit
    chunked = integrated_gradients(module, inputs, baselines, target, 16, "gausslegendre", None)
    assert_close(chunked, whole)
    assert max(calls) <= 2
    monkeypatch.setattr(devices, "free_memory", lambda device: row)  # not one row
    with pytest.raises(XaiError, match="needs about .* GiB per pass"):
        integrated_gradients(module, inputs, baselines, target, 16, "gausslegendre", None)


def test_a_confusion_matrix_of_many_classes_is_summarised(tmp_path):
    from xai_plots.training import MAX_MATRIX_CLASSES, ConfusionMatrix, most_confused

    n_classes = 400
    names = [f"c{i}" for i in range(n_classes)]
    rows = ["sample,true,predicted,correct"]
    for i in range(2 * n_classes):
        t = i % n_classes
        p = (t + 1) % n_classes if t < 10 else t  # classes 0..10 are the confused ones
        rows.append(f"{i},{names[t]},{names[p]},{int(t == p)}")
    (tmp_path / "test_predictions.csv").write_text("\n".join(rows) + "\n")
    paths = ConfusionMatrix().render([], tmp_path, run_dir=tmp_path, formats=("svg",))
    svg = paths[0].read_text()
    assert f"{MAX_MATRIX_CLASSES} most confused of {n_classes} classes" in svg
    assert paths[0].stat().st_size < 3_000_000
    matrix = np.eye(5, dtype=int)
    matrix[3, 1] = 4
    assert most_confused(matrix, 2).tolist() == [1, 3]


def test_gauss_legendre_steps_are_bounded_before_any_work():
    from xai_captum.integrated import path_points

    with pytest.raises(XaiError, match="gausslegendre takes at most 1024 steps"):
        path_points("gausslegendre", 20000)


def test_an_explainer_that_runs_out_of_memory_is_retried_on_halves_of_the_batch():
    from xaicore.explaining.base import BaseExplainer
    from xaicore.models.loaded import wrap_model

    calls: list[int] = []

    class Hungry(BaseExplainer):
        name = "hungry"

        def attribute(self, model, inputs, target, **opts):
            calls.append(len(inputs))
            if len(inputs) > 2:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                   "allocate 12800000000 bytes")
            return inputs * 2, {"row": inputs[:, 0, 0], "whole": [1, 2]}, model.module(inputs)

    model = wrap_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 3)),
                       n_classes=3, n_features=1)
    x = torch.randn(7, 5, 1)
    e = Hungry().explain(model, x, torch.zeros(7, dtype=torch.long))
    # doubling is exact and the halves' rows are concatenated as they are
    assert_identical(e.attributions, 2 * x.numpy())
    assert_identical(e.extras["row"], x[:, 0, 0].numpy())
    assert e.extras["whole"] == [1, 2] and calls == [7, 3, 1, 2, 4, 2, 2]  # halves until they fit

    class Hopeless(Hungry):
        def attribute(self, model, inputs, target, **opts):
            raise RuntimeError("can't allocate memory")

    with pytest.raises(XaiError, match="one series of 5 time steps x 1 features needs more memory"):
        Hopeless().explain(model, x, torch.zeros(7, dtype=torch.long))

    class Buggy(Hungry):
        def attribute(self, model, inputs, target, **opts):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # not retried
        Buggy().explain(model, x, torch.zeros(7, dtype=torch.long))


# --- ownership by marker, special files, resume of the same job ------------------------------

def test_a_folder_of_the_users_own_run_files_is_not_taken_for_a_run(tmp_path):
    """File names alone never make a folder xai's: the user's own checkpoint.pt, metrics.json,
    report.html and explanations/ stay, byte for byte, even with --force."""
    mine = tmp_path / "mine"
    theirs = {"checkpoint.pt": b"my weights", "metrics.json": b"{}", "history.csv": b"a\n",
              "report.html": b"<my report>", "explanations/my.csv": b"x\n"}
    for rel, data in theirs.items():
        (mine / rel).parent.mkdir(parents=True, exist_ok=True)
        (mine / rel).write_bytes(data)
    result = xai("train", "--dataset", toy_npz(tmp_path / "toy.npz"), "--model", "fcn",
                 "--out", mine, "--epochs", "1", "--force", "--quiet")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "holds files xai did not write (such as checkpoint.pt)" in result.output
    assert {rel: (mine / rel).read_bytes() for rel in theirs} == theirs
    assert sorted(p.name for p in mine.iterdir()) == ["checkpoint.pt", "explanations",
                                                      "history.csv", "metrics.json", "report.html"]


def test_a_marker_listing_a_file_through_a_link_out_of_the_run_deletes_nothing_outside(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    small_train(tmp_path, run)
    outside.mkdir()
    (outside / "thesis.tex").write_text("precious")
    (run / "link").symlink_to(outside)
    marker = json.loads((run / runs.MARKER).read_text())
    marker["files"] += ["link/thesis.tex", "../outside/thesis.tex", str(outside / "thesis.tex")]
    (run / runs.MARKER).write_text(json.dumps(marker))
    (run / "explanations").symlink_to(outside)  # and as results, in a linked results folder
    (run / files.STATE).mkdir(exist_ok=True)
    with open(run / files.STATE / files.LEDGER, "a") as ledger:
        ledger.write('"explanations/thesis.tex"\n"explanations/../link/thesis.tex"\n')
    small_train(tmp_path, run, force=True, seed=2)
    assert (outside / "thesis.tex").read_text() == "precious" and (run / "link").is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory"])
def test_an_out_that_is_not_a_regular_file_is_refused_even_with_force(gunpoint_run, tmp_path,
                                                                       kind):
    import socket

    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    outs = {}
    for command in ("report", "predict"):
        out = tmp_path / f"{command}-{kind}"
        if kind == "fifo":
            os.mkfifo(out)
        elif kind == "socket":
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(out))
            server.close()
        else:
            out.mkdir()
        outs[command] = out
    test = load_dataset({"name": "GunPoint"}).test
    np.savez(tmp_path / "new.npz", X=test.X[:3])
    for command, extra in (("report", []), ("predict", ["--input", tmp_path / "new.npz"])):
        out = outs[command]
        mode = os.lstat(out).st_mode
        result = xai(command, "--run", run, "--out", out, "--force", *extra)
        assert result.exit_code == 1, (command, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "regular file" in result.output or "is a directory" in result.output, result.output
        assert os.lstat(out).st_mode == mode  # still the FIFO, socket or folder it was
    assert temporaries(tmp_path) == []


def test_a_directory_where_the_lock_goes_is_one_line(gunpoint_run, tmp_path):
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    (run / files.LOCK).mkdir()
    result = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2")
    assert result.exit_code == 1 and "is a directory, not xai's lock file" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (run / "explanations").exists()


@pytest.fixture(scope="module")
def streamed(gunpoint_run, tmp_path_factory):
    """A copy of the shared run, a second run, and a store killed part way (200 of 600 rows)."""
    root = tmp_path_factory.mktemp("resume")
    run, other = root / "run", root / "other"
    shutil.copytree(gunpoint_run, run)
    shutil.copytree(gunpoint_run, other)
    ckpt = torch.load(other / "checkpoint.pt", weights_only=True)
    ckpt["state_dict"] = {k: v * 1.01 if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other / "checkpoint.pt")
    X = np.concatenate([load_dataset({"name": "GunPoint"}).test.X] * 4)
    np.save(root / "big.npy", X)
    return root, run, other, X


@pytest.mark.parametrize("change, message", [
    ("input", "the input data changed since"),
    ("input in place", "the input data changed since"),
    ("option", "the method's options changed since"),
    ("run", "the run's model changed since"),
])
def test_resume_continues_only_the_same_job(streamed, change, message):
    from xaicore.explaining.store import store_attrs

    root, run, other, X = streamed
    out = root / f"out-{change}"
    args = ["explain", "--run", run, "--input", root / "big.npy", "--method", "gradcam",
            "--batch-size", "100", "--out", out]
    assert xai(*args).exit_code == 0
    store = out / "gradcam.zarr"
    import zarr

    zarr.open_group(str(store), mode="r+").attrs.update({"complete": False, "rows_written": 200})
    changed = list(args)
    if change == "input":
        np.save(root / "edited.npy", X[::-1].copy())
        changed[changed.index(root / "big.npy")] = root / "edited.npy"
    elif change == "input in place":  # the same path, other rows
        source = root / "in-place.npy"
        np.save(source, X)
        args[args.index(root / "big.npy")] = changed[changed.index(root / "big.npy")] = source
        assert xai(*args, "--force").exit_code == 0
        zarr.open_group(str(store), mode="r+").attrs.update({"complete": False,
                                                              "rows_written": 200})
        edited = X.copy()
        edited[-1] += 1.0  # one value of the last row
        np.save(source, edited)
    elif change == "option":
        changed += ["--option", "gradcam.relu=false"]
    else:
        changed[changed.index(run)] = other
    result = xai(*changed, "--resume")
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert store_attrs(store)["rows_written"] == 200 and not store_attrs(store)["complete"]
    if change != "input in place":  # (there the old input is gone)
        assert xai(*args, "--resume").exit_code == 0  # the same job continues
        assert store_attrs(store)["complete"]


def test_every_result_records_the_digest_of_the_model_that_made_it(streamed):
    root, run, _, _ = streamed
    digest = files.file_digest(run / "checkpoint.pt")
    assert xai("explain", "--run", run, "--method", "saliency", "--samples", "0:3",
               "--force").exit_code == 0
    assert xai("explain", "--run", run, "--input", root / "big.npy", "--method", "gradcam",
               "--batch-size", "300", "--out", root / "digest", "--force").exit_code == 0
    assert Explanation.load(run / "explanations" / "saliency.npz").model_digest == digest
    assert load_explanation(root / "digest" / "gradcam.zarr").model_digest == digest
    assert "explanations/saliency.npz" in files.written(run)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs to fill (mounting needs root: skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` to the last ``leave`` bytes."""
    with open(disk / "filler", "ab") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError:
            pass
    with open(disk / "filler", "r+b") as handle:
        handle.truncate(max(0, (disk / "filler").stat().st_size - leave))


def test_a_full_disk_is_one_line_and_keeps_the_previous_complete_result(small_disk, tmp_path):
    data = toy_npz(tmp_path / "toy.npz", length=64)
    run = small_disk / "run"
    train_args = ["train", "--dataset", data, "--model", "fcn", "--out", run, "--epochs", "1",
                  "--quiet"]
    assert xai(*train_args).exit_code == 0
    assert xai("explain", "--run", run, "--method", "saliency", "--samples", "0:4").exit_code == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    np.save(tmp_path / "big.npy", np.random.default_rng(0).normal(size=(4000, 64)).astype("f4"))
    fill(small_disk)
    cases = {
        "train --force": [*train_args, "--force"],
        "train into a new folder": [*train_args[:-4], small_disk / "new", "--epochs", "1"],
        "explain": ["explain", "--run", run, "--method", "saliency", "--samples", "0:4",
                    "--force"],
        "streamed explain": ["explain", "--run", run, "--input", tmp_path / "big.npy",
                             "--method", "saliency", "--out", small_disk / "stores"],
        "report": ["report", "--run", run, "--force"],
        "predict": ["predict", "--run", run, "--input", data, "--out", small_disk / "p.csv"],
        "figures": ["figures", "--run", run],
        "evaluate": ["evaluate", "--run", run, "--method", "saliency", "--metric", "deletion",
                     "--samples", "4", "--workers", "1"],
    }
    for name, args in cases.items():
        result = xai(*args)
        assert result.exit_code == 1, (name, result.output)
        lines = result.output.strip().splitlines()  # progress lines, then the one error line
        assert [line for line in lines if line.startswith("Error")] == lines[-1:], lines
        assert "No space left on device" in lines[-1], (name, result.output)
        assert "MiB free there" in lines[-1] and "Traceback" not in result.output, name
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # every complete result as it was
    assert not (small_disk / "new").exists() and temporaries(small_disk) == []
    from xaicore.explaining.store import store_attrs

    store = small_disk / "stores" / "saliency.zarr"
    assert not store.exists() or not store_attrs(store)["complete"]  # incomplete, resumable


def test_more_bad_input_is_one_line_naming_the_file(gunpoint_run, tmp_path):
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "a-file").write_text("mine")
    huge = tmp_path / "huge"
    shutil.copytree(gunpoint_run, huge)
    ckpt = torch.load(huge / "checkpoint.pt", weights_only=True)
    ckpt["seq_len"] = 10**12
    torch.save(ckpt, huge / "checkpoint.pt")
    listed = tmp_path / "listed"
    shutil.copytree(gunpoint_run, listed)
    (listed / "metrics.json").write_text("[1, 2]")
    cases = [
        (["train", "--dataset", tmp_path / "junk.npz", "--out", tmp_path / "r1"],
         "junk.npz as npz arrays"),
        (["train", "--dataset", tmp_path / "empty.npz", "--out", tmp_path / "r2"],
         "empty.npz as npz arrays"),
        (["predict", "--run", run, "--input", tmp_path / "empty.npz"], "empty.npz as npz arrays"),
        (["explain", "--run", run, "--method", "saliency", "--out", tmp_path / "a-file"],
         "a-file exists and is not a folder"),
        (["explain", "--run", huge, "--method", "saliency"], "'seq_len' must be a positive int"),
        (["report", "--run", listed], "metrics.json must hold a JSON object"),
    ]
    for args, message in cases:
        result = xai(*args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Aborted" not in result.output
    assert (tmp_path / "a-file").read_text() == "mine"
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_target_text_names_a_class_first_and_spaces_do_not_change_it(gunpoint_run, tmp_path):
    """GunPoint's classes are named "1" and "2": ``--target 1`` and ``--target ' 1'`` are both the
    class named "1" (index 0); a bare index is read only when no class has that name."""
    run = tmp_path / "gp"
    shutil.copytree(gunpoint_run, run)
    targets = []
    for target in ("1", " 1", "1 ", "0"):
        out = tmp_path / f"t{len(targets)}"
        result = xai("explain", "--run", run, "--method", "saliency", "--samples", "0:3",
                     "--target", target, "--out", out)
        assert result.exit_code == 0, result.output
        targets.append(Explanation.load(next(out.glob("*.npz"))).targets.tolist())
    assert targets == [[0, 0, 0]] * 4


def test_a_read_only_run_is_one_line_and_nothing_claims_success(small_disk, gunpoint_run,
                                                                tmp_path):
    run = small_disk / "gp"
    shutil.copytree(gunpoint_run, run)
    assert xai("explain", "--run", run, "--method", "saliency", "--samples", "0:2").exit_code == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    test = load_dataset({"name": "GunPoint"}).test
    np.savez(tmp_path / "new.npz", X=test.X[:2])
    for args in (["explain", "--run", run, "--method", "saliency", "--samples", "0:2", "--force"],
                 ["explain", "--run", run, "--input", tmp_path / "new.npz", "--method",
                  "saliency"],
                 ["figures", "--run", run], ["report", "--run", run],
                 ["predict", "--run", run, "--input", tmp_path / "new.npz"],
                 ["train", "--resume", "--out", run, "--epochs", "40"]):
        result = xai(*args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Read-only file system" in lines[0], (args, result.output)
        assert "->" not in result.output and "Traceback" not in result.output


def test_a_users_own_dot_xai_folder_is_not_taken_for_xais_and_failures_leave_no_folders(
        tmp_path, monkeypatch):
    import xaicore.runs.training as training

    mine = tmp_path / "mine"
    (mine / files.STATE).mkdir(parents=True)
    (mine / files.STATE / "settings.toml").write_text("mine")
    with pytest.raises(XaiError, match=r"holds files xai did not write \(such as .xai\)"):
        small_train(tmp_path, mine, force=True)
    assert (mine / files.STATE / "settings.toml").read_text() == "mine"
    with pytest.raises(XaiError, match="unknown model|no model"):
        train(dataset_spec(toy_npz(tmp_path / "toy.npz")), "no-such-model",
              tmp_path / "a" / "b" / "run", epochs=1, progress=False)
    assert not (tmp_path / "a").exists()  # the folders it made on the way are gone again

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_render", interrupt)
    with pytest.raises(KeyboardInterrupt):
        small_train(tmp_path, tmp_path / "c" / "run")
    assert not (tmp_path / "c").exists()


def test_a_run_of_an_xai_before_ledgers_still_loses_its_old_results_on_force(tmp_path):
    """A format-1 marker (files only, no ledger): --force removes the old model's results by the
    rule that xai wrote them by, and still keeps the user's other files."""
    run = tmp_path / "run"
    small_train(tmp_path, run)
    marker = json.loads((run / runs.MARKER).read_text())
    (run / runs.MARKER).write_text(json.dumps({"format": 1, "files": marker["files"]}))
    old = ["explanations/gradcam.npz", "explanations/figures/a.png", "evaluation.csv",
           "report.html", "explanations/big/saliency.zarr/zarr.json"]
    for rel in old:
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("old")
    (run / "explanations" / "notes.md").write_text("mine")
    small_train(tmp_path, run, force=True, seed=1)
    assert not [rel for rel in old if (run / rel).exists()]
    assert not (run / "explanations" / "big" / "saliency.zarr").exists()
    assert (run / "explanations" / "notes.md").read_text() == "mine"
