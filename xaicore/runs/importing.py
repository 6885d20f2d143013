"""A model the user trained elsewhere, made into a run directory (``xai import``).

The user names their own code (``mypkg.models:Net`` or ``path/to/models.py:Net``), the keyword
arguments it is built with and a weights file (read with ``weights_only=True``); xai builds it,
loads the weights, adapts its input layout once (``xaicore.runs.layouts``: ``NTF``, ``NCT`` or
``NT``, as ``wrap_model`` does), checks it on the test split and writes a
run that ``xai explain``, ``evaluate`` and ``report`` accept. Loading the run later imports the
same code again, and only a file this user imported on this machine: ``xai import`` records the
file's absolute path and sha256 in the user's own state folder (``imported_code_book``, outside
every run), and a run's checkpoint naming any other file, a changed one, a relative path or one
inside a run folder is refused before anything is imported. A run folder someone hands you
cannot make xai run code you did not choose.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.errors import XaiError
from xaicore.files import file_digest

IMPORTED = "imported"
ADAPTED = "net."  # the network inside its LayoutAdapter: weights and layers are named net.*


def code_file(target: str) -> tuple[Path, str]:
    """The Python file and attribute of ``module.path:Name`` or ``file.py:Name``."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise XaiError(f"--module takes MODULE:CLASS or FILE.py:CLASS, not {target!r}")
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise XaiError(f"no Python file at {path}")
        return path, attr
    sys.path.insert(0, str(Path.cwd()))
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise XaiError(f"cannot find module {where!r}: {exc}") from None
    finally:
        sys.path.remove(str(Path.cwd()))
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise XaiError(f"cannot find module {where!r} (run from the folder that holds it, or "
                       f"name its file: path/to/{where.split('.')[-1]}.py:{attr})")
    return Path(spec.origin).resolve(), attr


def network_class(path: Path, attr: str) -> type:
    """Import the user's file and return its ``nn.Module`` subclass ``attr``."""
    name = f"xai_imported_{file_digest(path)[:12]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the file's own imports of its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise XaiError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
        finally:
            sys.path.remove(str(path.parent))
        sys.modules[name] = module
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise XaiError(f"{path} has no torch.nn.Module class {attr!r}")
    return cls


def own_layer(stored: str | None) -> str | None:
    """The Grad-CAM layer's name in the user's network; the checkpoint names it inside the
    adapted module (``net.conv2``), like the weights in its ``state_dict``."""
    return stored.removeprefix(ADAPTED) if stored else None


def imported_code_book() -> Path:
    """The user's record of the code files they imported: ``$XDG_STATE_HOME/xai`` (default
    ``~/.local/state/xai``), never inside a run."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "xai" / "imported-code.json"


def _book() -> dict[str, list[str]]:
    try:
        data = json.loads(imported_code_book().read_text())
    except (OSError, ValueError):
        return {}
    return {k: [s for s in v if isinstance(s, str)] for k, v in data.items()
            if isinstance(k, str) and isinstance(v, list)} if isinstance(data, dict) else {}


def record_import(path: Path, sha256: str) -> None:
    """Note that this user chose to import ``path`` as it is now (its sha256)."""
    from xaicore.files import locked, write_text

    book = imported_code_book()
    with locked(book.parent, "xai import"):
        data = _book()
        if sha256 not in data.setdefault(str(path), []):
            data[str(path)].append(sha256)
        write_text(book, json.dumps(data, indent=1) + "\n")


def build(spec: dict, params: dict, chosen: bool = False) -> nn.Module:
    """The network a checkpoint's ``import`` entry names: refused unless its file is an absolute
    path outside every run folder, byte for byte a file this user imported (or, ``chosen``, the
    file being imported now)."""
    from xaicore.files import run_root

    path = Path(spec["file"])
    if not path.is_absolute():
        raise XaiError(f"the checkpoint names its model code by a relative path ({path}); xai "
                       f"runs only the file you imported, recorded by its absolute path: run xai "
                       f"import again")
    root = run_root(path.resolve())
    if root is not None:
        raise XaiError(f"the model code {path} lies inside the run folder {root}: code that comes "
                       f"with a run folder is never run; keep your model's code outside runs and "
                       f"import it from there")
    if not path.is_file():
        raise XaiError(f"the model code of this run, {path}, is gone; import the model again")
    if file_digest(path) != spec["sha256"]:
        raise XaiError(f"{path} changed since the model was imported (its sha256 differs); "
                       f"xai only runs the code you imported: run xai import again")
    if not chosen and spec["sha256"] not in _book().get(str(path), []):
        raise XaiError(f"the model code {path} of this run was not imported by you on this "
                       f"machine (no record in {imported_code_book()}); xai runs only code you "
                       f"imported: if you trust it, run xai import --module {path}:{spec['attr']} "
                       f"again")
    cls = network_class(path, spec["attr"])
    try:
        net = cls(**params)
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise XaiError(f"{spec['attr']}(**params) failed: {type(exc).__name__}: {exc}") from None
    return net


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A state dict from ``path`` (``weights_only=True``), also when saved inside a checkpoint
    dict, and the checkpoint's ``hyperparameters`` when it holds them."""
    if not path.is_file():
        raise XaiError(f"no weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on a bad file
        raise XaiError(f"{path} cannot be read as weights (weights_only=True refuses pickled "
                       f"code): {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    hyper = state.get("hyperparameters") if isinstance(state, dict) else None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor)
                                                      for v in state.values())):
        raise XaiError(f"{path} holds no state dict (a dict of tensors, as "
                       f"torch.save(net.state_dict(), path) writes)")
    return state, hyper if isinstance(hyper, dict) else {}


def constructor_params(cls: type, hyper: dict) -> dict:
    """The entries of a saved ``hyperparameters`` dict that ``cls(...)`` takes by name."""
    import inspect

    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {k: v for k, v in hyper.items() if k in names}


def import_model(target: str, weights: Path, params: dict | None, dataset_spec: dict, out: Path,
                 *, layout: str = "NTF", gradcam_layer: str | None = None,
                 output: int | None = None, force: bool = False) -> dict:
    """Write run directory ``out`` for the user's model; its metrics on the test split.

    ``params`` None: the ``hyperparameters`` saved beside the weights that the class takes."""
    from xaicore.runs import directory as runs
    from xaicore.data.loading import load_dataset
    from xaicore.runs.model import CHECKPOINT, CHECKPOINT_FORMAT, LoadedModel, load_weights
    from xaicore.runs.training import classification_report, report_text, write_predictions

    with runs.run_lock(out, "xai import"):
        runs.check_replaceable(out, force)
        path, attr = code_file(target)
        state, hyper = read_weights(Path(weights))
        if params is None:
            params = constructor_params(network_class(path, attr), hyper)
        if not isinstance(params, dict):
            raise XaiError(f"--params must be a JSON object of keyword arguments, not {params!r}")
        spec = {"file": str(path), "attr": attr, "sha256": file_digest(path), "layout": layout,
                "output": output}
        net = build(spec, params, chosen=True)
        load_weights(net, state, attr)
        dataset = load_dataset(dataset_spec)
        model = LoadedModel(net, name=IMPORTED, class_names=dataset.class_names,
                            feature_names=dataset.feature_names, seq_len=dataset.seq_len,
                            gradcam_layer=gradcam_layer, dataset=dataset.name, layout=layout,
                            output=output)
        if gradcam_layer:
            model.layer(gradcam_layer)  # an unknown layer is named now, not at explain time
        model.check_forward(torch.from_numpy(dataset.test.X[:2]))
        probs = torch.softmax(torch.from_numpy(model.logits(dataset.test.X)), 1).numpy()
        predicted = probs.argmax(1)
        report = classification_report(dataset.test.y, predicted, dataset.class_names)
        metrics = {"model": IMPORTED, "module": target, "dataset": dataset.name,
                   "test_accuracy": float(np.mean(predicted == dataset.test.y)),
                   "macro_f1": report["macro avg"]["f1-score"], "layout": layout}
        checkpoint = {"format": CHECKPOINT_FORMAT, "model": IMPORTED, "hyperparameters": params,
                      "state_dict": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
                      "class_names": list(dataset.class_names),
                      "feature_names": list(dataset.feature_names), "seq_len": int(dataset.seq_len),
                      "dataset": dict(dataset_spec),
                      "import": {**spec, "gradcam_layer": gradcam_layer and ADAPTED + gradcam_layer},
                      "epoch": 0, "seed": 0}
        record_import(path, spec["sha256"])
        with runs.staged(out, "xai import") as tmp:
            torch.save(checkpoint, tmp / CHECKPOINT)
            write_predictions(tmp / "test_predictions.csv", dataset, predicted, probs)
            (tmp / "classification_report.json").write_text(json.dumps(report, indent=2) + "\n")
            (tmp / "classification_report.txt").write_text(report_text(report))
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics
