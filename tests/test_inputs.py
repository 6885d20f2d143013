"""One input reader for predict and explain --input, with one rule for the labels in a file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from xaicore.cli import cli
from xaicore.data.inputs import class_indices, open_input
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.store import load_explanation

NAMES = ["1", "2"]  # GunPoint's classes


def commands(run, path, tmp_path):
    """``xai predict`` and ``xai explain --input --target true`` on the same file."""
    runner = CliRunner()
    predicted = runner.invoke(cli, ["predict", "--run", str(run), "--input", str(path), "--out",
                                    str(tmp_path / f"{path.stem}.csv")])
    explained = runner.invoke(cli, ["explain", "--run", str(run), "--input", str(path),
                                    "--method", "saliency", "--target", "true", "--out",
                                    str(tmp_path / path.stem)])
    return predicted, explained


def test_predict_and_explain_read_the_same_file_the_same_way(gunpoint_run, tmp_path):
    test = load_dataset({"name": "GunPoint"}).test
    X, y = test.X[:12], test.y[:12]
    ambiguous = tmp_path / "indices.npz"
    np.savez(ambiguous, X=X, y=y)  # 0/1: 1 is also the class name "1"
    for result in commands(gunpoint_run, ambiguous, tmp_path):
        assert result.exit_code == 1, result.output
        line = result.output.strip().splitlines()[-1]
        assert "read two ways" in line and "label '0' is no class" in line, line
        assert "label '1' is class '2'" in line and "Traceback" not in result.output
    said = tmp_path / "said.npz"
    np.savez(said, X=X, y=y, class_names=np.array(NAMES))
    named = tmp_path / "named.npz"
    np.savez(named, X=X, y=np.array(NAMES)[y])
    for path in (said, named):
        predicted, explained = commands(gunpoint_run, path, tmp_path)
        assert predicted.exit_code == 0 and explained.exit_code == 0, (predicted.output,
                                                                        explained.output)
        truth = [line.split(",")[2] for line in
                 (tmp_path / f"{path.stem}.csv").read_text().splitlines()[1:]]
        assert truth == [NAMES[i] for i in y]
        stored = load_explanation(tmp_path / path.stem / "saliency@true.zarr")
        np.testing.assert_array_equal(stored.labels[:], y)
        np.testing.assert_array_equal(stored.targets[:], y)


@pytest.mark.parametrize("labels, classes, expected", [
    (np.array([1, 2, 2]), NAMES, [0, 1, 1]),  # names: 2 is no index, so one reading
    (np.array(["2", "1"]), NAMES, [1, 0]),
    (np.array([0, 1, 1]), ["a", "b"], [0, 1, 1]),  # no label could be a name: indices
    (np.array([0, 1]), ["0", "1"], [0, 1]),  # both readings agree
    (np.array([1.0, 2.0]), NAMES, [0, 1]),  # 1.0 is the label 1
])
def test_labels_read_by_one_rule(labels, classes, expected):
    np.testing.assert_array_equal(class_indices(labels, classes, "f.npz"), expected)


def test_labels_that_read_two_ways_or_none_are_refused():
    with pytest.raises(XaiError, match="read two ways: as class names, label '1' is class '1'; "
                                       "as class indices, it is class '0'"):
        class_indices(np.array([1, 0]), ["0", "1"][::-1], "f.npz")
    with pytest.raises(XaiError, match="label 'c' is not a class of the model"):
        class_indices(np.array(["a", "c"]), ["a", "b"], "f.npz")
    with pytest.raises(XaiError, match="class index 2 but the file's class_names has 2 names"):
        class_indices(np.array([0, 2]), NAMES, "f.npz", ["x", "y"])
    with pytest.raises(XaiError, match="label 'y' is not a class"):
        class_indices(np.array([0, 1]), NAMES, "f.npz", ["1", "y"])


def test_a_file_with_class_names_maps_them_to_the_model_s_order():
    np.testing.assert_array_equal(class_indices(np.array([0, 1, 0]), NAMES, "f.npz", ["2", "1"]),
                                  [1, 0, 1])


def test_csv_inputs_with_a_label_column_and_padding(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("t0,t1,t2,label\n1,2,3,2\n4,5,,1\n")
    source = open_input(path, NAMES, seq_len=3)
    X, labels = source.read(0, 2)
    np.testing.assert_array_equal(labels, [1, 0])
    assert X.shape == (2, 3, 1) and np.isnan(X[1, 2, 0]) and X[1, 1, 0] == 5
    np.testing.assert_array_equal(source.read(1, 2)[0], X[1:])
    bad = tmp_path / "bad.csv"
    bad.write_text("t0,t1,t2\n1,x,3\n")
    with pytest.raises(XaiError, match="non-numeric cell 'x' at row 2, column 't1'"):
        open_input(bad, NAMES, seq_len=3).read(0, 1)


def test_npz_lengths_make_padding_in_streamed_rows(tmp_path):
    path = tmp_path / "var.npz"
    np.savez(path, X=np.ones((3, 5, 1)), lengths=np.array([5, 2, 3]))
    X, _ = open_input(path).read(1, 3)
    assert np.isnan(X[0, 2:]).all() and not np.isnan(X[0, :2]).any() and np.isnan(X[1, 3:]).all()


def test_a_long_format_run_trains_reloads_its_splits_and_reads_long_format_inputs(tmp_path):
    from test_datasets import FEATURES, long_signal, write_long
    from xaicore.models.checkpoints import load_checkpoint, load_run_data

    X, labels = long_signal(n=24, steps=8)
    data = write_long(tmp_path / "log.csv", X, labels)
    columns = ["--id-column", "sample_id", "--time-column", "time"]
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--dataset", str(data), *columns, "--model", "fcn",
                                 "--epochs", "30", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    spec = load_checkpoint(run / "checkpoint.pt")["dataset"]
    assert (spec["id_column"], spec["time_column"]) == ("sample_id", "time")
    model, dataset = load_run_data(run)
    assert model.feature_names == FEATURES and dataset.train.X.shape[1:] == (8, 3)
    assert load_dataset(spec).train.X.tolist() == dataset.train.X.tolist()

    new, new_labels = long_signal(n=6, steps=8, seed=1)
    unlabelled = write_long(tmp_path / "new.csv", new, new_labels)
    unlabelled.write_text("\n".join(line.rsplit(",", 1)[0]
                                    for line in unlabelled.read_text().splitlines()) + "\n")
    labelled = write_long(tmp_path / "labelled.csv", new, new_labels, [8, 8, 5, 8, 6, 8])
    out = tmp_path / "p.csv"
    result = runner.invoke(cli, ["predict", "--run", str(run), "--input", str(unlabelled),
                                 *columns, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 7 and "true" not in out.read_text().splitlines()[0]
    predicted, explained = commands_with(run, labelled, tmp_path, columns)
    assert predicted.exit_code == 0 and explained.exit_code == 0, predicted.output + explained.output
    with open(tmp_path / "predictions" / "labelled.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["true"] for r in rows} == {"down", "up"}
    saliency = load_explanation(tmp_path / "labelled" / "saliency@true.zarr")
    assert saliency.attributions.shape == (6, 8, 3) and saliency.feature_names == FEATURES
    padded = np.isnan(saliency.inputs).all(-1).sum(1)  # samples as their ids first occur
    assert sorted(padded.tolist()) == [0, 0, 0, 0, 2, 3]

    result = runner.invoke(cli, ["predict", "--run", str(run), "--input", str(labelled),
                                 "--out", str(tmp_path / "wide.csv")])
    assert result.exit_code != 0 and "--id-column" in result.output


def commands_with(run, path, tmp_path, columns: list[str]):
    """``xai predict`` and ``xai explain --input --target true`` on a long-format file."""
    runner = CliRunner()
    predicted = runner.invoke(cli, ["predict", "--run", str(run), "--input", str(path), *columns,
                                    "--out", str(tmp_path / "predictions" / f"{path.stem}.csv")])
    explained = runner.invoke(cli, ["explain", "--run", str(run), "--input", str(path), *columns,
                                    "--method", "saliency", "--target", "true", "--out",
                                    str(tmp_path / path.stem)])
    return predicted, explained
