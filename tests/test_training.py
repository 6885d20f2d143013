"""Training runs, checkpoints, reproducibility, prediction and the train/predict commands."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tolerances import assert_close
from xaicore import files
from xaicore.cli import cli
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.errors import XaiError
from xaicore.models.checkpoints import load_checkpoint, load_run
from xaicore.runs.predicting import predict
from xaicore.runs.training import BASE_RECIPE, recipe_for, train

SMALL = {"cnn_channels": 4, "lstm_hidden_size": 4, "lstm_num_layers": 1, "num_heads": 2}
RUN_FILES = ["checkpoint.pt", "history.csv", "metrics.json", "classification_report.txt",
             "classification_report.json", "test_predictions.csv", "training_curves.png",
             "training_curves.svg", "training_curves.eps", "confusion_matrix.png",
             "confusion_matrix.svg"]


def toy_npz(path: Path, n: int = 24, length: int = 16, seed: int = 0) -> Path:
    """Two classes told apart by a bump in the first or the second half."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(scale=0.3, size=(n, length))
    for i, c in enumerate(y):
        X[i, 2 + c * length // 2: 6 + c * length // 2] += 2
    np.savez(path, X=X, y=np.where(y == 1, "late", "early"))
    return path


def small_train(tmp_path: Path, out: str = "run", **kwargs):
    spec = dataset_spec(toy_npz(tmp_path / "toy.npz"))
    options = {"epochs": 2, "params": SMALL, "progress": False, **kwargs}
    return train(spec, "cnn-lstm-attention", tmp_path / out, **options)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def leftovers(folder: Path) -> list[str]:
    """Temporaries and locks anywhere below ``folder``."""
    return [p.name for p in folder.rglob(".*")
            if files.is_temporary(p.name) or p.name == files.LOCK]


# --- the shared GunPoint run ----------------------------------------------------------------

def test_run_directory_is_complete_and_consistent(gunpoint_run):
    for name in RUN_FILES:
        assert (gunpoint_run / name).is_file() and (gunpoint_run / name).stat().st_size > 0, name
    metrics = json.loads((gunpoint_run / "metrics.json").read_text())
    assert {"test_accuracy", "train_accuracy", "epochs", "seconds"} <= set(metrics)
    assert metrics["notes"] == []
    history = rows(gunpoint_run / "history.csv")
    assert len(history) == metrics["epochs"]
    assert float(history[-1]["test_accuracy"]) == pytest.approx(metrics["test_accuracy"])
    predictions = rows(gunpoint_run / "test_predictions.csv")
    assert len(predictions) == 150
    correct = np.mean([r["true"] == r["predicted"] for r in predictions])
    assert correct == pytest.approx(metrics["test_accuracy"])
    report = json.loads((gunpoint_run / "classification_report.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert sum(report[c]["support"] for c in ("1", "2")) == 150


def test_checkpoint_holds_only_plain_data_and_the_train_statistics(gunpoint_run):
    ckpt = torch.load(gunpoint_run / "checkpoint.pt", weights_only=True)
    for key in ("format", "model", "hyperparameters", "state_dict", "class_names",
                "feature_names", "seq_len", "normalisation", "dataset", "optimizer",
                "scheduler", "epoch", "seed"):
        assert key in ckpt, key
    assert ckpt["format"] == 1 and ckpt["model"] == "cnn-lstm-attention"
    assert ckpt["class_names"] == ["1", "2"] and ckpt["seq_len"] == 150
    assert ckpt["dataset"] == {"name": "GunPoint"}

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (torch.Tensor, int, float, str, bool))

    assert plain(ckpt)
    X = load_dataset(ckpt["dataset"]).train.X
    # moments of float32 values: float32 error of the values' scale, however small the mean
    scale = float(np.abs(X).max())
    assert_close(ckpt["normalisation"]["mean"], X.mean(axis=(0, 1)), scale=scale)
    assert_close(ckpt["normalisation"]["std"], X.std(axis=(0, 1)), scale=scale)


def test_loaded_run_reproduces_the_recorded_test_predictions(gunpoint_run):
    model = load_run(gunpoint_run)
    test = load_dataset({"name": "GunPoint"}).test
    predicted = [model.class_names[i] for i in model.predict_proba(test.X).argmax(1)]
    assert predicted == [r["predicted"] for r in rows(gunpoint_run / "test_predictions.csv")]


def test_predict_writes_classes_and_probabilities(gunpoint_run, tmp_path):
    test = load_dataset({"name": "GunPoint"}).test
    header = ",".join(f"t{i}" for i in range(150))
    lines = [",".join(f"{v:.6f}" for v in x[:, 0]) for x in test.X[:10]]
    labelled = tmp_path / "labelled.csv"
    labelled.write_text(header + ",label\n" + "\n".join(
        f"{line},{['1', '2'][y]}" for line, y in zip(lines, test.y[:10])) + "\n")
    bare = tmp_path / "bare.csv"
    bare.write_text(header + "\n" + "\n".join(lines) + "\n")
    out = predict(gunpoint_run, labelled, tmp_path / "p1.csv")
    first = rows(out)
    assert len(first) == 10 and [r["true"] for r in first] == [["1", "2"][y] for y in test.y[:10]]
    for r in first:
        probs = {c: float(r[f"prob_{c}"]) for c in ("1", "2")}
        assert_close(sum(probs.values()), 1.0)
        assert r["predicted"] == max(probs, key=probs.get)
    second = rows(predict(gunpoint_run, bare, tmp_path / "p2.csv"))
    assert [r["predicted"] for r in second] == [r["predicted"] for r in first]
    assert "true" not in second[0]
    with pytest.raises(XaiError, match="already exists"):
        predict(gunpoint_run, bare, tmp_path / "p2.csv")


def test_predict_refuses_wrong_length_and_channel_count(gunpoint_run, tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(XaiError, match="length 150"):
        predict(gunpoint_run, short, tmp_path / "p.csv")
    np.savez(tmp_path / "multi.npz", X=np.zeros((2, 150, 3)))
    with pytest.raises(XaiError, match="3 feature"):
        predict(gunpoint_run, tmp_path / "multi.npz", tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_checkpoint_with_pickled_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran.txt"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    run = tmp_path / "evil"
    run.mkdir()
    torch.save({"format": 1, "model": "cnn-lstm-attention", "hyperparameters": Payload(),
                "state_dict": {}, "class_names": ["a", "b"], "feature_names": ["value"],
                "seq_len": 8}, run / "checkpoint.pt")
    with pytest.raises(XaiError, match="nothing in it ran"):
        load_run(run)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(run / "checkpoint.pt", weights_only=True)
    torch.load(run / "checkpoint.pt", weights_only=False)  # the unsafe load would have run it
    assert marker.exists()


# --- small runs on a toy dataset ------------------------------------------------------------

def test_same_seed_gives_the_same_weights_and_metrics(tmp_path):
    a = small_train(tmp_path, "a", seed=5)
    b = small_train(tmp_path, "b", seed=5)
    small_train(tmp_path, "c", seed=6)
    wa, wb, wc = (load_checkpoint(tmp_path / r / "checkpoint.pt")["state_dict"] for r in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    drop = ("seconds",)
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert rows(tmp_path / "a" / "history.csv")[-1]["train_loss"] == \
        rows(tmp_path / "b" / "history.csv")[-1]["train_loss"]


def test_force_into_the_current_directory(tmp_path, monkeypatch):
    small_train(tmp_path)
    monkeypatch.chdir(tmp_path / "run")
    spec = dataset_spec(str(tmp_path / "toy.npz"))
    metrics = train(spec, "cnn-lstm-attention", ".", epochs=2, params=SMALL, progress=False,
                    force=True, seed=2)
    assert metrics["seed"] == 2 and (tmp_path / "run" / "checkpoint.pt").is_file()
    assert leftovers(tmp_path) == []


def test_a_failure_part_way_leaves_nothing(tmp_path, monkeypatch):
    import xaicore.runs.training as training

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(training, "write_predictions", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        small_train(tmp_path)
    assert not (tmp_path / "run").exists() and leftovers(tmp_path) == []
    with pytest.raises(XaiError, match="no parameter 'bogus'"):
        small_train(tmp_path, params={"bogus": 1})
    assert not (tmp_path / "run").exists() and leftovers(tmp_path) == []


def test_resume_continues_from_the_saved_state(tmp_path):
    small_train(tmp_path, epochs=2, seed=3)
    first = rows(tmp_path / "run" / "history.csv")
    spec = dataset_spec(tmp_path / "toy.npz")
    metrics = train(spec, "cnn-lstm-attention", tmp_path / "run", epochs=4, resume=True,
                    progress=False)
    history = rows(tmp_path / "run" / "history.csv")
    assert metrics["epochs"] == 4 and len(history) == 4
    assert history[:2] == first
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 4
    results = {"explanations/gradcam.npz": b"r", "evaluation.csv": b"e", "report.html": b"h",
               "predictions/new.csv": b"p", "evaluation/curves.json": b"c"}
    for name, data in results.items():
        (tmp_path / "run" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "run" / name).write_bytes(data)
    train(spec, "cnn-lstm-attention", tmp_path / "run", epochs=5, resume=True, progress=False)
    for name, data in results.items():  # resuming touches only the training files
        assert (tmp_path / "run" / name).read_bytes() == data, name
    assert leftovers(tmp_path) == []
    with pytest.raises(XaiError, match="already trained 5 epochs"):
        train(spec, "cnn-lstm-attention", tmp_path / "run", epochs=4, resume=True, progress=False)


def test_train_and_predict_commands(tmp_path):
    toy_npz(tmp_path / "toy.npz")
    runner = CliRunner()
    args = ["train", "--dataset", str(tmp_path / "toy.npz"), "--out", str(tmp_path / "r"),
            "--epochs", "2", "--quiet", "--param", "cnn_channels=4", "--param",
            "lstm_hidden_size=4", "--param", "num_heads=2"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    hyper = load_checkpoint(tmp_path / "r" / "checkpoint.pt")["hyperparameters"]
    assert hyper["cnn_channels"] == 4 and hyper["num_heads"] == 2
    again = runner.invoke(cli, args)
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    result = runner.invoke(cli, ["predict", "--run", str(tmp_path / "r"), "--input",
                                 str(tmp_path / "toy.npz"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert len(rows(tmp_path / "p.csv")) == 24


def test_bad_input_gives_one_line_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--dataset", "GunPiont", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "Did you mean GunPoint" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("t0,t1,label\n1,2,a\n3,oops,b\n")
    result = runner.invoke(cli, ["train", "--dataset", str(bad), "--out", str(tmp_path / "y")])
    assert result.exit_code == 1 and "non-numeric cell 'oops' at row 3" in result.output
    result = runner.invoke(cli, ["train", "--dataset", "GunPoint", "--out", str(tmp_path / "z"),
                                 "--param", "oops"])
    assert result.exit_code == 1 and "KEY=VALUE" in result.output
    assert not any(p.name in ("x", "y", "z") for p in tmp_path.iterdir())
    assert "Traceback" not in result.output


def test_cli_import_does_not_import_torch():
    code = "import sys, xaicore.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_run_figures_refuse_a_folder_that_is_not_a_run(tmp_path):
    from xai_plots.training import ConfusionMatrix, TrainingCurves

    with pytest.raises(XaiError, match="no history.csv"):
        TrainingCurves().render([], tmp_path, run_dir=tmp_path)
    (tmp_path / "test_predictions.csv").write_text("sample,true,predicted\n0,a,zzz\n")
    (tmp_path / "metrics.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    with pytest.raises(XaiError, match="zzz"):
        ConfusionMatrix().render([], tmp_path, run_dir=tmp_path)
    assert not list(tmp_path.glob("*.png"))


def test_param_values_go_through_the_models_declared_options(tmp_path):
    toy_npz(tmp_path / "toy.npz")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--dataset", str(tmp_path / "toy.npz"), "--out",
                                 str(tmp_path / "r"), "--param", "dropout=2"])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == ("Error: model cnn-lstm-attention: option 'dropout' must be "
                                     "in [0, 1], not 2.0")
    assert not (tmp_path / "r").exists()
    listed = runner.invoke(cli, ["list", "--options", "cnn-lstm-attention"])
    assert listed.exit_code == 0, listed.output
    assert "dropout (float, default 0.0 in [0, 1]): dropout between LSTM layers" in listed.output


def test_the_training_recipe_is_declared_options_a_model_overrides():
    class Net:
        training_defaults = {"epochs": 7, "scheduler": "cosine"}

    assert recipe_for(Net) == {**BASE_RECIPE, "epochs": 7, "scheduler": "cosine"}
    assert recipe_for(Net, epochs=3, lr=None)["epochs"] == 3
    with pytest.raises(XaiError, match="training: unknown scheduler 'warm'; it must be one of step"):
        recipe_for(Net, scheduler="warm")
    with pytest.raises(XaiError, match=r"option 'batch_size' must be in \[1, 1000000\], not 0"):
        recipe_for(Net, batch_size=0)

    class Bad:
        training_defaults = {"epoch": 7}

    with pytest.raises(XaiError, match="training recipe of Bad has no option 'epoch' "
                                       r"\(did you mean epochs\?\)"):
        recipe_for(Bad)
    listed = CliRunner().invoke(cli, ["list", "--options", "transformer"])
    assert listed.exit_code == 0, listed.output
    assert "training recipe of transformer:" in listed.output
    assert "  epochs (int, default 200 in [1, 100000]): training epochs" in listed.output
    assert "weight_decay (float, default 0.01" in listed.output
