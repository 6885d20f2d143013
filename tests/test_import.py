"""`xai import`: a model trained outside xai becomes a run that explain and report accept."""

import json
import shutil
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import xaicore
from tolerances import assert_close, assert_identical
from xaicore.cli import cli
from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """The CAM tutorial's Conv1d network: input [batch, channel, time]."""

        def __init__(self, channels=8, n_classes=2):
            super().__init__()
            self.conv1 = nn.Conv1d(1, channels, 7, padding=3)
            self.conv2 = nn.Conv1d(channels, channels, 5, padding=2)
            self.fc = nn.Linear(channels, n_classes)

        def forward(self, x):
            h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.fc(h.mean(2))


    class TupleNet(Net):
        """Returns (logits, feature maps), as a hybrid returns (logits, attention)."""

        def forward(self, x):
            h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.fc(h.mean(2)), h


    class NotANetwork:
        pass
''')


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def own_model(tmp_path_factory):
    """A Conv1d net trained by hand on GunPoint in its own [batch, channel, time] layout."""
    root = tmp_path_factory.mktemp("own")
    (root / "mynet.py").write_text(NET)
    namespace: dict = {}
    exec(compile(NET, str(root / "mynet.py"), "exec"), namespace)
    data = xaicore.load_dataset("GunPoint")
    torch.manual_seed(0)
    net = namespace["Net"]()
    optimizer = torch.optim.Adam(net.parameters(), 0.01)
    X, y = torch.from_numpy(data.train.X).transpose(1, 2), torch.from_numpy(data.train.y)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        optimizer.step()
    torch.save(net.state_dict(), root / "net.pt")
    with torch.no_grad():
        own = net(torch.from_numpy(data.test.X).transpose(1, 2)).argmax(1).numpy()
    return root, net, float(np.mean(own == data.test.y))


def imported(root, out, *extra):
    return xai("import", "--module", root / "mynet.py:Net", "--weights", root / "net.pt",
               "--params", '{"channels": 8}', "--data", "GunPoint", "--layout", "NCT",
               "--gradcam-layer", "conv2", "--out", out, *extra)


def test_an_imported_model_explains_like_the_original(own_model, tmp_path):
    from captum.attr import LayerAttribution, LayerGradCam

    root, net, accuracy = own_model
    result = imported(root, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"test accuracy {accuracy:.4f}" in result.output  # the same predictions as the net's
    run = tmp_path / "run"
    assert xai("explain", "--run", run, "--method", "gradcam", "--samples", "0:6").exit_code == 0
    e = Explanation.load(run / "explanations" / "gradcam.npz")
    # Grad-CAM of the imported run equals captum's LayerGradCam on the same layer of the net
    x = torch.from_numpy(e.inputs).transpose(1, 2)
    cam = LayerGradCam(net, net.conv2).attribute(x, target=torch.from_numpy(e.targets),
                                                 relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, (x.shape[2],), "linear")[:, 0].detach().numpy()
    assert_close(e.attributions[:, :, 0], cam)
    assert xai("report", "--run", run).exit_code == 0
    result = imported(root, tmp_path / "run")
    assert result.exit_code == 1 and "--force" in result.output  # never replaced silently


def explained(run, method="saliency"):
    return xai("explain", "--run", run, "--method", method, "--samples", "0:2", "--force")


def test_an_edit_elsewhere_in_the_file_keeps_the_run(own_model, tmp_path):
    """The run records the model's code (the class's source), not the file's bytes: an unrelated
    class appended to the file changes nothing; the run loads and explains as before."""
    root, _, _ = own_model
    code = tmp_path / "code"
    shutil.copytree(root, code)
    assert imported(code, tmp_path / "run").exit_code == 0
    assert explained(tmp_path / "run").exit_code == 0
    before = Explanation.load(tmp_path / "run" / "explanations" / "saliency.npz")
    (code / "mynet.py").write_text(NET + "\n\nclass Unrelated(nn.Module):\n    pass\n")
    result = explained(tmp_path / "run")
    assert result.exit_code == 0, result.output
    after = Explanation.load(tmp_path / "run" / "explanations" / "saliency.npz")
    # the same weights in the same code on the same samples: the same computation
    assert_identical(after.attributions, before.attributions)


@pytest.mark.parametrize("edit, named", [
    (("return self.fc(h.mean(2))\n\n\nclass", "return self.fc(h.amax(2))\n\n\nclass"), "Net changed"),
    (("class Net(nn.Module):", "class Base(nn.Module):\n    pass\n\n\nclass Net(Base, nn.Module):"),
     "Base now used"),
])
def test_an_edit_of_the_model_code_is_a_one_line_error_naming_it(own_model, tmp_path, edit, named):
    root, _, _ = own_model
    code = tmp_path / "code"
    shutil.copytree(root, code)
    assert imported(code, tmp_path / "run").exit_code == 0
    text = (code / "mynet.py").read_text()
    assert edit[0] in text
    (code / "mynet.py").write_text(text.replace(edit[0], edit[1], 1))
    result = explained(tmp_path / "run")
    assert result.exit_code == 1, result.output
    assert "is not what was imported" in result.output and named in result.output, result.output
    assert "Traceback" not in result.output
    with pytest.raises(XaiError, match=named):
        xaicore.load_run(tmp_path / "run")


def test_an_edited_file_others_may_write_is_not_run(own_model, tmp_path):
    """An edited file is trusted by its path only while it is the user's alone."""
    root, _, _ = own_model
    code = tmp_path / "code"
    shutil.copytree(root, code)
    assert imported(code, tmp_path / "run").exit_code == 0
    ran = tmp_path / "RAN"
    (code / "mynet.py").write_text(NET + f"\nopen({str(ran)!r}, 'w').write('ran')\n")
    (code / "mynet.py").chmod(0o666)
    result = explained(tmp_path / "run")
    assert result.exit_code == 1 and "other users may write it" in result.output, result.output
    assert not ran.exists()
    (code / "mynet.py").chmod(0o644)
    assert explained(tmp_path / "run").exit_code == 0 and ran.exists()


def test_edited_weights_in_the_checkpoint_are_named(own_model, tmp_path):
    root, _, _ = own_model
    assert imported(root, tmp_path / "run").exit_code == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    ckpt["state_dict"]["net.fc.bias"] += 1.0
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    result = explained(tmp_path / "run")
    assert result.exit_code == 1 and "weights in this run's checkpoint are not the ones imported" \
        in result.output, result.output


def test_bad_imports_are_one_line_errors(own_model, tmp_path):
    root, net, _ = own_model
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")  # a pickled module, not weights
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    cases = [
        (["--weights", tmp_path / "whole.pt"], "weights_only=True refuses pickled code"),
        (["--weights", tmp_path / "wrong.pt"], "conv2.weight"),
        (["--module", root / "mynet.py:NotANetwork"], "has no torch.nn.Module class"),
        (["--module", "nowhere_at_all:Net"], "cannot find module 'nowhere_at_all'"),
        (["--gradcam-layer", "conv9"], "has no layer 'conv9'; its Conv1d layers are: conv1, conv2"),
        (["--gradcam-layer", "fc"], "--gradcam-layer fc outputs (2, 2), not a map [batch, "
                                    "channel, ...] that Grad-CAM weighs"),
        (["--params", "{channels: 8}"], "--params is not valid JSON"),
    ]
    base = {"--module": root / "mynet.py:Net", "--weights": root / "net.pt",
            "--params": '{"channels": 8}', "--gradcam-layer": "conv2"}
    for override, message in cases:
        options = {**base, override[0]: override[1]}
        args = [a for pair in options.items() for a in pair]
        result = xai("import", *args, "--data", "GunPoint", "--layout", "NCT", "--out",
                     tmp_path / "bad")
        assert result.exit_code == 1 and message in result.output, (override, result.output)
        assert "Traceback" not in result.output and not (tmp_path / "bad").exists()


def test_a_hyperparameters_checkpoint_and_tuple_output(own_model, tmp_path):
    """A checkpoint {'hyperparameters': ..., 'model_state_dict': ...} whose network
    returns (logits, attention): the hyperparameters the class takes are read from the file and
    --output names the logits."""
    root, net, accuracy = own_model
    torch.save({"hyperparameters": {"channels": 8, "feature_names": ["value"]},
                "model_state_dict": net.state_dict(), "epoch": 60}, tmp_path / "ckpt.pth")
    base = ["import", "--module", root / "mynet.py:TupleNet", "--weights", tmp_path / "ckpt.pth",
            "--data", "GunPoint", "--layout", "NCT"]
    result = xai(*base, "--out", tmp_path / "a")
    assert result.exit_code == 1 and "name the logits' position with --output" in result.output
    result = xai(*base, "--output", "0", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert f"test accuracy {accuracy:.4f}" in result.output
    assert xai("explain", "--run", tmp_path / "b", "--method", "integrated-gradients",
               "--samples", "0:3").exit_code == 0


@pytest.mark.parametrize("where", ["relative", "inside the run", "deep inside the run",
                                   "beside the run", "elsewhere"])
def test_a_run_folder_someone_hands_you_never_runs_its_own_code(own_model, tmp_path,
                                                                monkeypatch, where):
    """A crafted imported run whose checkpoint names code that came with it (a path relative to
    the current folder, a file anywhere inside the run, a file beside it, any file this user
    never imported), with a matching sha256, is refused at load and the code never runs."""
    from xaicore.files import file_digest

    root, _, _ = own_model
    assert imported(root, tmp_path / "shared_run").exit_code == 0
    run = tmp_path / "shared_run"
    ran = tmp_path / "RAN"
    code = {"relative": run / "model.py", "inside the run": run / "model.py",
            "deep inside the run": run / "a" / "b" / "c" / "d" / "e" / "f" / "g" / "h" / "m.py",
            "beside the run": tmp_path / "code" / "model.py",
            "elsewhere": tmp_path / "x.py"}[where]
    code.parent.mkdir(parents=True, exist_ok=True)
    code.write_text(NET + f"\nopen({str(ran)!r}, 'w').write('pwned')\n")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["import"]["file"] = "shared_run/model.py" if where == "relative" else str(code)
    ckpt["import"]["sha256"] = file_digest(code)
    torch.save(ckpt, run / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    test = xaicore.load_dataset("GunPoint").test
    np.savez(tmp_path / "new.npz", X=test.X[:2])
    message = {"relative": "relative path", "inside the run": "lies inside the run folder",
               "deep inside the run": "lies inside the run folder"}.get(
        where, "was not imported by you on this machine")
    for args in (["explain", "--run", run, "--method", "saliency", "--samples", "0:2"],
                 ["predict", "--run", run, "--input", tmp_path / "new.npz"]):
        result = xai(*args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not ran.exists()


def test_name_names_the_imported_model_everywhere(own_model, tmp_path):
    root, _, _ = own_model
    result = imported(root, tmp_path / "a", "--name", "MyCNN")
    assert result.exit_code == 0 and " as MyCNN: test accuracy" in result.output, result.output
    assert imported(root, tmp_path / "b").exit_code == 0  # default: the class's name
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert (ckpt["model"], ckpt["model_name"]) == ("imported", "MyCNN")  # marker apart from name
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["model"] == "MyCNN"
    assert xaicore.load_run(tmp_path / "a").name == "MyCNN"
    assert xaicore.load_run(tmp_path / "b").name == "Net"
    result = xai("explain", "--run", tmp_path / "a", "--run", tmp_path / "b", "--method", "saliency",
                 "--samples", "0:4", "--out", tmp_path / "both")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "both" / "comparison.csv")
    assert {*rows["model_a"], *rows["model_b"]} == {"MyCNN", "Net"}
    assert xai("explain", "--run", tmp_path / "a", "--method", "saliency",
               "--samples", "0:2").exit_code == 0
    assert Explanation.load(tmp_path / "a" / "explanations" / "saliency.npz").model_name == "MyCNN"
    assert xai("report", "--run", tmp_path / "a").exit_code == 0
    assert "MyCNN" in (tmp_path / "a" / "report.html").read_text()


@pytest.mark.parametrize("name", ["", " x", "a/b", "../x", "x" * 65, "n\u00e4me", "-x"])
def test_a_bad_name_is_a_one_line_error(own_model, tmp_path, name):
    root, _, _ = own_model
    result = imported(root, tmp_path / "bad", "--name", name)
    assert result.exit_code == 1 and "--name must be 1 to 64 letters" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad").exists()


def test_a_run_imported_before_names_and_identities_still_loads(own_model, tmp_path):
    """A checkpoint from before --name and the model's code identity (no model_name, source,
    weights_sha256 nor test_logits) loads by the old rule: the file byte for byte as imported."""
    root, _, _ = own_model
    code = tmp_path / "code"
    shutil.copytree(root, code)
    assert imported(code, tmp_path / "run").exit_code == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    for key in ("model_name", "test_logits"):
        del ckpt[key]
    for key in ("source", "weights_sha256"):
        del ckpt["import"][key]
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    model = xaicore.load_run(tmp_path / "run")
    assert model.name == "Net"
    (code / "mynet.py").write_text(NET + "\n# edited\n")
    with pytest.raises(XaiError, match="changed since the model was imported"):
        xaicore.load_run(tmp_path / "run")


def stale(run, path):
    from xaicore.runs.directory import stale_reason

    return stale_reason(Explanation.load(path).model_digest, run)


def explained_import(own_model, tmp_path):
    """A copy of the user's code imported as a run, with gradcam on its test split and saliency
    streamed over 8 other series: the results a re-import may keep."""
    root, _, _ = own_model
    code, run = tmp_path / "code", tmp_path / "run"
    shutil.copytree(root, code)
    assert imported(code, run).exit_code == 0
    np.save(tmp_path / "new.npy", xaicore.load_dataset("GunPoint").test.X[:8])
    assert explained(run, "gradcam").exit_code == 0
    assert xai("explain", "--run", run, "--input", tmp_path / "new.npy", "--method",
               "saliency").exit_code == 0
    return code, run


def test_force_keeps_the_results_of_the_same_model(own_model, tmp_path):
    """Importing again after a harmless edit of the file: the same code and weights, so every
    result stays (and is the run's, not stale), the report alone goes; the output says so."""
    code, run = explained_import(own_model, tmp_path)
    assert xai("report", "--run", run).exit_code == 0
    (code / "mynet.py").write_text(NET + "\n\nclass Unrelated(nn.Module):\n    pass\n")
    result = imported(code, run, "--force")
    assert result.exit_code == 0, result.output
    assert "removed 1 (report.html): the model is the same" in result.output, result.output
    assert "explanations/gradcam.npz" in result.output
    assert not (run / "report.html").exists()
    assert stale(run, run / "explanations" / "gradcam.npz") is None
    assert (run / "explanations" / "new" / "saliency.zarr").is_dir()


def test_force_keeps_test_split_results_when_the_outputs_are_unchanged(own_model, tmp_path):
    """New model code with the same outputs on the test split (a mean written as a sum over the
    length): explanations of the test split stay; results on other inputs, which the test split
    cannot vouch for, go. New outputs: everything goes."""
    code, run = explained_import(own_model, tmp_path)
    text = NET.replace("return self.fc(h.mean(2))\n\n\nclass",
                       "return self.fc(h.sum(2) / h.shape[2])\n\n\nclass", 1)
    assert text != NET
    (code / "mynet.py").write_text(text)
    result = imported(code, run, "--force")
    assert result.exit_code == 0, result.output
    assert "kept 1 (explanations/gradcam.npz)" in result.output, result.output
    assert "the model's outputs on the test split are unchanged" in result.output
    assert (run / "explanations" / "gradcam.npz").is_file()
    assert stale(run, run / "explanations" / "gradcam.npz") is None
    assert not (run / "explanations" / "new" / "saliency.zarr").exists()
    e = Explanation.load(run / "explanations" / "gradcam.npz")
    explained(run, "gradcam")  # recomputed by the new model: the kept result was right
    assert_close(Explanation.load(run / "explanations" / "gradcam.npz").attributions,
                 e.attributions)

    (code / "mynet.py").write_text(NET.replace("return self.fc(h.mean(2))\n\n\nclass",
                                               "return self.fc(h.amax(2))\n\n\nclass", 1))
    result = imported(code, run, "--force")
    assert result.exit_code == 0, result.output
    assert "kept 0 and removed" in result.output and "outputs on the test split changed" \
        in result.output, result.output
    assert not (run / "explanations" / "gradcam.npz").exists()
