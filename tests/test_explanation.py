"""The Explanation result type: shapes, aggregation, data frames, and the .npz round trip."""

import json
import zipfile

import numpy as np
import pytest

from tolerances import assert_close
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation


def make(n=4, t=10, f=3, c=2, seed=0, **kw):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), size=n)
    return Explanation(rng.normal(size=(n, t, f)), rng.normal(size=(n, t, f)),
                       targets=probs.argmax(1), predictions=probs.argmax(1), probabilities=probs,
                       method="test", **kw)


def test_defaults_and_shapes():
    e = make()
    assert e.attributions.dtype == np.float32 and e.attributions.shape == (4, 10, 3)
    assert e.class_names == ["0", "1"] and e.feature_names == ["feature_0", "feature_1", "feature_2"]
    assert (e.labels == -1).all() and list(e.sample_ids) == [0, 1, 2, 3]


@pytest.mark.parametrize("kwargs, message", [
    ({"attributions": np.zeros((4, 10))}, "sample, time, feature"),
    ({"inputs": np.zeros((4, 10, 2))}, "same shape"),
    ({"targets": [0, 1, 5, 0]}, "out of range"),
    ({"class_names": ["a"]}, "class names"),
    ({"predictions": [0, 1]}, "one value per sample"),
])
def test_invalid_construction_is_refused(kwargs, message):
    base = make()
    fields = dict(attributions=base.attributions, inputs=base.inputs, targets=base.targets,
                  predictions=base.predictions, probabilities=base.probabilities, method="m")
    fields.update(kwargs)
    with pytest.raises(XaiError, match=message):
        Explanation(**fields)


def test_aggregate_matches_numpy():
    e = make()
    a = e.attributions.astype(np.float64)
    assert_close(e.aggregate("time", "sum"), a.sum(1))
    assert_close(e.aggregate("time", "abs_sum"), np.abs(a).sum(1))
    assert_close(e.aggregate("feature", "mean"), a.mean(2))
    assert_close(e.aggregate(("sample", "time"), "abs_mean"), np.abs(a).mean((0, 1)))
    # signed sums cancel, magnitudes do not: the captum thread's question
    assert (e.aggregate("time", "abs_sum") >= np.abs(e.aggregate("time", "sum"))).all()
    with pytest.raises(XaiError, match="over must"):
        e.aggregate("channel")
    with pytest.raises(XaiError, match="how must"):
        e.aggregate("time", "median")


def test_dataframe_is_long_form():
    e = make(class_names=["gun", "point"], feature_names=["x", "y", "z"])
    df = e.to_dataframe()
    assert len(df) == 4 * 10 * 3
    row = df[(df["sample"] == 2) & (df["time"] == 7) & (df["feature"] == "y")].iloc[0]
    # the same numbers, copied
    assert row["attribution"] == float(e.attributions[2, 7, 1])
    assert row["input"] == float(e.inputs[2, 7, 1])
    assert row["target"] == e.class_names[e.targets[2]]


def test_save_load_round_trip(tmp_path):
    e = make(class_names=["gun", "point"], feature_names=["x", "y", "z"], labels=[1, 0, 1, 1],
             sample_ids=[10, 11, 12, 13], options={"n_steps": 50},
             extras={"delta": np.arange(4.0), "expected_value": [0.5, -0.5]})
    path = e.save(tmp_path / "ig.npz")
    with np.load(path, allow_pickle=False) as data:
        assert {"attributions", "inputs", "targets", "predictions", "metadata"} <= set(data.files)
        assert json.loads(str(data["metadata"]))["method"] == "test"
    back = Explanation.load(path)
    for name in ("attributions", "inputs", "targets", "predictions", "probabilities", "labels",
                 "sample_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(e, name))  # stored as is
    np.testing.assert_array_equal(back.extras["delta"], np.arange(4.0))
    assert back.extras["expected_value"] == [0.5, -0.5]
    assert back.options == {"n_steps": 50} and back.class_names == ["gun", "point"]


def test_select_slices_per_sample_extras():
    e = make(extras={"delta": np.arange(4.0), "expected_value": [1.0, 2.0]})
    sub = e.select([3, 1])
    np.testing.assert_array_equal(sub.extras["delta"], [3.0, 1.0])
    assert sub.extras["expected_value"] == [1.0, 2.0]
    np.testing.assert_array_equal(sub.attributions, e.attributions[[3, 1]])


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04truncated"])
def test_corrupt_file_gives_clear_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(XaiError, match="corrupt or not an xai explanation"):
        Explanation.load(path)


def test_foreign_npz_and_missing_file(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(XaiError, match="missing"):
        Explanation.load(tmp_path / "other.npz")
    with pytest.raises(XaiError, match="no explanation file"):
        Explanation.load(tmp_path / "absent.npz")


def test_pickled_object_arrays_are_not_loaded(tmp_path):
    path = make().save(tmp_path / "e.npz")
    with zipfile.ZipFile(path, "a") as zf:  # an object array needs pickle: refused
        import io
        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        zf.writestr("evil.npy", buf.getvalue())
    with pytest.raises(XaiError, match="corrupt or not"):
        Explanation.load(path)


def test_array_extras_must_be_per_sample():
    with pytest.raises(XaiError, match="sample axis first"):
        make(extras={"expected_value": np.zeros(2)})
