"""Property-based fuzzing (hypothesis) of CLI values, file names, class names and checkpoints.

Every case asserts: exit 0, or exit 1 (2 for click usage errors) with a one-line message and no
traceback; nothing written outside the sandbox's output folder; no file that existed lost or
changed; no temporary left. ``CASES`` counts the cases run (printed by the last test).
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaicore import files
from xaicore.cli import cli
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.errors import XaiError
from xaicore.explaining.runs import result_name
from xaicore.models.checkpoints import load_checkpoint, model_from_checkpoint

CASES: Counter = Counter()
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["../../../../outside/PWNED", "/etc/passwd", "a/b", "..", ".", "",
                     "x" * 300, "名前", "cpu", "cuda", "cuda:0", "meta", "auto", "0:2", "all",
                     "misclassified", "1", "-1", "predicted", "true", "0:999999"]))


@pytest.fixture(scope="module")
def sandbox(gunpoint_run, tmp_path_factory) -> Path:
    """``ROOT/box/run`` (a copy of the shared run) and ``ROOT/box/out``; ROOT is watched."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(gunpoint_run, root / "box" / "run")
    (root / "box" / "run" / "notes.md").write_text("a file the user wrote")
    (root / "box" / "out").mkdir()
    return root


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and (skip is None or skip not in p.parents)}


def check_outcome(result, root: Path) -> None:
    """Exit 0, 1 or 2; on failure one line and no traceback; no temporary anywhere."""
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
    if result.exit_code:
        assert isinstance(result.exception, SystemExit), result.exception
        lines = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
    leftovers = [p for p in root.rglob("*") if files.is_temporary(p.name) or p.name == files.LOCK]
    assert leftovers == [], leftovers


def invoke(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


@FUZZ
@given(device=HOSTILE_TEXT, seed=st.integers(-2**40, 2**40), threads=st.integers(-10**6, 10**6))
def test_fuzz_train_values_never_touch_an_existing_run(sandbox, device, seed, threads):
    CASES["train"] += 1
    before = snapshot(sandbox)
    result = invoke("train", "--dataset", "GunPoint", "--model", "fcn", "--out",
                    sandbox / "box" / "run", "--device", device, "--seed", seed, "--threads",
                    threads, "--epochs", "1")
    check_outcome(result, sandbox)
    assert result.exit_code in (1, 2)  # a bad value, or the run exists without --force
    assert snapshot(sandbox) == before


@FUZZ
@given(samples=HOSTILE_TEXT, target=HOSTILE_TEXT, device=st.sampled_from(["cpu", "auto", "foo", ""]),
       force=st.booleans())
def test_fuzz_explain_values_write_only_into_out(sandbox, samples, target, device, force):
    CASES["explain"] += 1
    out = sandbox / "box" / "out"
    before_out = snapshot(out)
    before = snapshot(sandbox, skip=out)
    result = invoke("explain", "--run", sandbox / "box" / "run", "--method", "saliency",
                    "--samples", samples, "--target", target, "--device", device, "--out", out,
                    "--no-figures", *(["--force"] if force else []))
    check_outcome(result, sandbox)
    assert snapshot(sandbox, skip=out) == before  # nothing written outside --out
    after_out = snapshot(out)
    assert set(before_out) <= set(after_out)  # nothing lost
    if not force:
        assert all(after_out[k] == v for k, v in before_out.items())  # nothing overwritten
    for name in after_out:
        assert "/" not in name and name.endswith(".npz")


@FUZZ
@given(out_name=HOSTILE_TEXT, force=st.booleans())
def test_fuzz_report_out_and_predict_out(sandbox, out_name, force):
    CASES["report/predict"] += 1
    out = sandbox / "box" / "out"
    before = snapshot(sandbox, skip=out)
    before_out = snapshot(out)
    target = out / files.safe_name(out_name) if out_name else out
    result = invoke("report", "--run", sandbox / "box" / "run", "--out", target,
                    *(["--force"] if force else []))
    check_outcome(result, sandbox)
    if target == out:
        assert result.exit_code == 1
    assert snapshot(sandbox, skip=out) == before
    assert set(before_out) <= set(snapshot(out))


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=400))
def test_fuzz_safe_names_stay_inside(tmp_path_factory, text):
    CASES["names"] += 1
    name = files.safe_name(text)
    assert name not in ("", ".", "..") and "/" not in name and "\x00" not in name
    assert len(name.encode()) <= 4 * files.MAX_NAME
    stem = result_name("gradcam", text)
    folder = Path("/sandbox/explanations")
    assert files.inside(folder, f"{stem}.npz").parent == folder


@FUZZ
@given(names=st.lists(st.one_of(st.text(min_size=1, max_size=30),
                                st.sampled_from(["1", "1.0", "2", "2.00", "../x", "/abs", "a\x00"])),
                      min_size=2, max_size=5))
def test_fuzz_class_names_load_or_fail_in_one_line(tmp_path, names):
    CASES["class names"] += 1
    X = np.random.default_rng(0).normal(size=(4 * len(names), 6))
    y = np.array(names * 4)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    try:
        dataset = load_dataset(dataset_spec(path))
    except XaiError as exc:
        assert "\n" not in str(exc)
        return
    assert len(set(dataset.class_names)) == len(dataset.class_names)
    for name in dataset.class_names:
        assert files.inside(tmp_path, f"{result_name('saliency', name)}.npz").parent == tmp_path


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(),
                         st.text(max_size=10), st.lists(st.integers(0, 3), max_size=3),
                         st.lists(st.text(max_size=5), max_size=3),
                         st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@FUZZ
@given(field=st.sampled_from(["format", "model", "hyperparameters", "state_dict", "class_names",
                              "feature_names", "seq_len", "normalisation", "dataset"]),
       value=FIELD_VALUES)
def test_fuzz_checkpoint_fields_load_or_fail_in_one_line(gunpoint_run, tmp_path, field, value):
    CASES["checkpoints"] += 1
    ckpt = torch.load(gunpoint_run / "checkpoint.pt", weights_only=True)
    ckpt[field] = value
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    try:
        model = model_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"), "cpu")
        inputs = np.zeros((1, model.seq_len or 150, len(model.feature_names)), dtype=np.float32)
        logits = model.logits(inputs)  # a network that builds but cannot run fails here
    except XaiError as exc:
        assert "\n" not in str(exc)
        return
    assert logits.shape == (1, len(model.class_names))


IMPORTED_NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, channels=4, n_classes=2):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, padding=2)
        self.bn = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv1(x))).mean(2))
"""
REQUIRED = {"format", "model", "hyperparameters", "state_dict", "class_names", "feature_names",
            "seq_len", "normalisation", "dataset", "import"}
SWAPPED = st.sampled_from([None, True, -1, 2**40, 1.5, float("nan"), "x", "", [], [1, "a"], {},
                           {"a": 1}, "cnn.0", torch.zeros(2), torch.tensor(float("nan"))])


def key_paths(value, prefix: tuple = ()):
    """Every key (and the first list items) of a checkpoint, optimizer internals left out."""
    items = (value.items() if isinstance(value, dict)
             else enumerate(value[:2]) if isinstance(value, list) else ())
    for key, item in items:
        yield (*prefix, key)
        if (prefix + (key,))[0] not in ("optimizer", "scheduler", "training"):
            yield from key_paths(item, (*prefix, key))


@pytest.fixture(scope="module")
def damaged(gunpoint_run, tmp_path_factory) -> dict[str, Path]:
    """Run folders whose checkpoint the cases replace (the intact one kept as ``original.pt``):
    the trained GunPoint run and a model brought in with xai import."""
    root = tmp_path_factory.mktemp("damaged")
    (root / "net.py").write_text(IMPORTED_NET)
    namespace: dict = {}
    exec(compile(IMPORTED_NET, "net.py", "exec"), namespace)
    torch.manual_seed(0)
    torch.save(namespace["Net"]().state_dict(), root / "net.pt")
    result = invoke("import", "--module", root / "net.py:Net", "--weights", root / "net.pt",
                    "--data", "GunPoint", "--layout", "NCT", "--gradcam-layer", "conv1",
                    "--out", root / "imported")
    assert result.exit_code == 0, result.output
    shutil.copytree(gunpoint_run, root / "trained", ignore=shutil.ignore_patterns("explanations"))
    for name in ("trained", "imported"):
        shutil.copy(root / name / "checkpoint.pt", root / name / "original.pt")
    return {"trained": root / "trained", "imported": root / "imported"}


def variants(tensor: torch.Tensor) -> list[torch.Tensor]:
    """A tensor misshapen, emptied, of the other kind of dtype, or NaN."""
    other = torch.int64 if tensor.is_floating_point() else torch.float32
    return [tensor.reshape(1, *tensor.shape), tensor.new_zeros(0), tensor.to(other),
            torch.full(tensor.shape, float("nan"))]


@settings(FUZZ, max_examples=60)
@given(data=st.data(), run=st.sampled_from(["trained", "imported"]),
       kind=st.sampled_from(["drop", "swap", "tensor", "truncate"]))
def test_fuzz_damaged_checkpoints_fail_in_one_line_through_explain(damaged, data, run, kind):
    """Truncated files, dropped keys, swapped types and mismatched tensors in a real run's
    checkpoint: `xai explain --run` explains or fails in one line, naming a dropped key."""
    CASES["damaged checkpoints"] += 1
    folder = damaged[run]
    raw = (folder / "original.pt").read_bytes()
    ckpt = torch.load(folder / "original.pt", weights_only=True)
    paths = list(key_paths(ckpt))
    refused = named = path = None
    if kind == "truncate":
        (folder / "checkpoint.pt").write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
        refused = True
    else:
        if kind == "tensor":
            paths = [p for p in paths if p[0] == "state_dict" and len(p) == 2]
        path = data.draw(st.sampled_from(paths))
        parent = ckpt
        for key in path[:-1]:
            parent = parent[key]
        if kind == "drop":
            del parent[path[-1]]
            refused = path[0] == "state_dict" or (len(path) == 1 and path[0] in REQUIRED)
            named = isinstance(path[-1], str) and path[0] in REQUIRED - {"hyperparameters"}
        elif kind == "swap":
            parent[path[-1]] = data.draw(SWAPPED)
        else:
            parent[path[-1]] = data.draw(st.sampled_from(variants(parent[path[-1]])))
            refused = True
        torch.save(ckpt, folder / "checkpoint.pt")
    result = invoke("explain", "--run", folder, "--method", "saliency", "--samples", "0:2",
                    "--out", folder / "out", "--force", "--no-figures")
    check_outcome(result, folder)
    assert result.exit_code == 1 or not refused, (kind, path, result.output)
    if named and result.exit_code:
        assert str(path[-1]) in result.output, (path, result.output)


LOOK_ALIKE = st.builds(
    lambda stem, kind, pid, tail: f".{stem}.{kind}-{pid}{tail}",
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
            min_size=1, max_size=12),
    st.sampled_from(["tmp", "partial", "old", "xai-tmp", "xai-partial", "xai-old"]),
    st.one_of(st.integers(0, 2**22), st.integers(2**31, 10**30)),
    st.one_of(st.just(""), st.text("0123456789abcdefXYZ-", max_size=10).map(lambda t: "-" + t)))


@settings(FUZZ, max_examples=60)
@given(names=st.lists(LOOK_ALIKE, min_size=1, max_size=6, unique=True))
def test_fuzz_look_alike_temporaries_beside_or_in_a_run_are_never_removed(tmp_path_factory,
                                                                         names):
    """Names like xai's temporaries (any pid, huge ones included) in the folder above a run or in
    a user's folder are never removed; inside a run only xai's exact form of a dead process is."""
    from xaicore.runs import directory as runs

    CASES["look-alikes"] += 1
    root = tmp_path_factory.mktemp("alike")
    run, user = root / "run", root / "user"
    for folder in (run, user):
        folder.mkdir()
        for name in names:
            (folder / name).write_text("mine")
    runs.create_marker(run)
    for name in names:
        (root / name).write_text("mine")
    files.clean_stale(root)
    files.clean_stale(user)
    files.clean_stale(run)
    runs.remove_results(run)
    with pytest.raises(XaiError, match="holds files xai did not write"):
        runs.check_replaceable(user, force=True)
    assert all((root / n).read_text() == "mine" and (user / n).read_text() == "mine"
               for n in names)
    gone = {n for n in names if not (run / n).exists()}
    assert all(files.is_temporary(n) and not files.pid_alive(int(n.split("-")[-2]))
               for n in gone), gone


FAMILIES = {"test_fuzz_train_values_never_touch_an_existing_run": "train",
            "test_fuzz_look_alike_temporaries_beside_or_in_a_run_are_never_removed":
                "look-alikes",
            "test_fuzz_explain_values_write_only_into_out": "explain",
            "test_fuzz_report_out_and_predict_out": "report/predict",
            "test_fuzz_safe_names_stay_inside": "names",
            "test_fuzz_class_names_load_or_fail_in_one_line": "class names",
            "test_fuzz_checkpoint_fields_load_or_fail_in_one_line": "checkpoints",
            "test_fuzz_damaged_checkpoints_fail_in_one_line_through_explain": "damaged checkpoints"}
MIN_CASES = 10  # every strategy here has far more values than any test's max_examples


def test_every_fuzz_test_that_ran_tried_many_cases(request):
    """Each fuzz test run in this session tried at least MIN_CASES cases (-s prints the counts)."""
    ran = {item.originalname for item in request.session.items
           if item.module.__name__ == __name__ and item.originalname != request.node.originalname}
    assert ran <= FAMILIES.keys(), ran - FAMILIES.keys()  # a new fuzz test is counted here too
    print(f"\nfuzz cases: {sum(CASES.values())} {dict(CASES)}")
    if not ran:
        pytest.skip("no fuzz test was selected")
    for name in ran:
        assert CASES[FAMILIES[name]] >= MIN_CASES, (name, dict(CASES))
