"""Datasets: aeon's shipped UCR/UEA sets, CSV and npz files, seeded splits and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tolerances import assert_identical
from xaicore.data.loading import class_order, dataset_spec, load_dataset
from xaicore.errors import UnknownNameError, XaiError


def write_csv(path: Path, rows: list[list], header: list[str] | None = None) -> Path:
    width = len(rows[0]) if rows else 3
    header = header or [f"t{i}" for i in range(width - 1)] + ["label"]
    lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def toy_rows(n_per_class: int = 6, length: int = 5, classes=("a", "b")) -> list[list]:
    rng = np.random.default_rng(1)
    return [[*np.round(rng.normal(size=length) + 3 * k, 4), c]
            for k, c in enumerate(classes) for _ in range(n_per_class)]


# --- aeon ---------------------------------------------------------------------------------------

def test_gunpoint_is_the_shipped_split_in_ntf_layout():
    from aeon.datasets import load_classification

    ds = load_dataset(dataset_spec("GunPoint"))
    X_raw, y_raw = load_classification("GunPoint", split="train")
    assert ds.train.X.shape == (50, 150, 1) and ds.test.X.shape == (150, 150, 1)
    assert ds.class_names == ["1", "2"]
    assert_identical(ds.train.X[:, :, 0], X_raw[:, 0, :].astype(np.float32))  # only cast
    assert [ds.class_names[i] for i in ds.train.y] == [str(v) for v in y_raw]


def test_multivariate_series_are_transposed_to_time_then_feature():
    from aeon.datasets import load_classification

    ds = load_dataset({"name": "BasicMotions"})
    X_raw, _ = load_classification("BasicMotions", split="test")
    assert ds.test.X.shape == (40, 100, 6) and ds.n_features == 6
    assert_identical(ds.test.X, X_raw.transpose(0, 2, 1).astype(np.float32))  # only cast
    assert ds.class_names == sorted(ds.class_names) and len(ds.feature_names) == 6


def test_numeric_labels_sort_as_numbers():
    assert class_order(["10", "2", "1"]) == ["1", "2", "10"]
    assert class_order(["b", "a", "10"]) == ["10", "a", "b"]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="GunPoint"):
        dataset_spec("GunPiont")


@pytest.mark.parametrize("name", ["JapaneseVowels", "PickupGestureWiimoteZ"])
def test_variable_length_datasets_load_padded_with_their_lengths(name):
    from aeon.datasets import load_from_ts_file

    from xai_aeon.loader import data_dir

    ds = load_dataset({"name": name})
    assert ds.variable_length and ds.train.X.shape[1] == ds.test.X.shape[1]
    for split, part in ((ds.train, "TRAIN"), (ds.test, "TEST")):
        series, _ = load_from_ts_file(str(data_dir() / name / f"{name}_{part}.ts"))
        assert split.lengths.tolist() == [x.shape[-1] for x in series]
        for i in (0, len(series) - 1):  # values as aeon reads them, NaN after the end
            L = series[i].shape[-1]
            assert_identical(split.X[i, :L], series[i].T.astype(np.float32))
            assert np.isnan(split.X[i, L:]).all()


def test_regression_datasets_are_refused_clearly():
    with pytest.raises(XaiError, match="regression"):
        load_dataset({"name": "Covid3Month"})


def test_aeon_loader_never_downloads():
    from xai_aeon import loader

    with pytest.raises(XaiError, match="not shipped"):
        loader.load("FordA")  # a real UCR name that aeon would download


# --- CSV ----------------------------------------------------------------------------------------

def test_csv_rows_are_univariate_series_named_by_the_header(tmp_path):
    path = write_csv(tmp_path / "d.csv", toy_rows(8, 5), ["s0", "s1", "s2", "s3", "s4", "class"])
    ds = load_dataset(dataset_spec(path))
    assert ds.seq_len == 5 and ds.n_features == 1 and ds.feature_names == ["value"]
    assert ds.info["time_names"] == ["s0", "s1", "s2", "s3", "s4"]
    assert ds.info["label_column"] == "class" and ds.class_names == ["a", "b"]
    assert len(ds.train) + len(ds.test) == 16


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    path = write_csv(tmp_path / "d.csv", toy_rows(20, 4, ("x", "y", "z")))
    a = load_dataset(dataset_spec(path, seed=3))
    b = load_dataset(dataset_spec(path, seed=3))
    c = load_dataset(dataset_spec(path, seed=4))
    assert_identical(a.test.X, b.test.X)  # the same seed draws the same split
    assert not np.array_equal(a.test.X, c.test.X)
    assert np.bincount(a.test.y).tolist() == [5, 5, 5]  # 25 % of each class
    rows = {tuple(r) for r in a.train.X[:, :, 0].round(4)}
    assert not rows & {tuple(r) for r in a.test.X[:, :, 0].round(4)}


def test_test_file_gives_the_test_split(tmp_path):
    train = write_csv(tmp_path / "train.csv", toy_rows(4, 3))
    test = write_csv(tmp_path / "test.csv", toy_rows(2, 3))
    ds = load_dataset(dataset_spec(train, test=test))
    assert len(ds.train) == 8 and len(ds.test) == 4


@pytest.mark.parametrize("cell, message", [("nan", "NaN"), ("abc", "non-numeric cell 'abc'"),
                                           ("", "empty cell")])
def test_bad_cells_name_file_row_and_column(tmp_path, cell, message):
    rows = toy_rows(3, 3)
    rows[2][1] = cell
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(XaiError, match=message) as info:
        load_dataset(dataset_spec(path))
    assert "bad.csv" in str(info.value) and "row 4" in str(info.value) and "'t1'" in str(info.value)


def test_ragged_rows_are_refused(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("t0,t1,label\n1,2,a\n1,2,3,b\n")
    with pytest.raises(XaiError, match="ragged rows: row 3 has 4 cells"):
        load_dataset(dataset_spec(path))


def test_single_class_and_unseen_test_labels_are_refused(tmp_path):
    one = write_csv(tmp_path / "one.csv", toy_rows(4, 3, ("a",)))
    with pytest.raises(XaiError, match="at least two classes"):
        load_dataset(dataset_spec(one))
    train = write_csv(tmp_path / "train.csv", toy_rows(4, 3, ("a", "b")))
    test = write_csv(tmp_path / "test.csv", toy_rows(2, 3, ("a", "c")))
    with pytest.raises(XaiError, match="'c' do not occur in the training data"):
        load_dataset(dataset_spec(train, test=test))


def test_missing_files_and_misplaced_test_are_refused(tmp_path):
    with pytest.raises(XaiError, match="no dataset file"):
        dataset_spec(tmp_path / "nope.csv")
    with pytest.raises(XaiError, match="--test only goes with"):
        dataset_spec("GunPoint", test=tmp_path / "t.csv")


# --- npz ----------------------------------------------------------------------------------------

def test_npz_multivariate_with_test_split_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.normal(size=(12, 7, 3)), y=np.arange(12) % 3,
             X_test=rng.normal(size=(6, 7, 3)), y_test=np.arange(6) % 3,
             class_names=np.array(["lo", "mid", "hi"]), feature_names=np.array(["x", "y", "z"]))
    ds = load_dataset(dataset_spec(path))
    assert ds.class_names == ["lo", "mid", "hi"] and ds.feature_names == ["x", "y", "z"]
    assert ds.train.X.shape == (12, 7, 3) and ds.test.X.shape == (6, 7, 3)
    assert ds.train.y.tolist() == (np.arange(12) % 3).tolist()


def test_npz_2d_is_univariate_and_split_when_no_test(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(80, dtype=float).reshape(16, 5), y=np.repeat(["p", "q"], 8))
    ds = load_dataset(dataset_spec(path, test_size=0.5))
    assert ds.n_features == 1 and len(ds.test) == 8


def test_npz_with_pickled_objects_or_nan_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(XaiError, match="pickled"):
        load_dataset(dataset_spec(path))
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(4) % 2)
    with pytest.raises(XaiError, match="sample 2, time step 1"):
        load_dataset(dataset_spec(tmp_path / "nan.npz"))


def test_parsed_ts_files_are_cached_until_the_file_or_cache_changes(tmp_path, monkeypatch):
    import os
    import shutil

    from xai_aeon import loader

    monkeypatch.setenv("XAI_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "GunPoint_TRAIN.ts"
    shutil.copy(loader.data_dir() / "GunPoint" / "GunPoint_TRAIN.ts", source)
    parsed, real = [], loader._parse
    monkeypatch.setattr(loader, "_parse", lambda path, name: parsed.append(path) or real(path, name))
    first = loader._read(source, "GunPoint")
    again = loader._read(source, "GunPoint")
    assert len(parsed) == 1
    for a, b in zip(first[:2], again[:2]):
        assert_identical(a, b)  # the cached arrays are the parsed ones
    assert first[2] == again[2] == {"classlabel": True, "univariate": True}
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed
    loader._read(source, "GunPoint")
    assert len(parsed) == 2
    cached = loader.cache_file(source)
    for damage in (b"not an npz", cached.read_bytes()[:2000]):  # any damage: parsed again
        cached.write_bytes(damage)
        X, _, _ = loader._read(source, "GunPoint")
        assert_identical(X, first[0])
    assert len(parsed) == 4


def test_a_cached_dataset_loads_without_importing_aeons_readers(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import sys; from xaicore.data.loading import load_dataset; "
            "d = load_dataset('GunPoint'); print(d.train.X.shape, 'aeon.datasets' in sys.modules)")
    env = {**os.environ, "XAI_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(2)]
    assert runs[0][-1] == "True" and runs[1][-1] == "False"
    assert runs[0][:-1] == runs[1][:-1]


# --- long-format CSV ----------------------------------------------------------------------------

FEATURES = ["acc_x", "acc_y", "acc_z"]


def long_signal(n: int = 12, steps: int = 6, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``[n, steps, 3]`` noise where the label ("up"/"down") is the sign of acc_y's mean."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(scale=0.5, size=(n, steps, 3)), 4)
    labels = ["up" if i % 2 else "down" for i in range(n)]
    X[:, :, 1] += np.where(np.arange(n) % 2, 2.0, -2.0)[:, None]
    return X, labels


def write_long(path: Path, X: np.ndarray, labels: list[str], lengths: list[int] | None = None,
               seed: int = 0) -> Path:
    """One row per sample and time step, in shuffled order (time = 10 * step, not the row order)."""
    lengths = lengths or [X.shape[1]] * len(X)
    rows = [[f"s{i}", 10 * t, *X[i, t], labels[i]] for i in range(len(X)) for t in range(lengths[i])]
    order = np.random.default_rng(seed).permutation(len(rows))
    return write_csv(path, [rows[k] for k in order], ["sample_id", "time", *FEATURES, "label"])


def long_spec(path: Path, **kwargs) -> dict:
    return dataset_spec(path, id_column="sample_id", time_column="time", **kwargs)


def test_long_format_csv_reads_back_the_written_series(tmp_path):
    X, labels = long_signal()
    train = write_long(tmp_path / "log.csv", X, labels)
    test = write_long(tmp_path / "test.csv", X[:4], labels[:4], seed=1)
    ds = load_dataset(long_spec(train, test=test))
    assert ds.feature_names == FEATURES and ds.class_names == ["down", "up"]
    order = [int(s[1:]) for s in ds.info["sample_ids"]]  # samples as their ids first occur
    assert sorted(order) == list(range(len(X)))
    np.testing.assert_array_equal(ds.train.X, X[order].astype(np.float32))  # the numbers written
    assert [ds.class_names[c] for c in ds.train.y] == [labels[i] for i in order]
    assert sorted(map(tuple, ds.test.X.reshape(4, -1))) == \
        sorted(map(tuple, X[:4].astype(np.float32).reshape(4, -1)))


def test_long_format_samples_of_different_lengths_are_nan_padded(tmp_path):
    X, labels = long_signal(n=8, steps=5)
    lengths = [5, 3, 4, 5, 2, 5, 3, 4]
    train = write_long(tmp_path / "train.csv", X, labels, lengths)
    test = write_long(tmp_path / "test.csv", X[:4], labels[:4], [2, 2, 3, 3], seed=1)
    ds = load_dataset(long_spec(train, test=test))
    assert ds.variable_length and ds.train.X.shape == (8, 5, 3) and ds.test.X.shape == (4, 5, 3)
    for i, n in enumerate(lengths):
        k = ds.info["sample_ids"].index(f"s{i}")
        np.testing.assert_array_equal(ds.train.X[k, :n], X[i, :n].astype(np.float32))
        assert np.isnan(ds.train.X[k, n:]).all()
    assert sorted(np.isnan(ds.test.X[:, :, 0]).sum(1).tolist()) == [2, 2, 3, 3]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.__setitem__(3, [*r[3][:5], "up" if r[3][5] == "down" else "down"]),
     r"sample 's\d+' has the label '\w+' at row (5 but '\w+' at row \d+|\d+ but '\w+' at row 5) "
     r"\(column 'label'\)"),
    (lambda r: r.__setitem__(3, [r[2][0], r[2][1], *r[3][2:]]),
     r"row 5 repeats sample 's\d+' at time \d+ of row 4 \(column 'time'\)"),
    (lambda r: r.__setitem__(3, [*r[3][:3], "x", *r[3][4:]]),
     r"non-numeric cell 'x' at row 5, column 'acc_y'"),
    (lambda r: r.__setitem__(3, [*r[3][:4], "", r[3][5]]),
     r"an empty cell at row 5, column 'acc_z'"),
])
def test_long_format_errors_name_the_row_and_column(tmp_path, edit, message):
    X, labels = long_signal(n=4, steps=3)
    path = write_long(tmp_path / "log.csv", X, labels)
    lines = [line.split(",") for line in path.read_text().splitlines()]
    rows = lines[1:]
    edit(rows)
    write_csv(path, rows, lines[0])
    with pytest.raises(XaiError, match=message) as info:
        load_dataset(long_spec(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_long_format_columns_must_exist_and_go_together(tmp_path):
    X, labels = long_signal(n=4, steps=3)
    path = write_long(tmp_path / "log.csv", X, labels)
    with pytest.raises(XaiError, match=r"log.csv has no column 'id' \(--id-column\); its columns "
                                       r"are sample_id, time, acc_x"):
        load_dataset(dataset_spec(path, id_column="id", time_column="time"))
    with pytest.raises(XaiError, match="has no column 'class' \\(--label-column\\)"):
        load_dataset(long_spec(path, label_column="class"))
    with pytest.raises(XaiError, match="needs both --id-column and --time-column"):
        dataset_spec(path, id_column="sample_id")
    with pytest.raises(XaiError, match="--label-column goes with --id-column"):
        dataset_spec(path, label_column="label")


def test_a_named_label_column_need_not_be_last(tmp_path):
    path = write_csv(tmp_path / "log.csv", [[c, "s0", t, 1.5 * t] for t in range(3) for c in "a"]
                     + [["b", "s1", t, -t] for t in range(3)] + [["a", "s2", 0, 4.0]]
                     + [["b", "s3", 0, 2.0]], ["label", "id", "step", "x"])
    ds = load_dataset({"name": str(path), "id_column": "id", "time_column": "step",
                       "label_column": "label", "test_size": 0.5})
    assert ds.feature_names == ["x"] and ds.class_names == ["a", "b"]
    assert ds.info["sample_ids"] == ["s0", "s1", "s2", "s3"] and ds.seq_len == 3


def test_a_wide_read_of_a_long_format_table_is_refused(tmp_path):
    X, labels = long_signal(n=4, steps=3)
    path = write_long(tmp_path / "log.csv", X, labels)
    with pytest.raises(XaiError, match=r"log.csv looks like a long-format table \(one row per "
                                       r"sample and time step: column '(sample_id|time)' "
                                       r"repeats\); give --id-column and --time-column"):
        load_dataset(dataset_spec(path))
    unique = write_csv(tmp_path / "ids.csv", [[i, *row] for i, row in enumerate(toy_rows(4, 3))],
                       ["ID", "t0", "t1", "t2", "label"])  # one id per row: a wide table
    assert load_dataset(dataset_spec(unique)).train.X.shape[1:] == (4, 1)
