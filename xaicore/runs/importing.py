"""A model the user trained elsewhere, made into a run directory (``xai import``).

The user names their own code (``mypkg.models:Net`` or ``path/to/models.py:Net``), the keyword
arguments it is built with and a weights file (read with ``weights_only=True``); xai builds it,
loads the weights, adapts its input layout once (``xaicore.models.layouts``: ``NTF``, ``NCT`` or
``NT``, as ``wrap_model`` does), checks it on the test split and writes a
run that ``xai explain``, ``evaluate`` and ``report`` accept. Loading the run later imports the
same code again, and only a file this user imported on this machine (the rule is in
``xaicore.models.imported``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.files import file_digest, written
from xaicore.models.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, load_weights
from xaicore.models.imported import (
    ADAPTED,
    IMPORTED,
    build,
    check_name,
    code_identity,
    default_name,
    network_class,
    record_import,
    weights_digest,
)
from xaicore.models.kinds import modality_of
from xaicore.models.layouts import LAYOUTS
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.runs import directory as runs
from xaicore.runs.directory import CHECKPOINT
from xaicore.runs.training import build_model, classification_report, report_text, write_predictions


def code_file(target: str) -> tuple[Path, str, str | None]:
    """The Python file and attribute of ``module.path:Name`` or ``file.py:Name``, and the module's
    name when it belongs to a package (imported by name then, for its relative imports)."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise XaiError(f"--module takes MODULE:CLASS or FILE.py:CLASS, not {target!r}")
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise XaiError(f"no Python file at {path}")
        return path, attr, None
    sys.path.insert(0, str(Path.cwd()))
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise XaiError(f"cannot find module {where!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - finding a submodule imports its packages' code
        raise XaiError(f"cannot find module {where!r}: importing its package failed: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    finally:
        sys.path.remove(str(Path.cwd()))
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise XaiError(f"cannot find module {where!r} (run from the folder that holds it, or "
                       f"name its file: path/to/{where.split('.')[-1]}.py:{attr})")
    packaged = spec.submodule_search_locations is not None or bool(spec.parent)
    return Path(spec.origin).resolve(), attr, where if packaged else None


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

    names = set(inspect.signature(cls).parameters)
    return {k: v for k, v in hyper.items() if k in names}


def import_model(target: str, weights: Path, params: dict | None, dataset_spec: dict, out: Path,
                 *, kind: str | None = None, layout: str | None = None,
                 gradcam_layer: str | None = None, output: int | None = None,
                 force: bool = False, name: str | None = None) -> dict:
    """Write run directory ``out`` for the user's model; its metrics on the test split.

    ``params`` None: the ``hyperparameters`` saved beside the weights that the class takes.
    ``kind`` names the kind of input the network takes (default: the kind that claims the data,
    else the default kind); a kind other than the default takes the network through its
    ``adopt`` and declares its own ``layouts``. ``name`` names the model everywhere (default:
    the class or function's name). Replacing an imported run (``force``) keeps the results
    whose model outputs are unchanged (``kept_results``); ``metrics["kept"]`` and
    ``metrics["removed"]`` list them."""
    with runs.run_lock(out, "xai import"):
        runs.check_replaceable(out, force)
        path, attr, module = code_file(target)
        name = default_name(attr) if name is None else check_name(name)
        state, hyper = read_weights(Path(weights))
        if params is None:
            params = constructor_params(network_class(path, attr, module), hyper)
        if not isinstance(params, dict):
            raise XaiError(f"--params must be a JSON object of keyword arguments, not {params!r}")
        dataset = load_dataset(dataset_spec)
        modality = registry.get_modality(kind) if kind else claiming_kind(dataset)
        adopt = getattr(modality, "adopt", None)
        if not callable(adopt) and modality.name != registry.get_modality(None).name:
            raise XaiError(f"{modality.name} models cannot be imported with --module (that kind "
                           f"of input takes no networks of yours)")
        layouts = getattr(modality, "layouts", None) or LAYOUTS
        layout = layout or next(iter(layouts))
        if layout not in layouts:
            raise XaiError(f"--layout must be one of "
                           f"{', '.join(f'{k} {v}' for k, v in layouts.items())} for "
                           f"{modality.name}; not {layout!r}")
        digest = file_digest(path)
        spec = {"file": str(path), "attr": attr, "sha256": digest, "layout": layout,
                "output": output, "module": module}
        net = build(spec, params, chosen=True)
        spec["source"] = code_identity(network_class(path, attr, module), net, path)
        load_weights(net, state, attr)
        info: dict[str, Any] = {
            "name": name, "class_names": dataset.class_names,
            "feature_names": dataset.feature_names, "gradcam_layer": gradcam_layer,
            "dataset": dataset.name, "layout": layout, "output": output}
        model = (call("modalities", modality.name, f"{modality.name}.adopt", adopt, net, dataset.info,
                      {**info, "hyperparameters": params}) if callable(adopt)
                 else LoadedModel(net, seq_len=dataset.seq_len, **info))
        shapes: list[tuple[int, ...]] = []
        hook = None
        if gradcam_layer:  # an unknown layer, or one that gives no map, is named now
            hook = model.layer(gradcam_layer).register_forward_hook(
                lambda _module, _inputs, output: shapes.append(tuple(getattr(output, "shape", ()))))
        try:
            model.check_forward(torch.from_numpy(dataset.test.X[:2]))
        finally:
            if hook is not None:
                hook.remove()
        if gradcam_layer and not (shapes and len(shapes[0]) >= 3):
            raise XaiError(f"--gradcam-layer {gradcam_layer} outputs "
                           f"{shapes[0] if shapes else 'nothing in a forward pass'}, not a map "
                           f"[batch, channel, ...] that Grad-CAM weighs; name a convolution layer")
        logits = model.logits(dataset.test.X)
        probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
        predicted = probs.argmax(1)
        report = classification_report(dataset.test.y, predicted, dataset.class_names)
        metrics = {"model": name, "imported": True, "module": target, "dataset": dataset.name,
                   "test_accuracy": float(np.mean(predicted == dataset.test.y)),
                   "macro_f1": report["macro avg"]["f1-score"], "layout": layout}
        entries: dict = {}
        if callable(adopt):
            metrics["modality"] = model.modality
            entries = {"modality": model.modality, **call(
                "modalities", modality.name, f"{modality.name}.checkpoint_entries",
                modality.checkpoint_entries, model, dataset)}
        layer = model.gradcam_layer_name
        saved = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        checkpoint = {"format": CHECKPOINT_FORMAT, "model": IMPORTED, "model_name": name,
                      "hyperparameters": params, "state_dict": saved,
                      "class_names": list(dataset.class_names),
                      "feature_names": list(dataset.feature_names), "seq_len": int(dataset.seq_len),
                      **entries, "dataset": dict(dataset_spec),
                      "import": {**spec, "gradcam_layer": layer and ADAPTED + layer,
                                 "weights_sha256": weights_digest(saved)},
                      "test_logits": torch.from_numpy(np.ascontiguousarray(logits, np.float32)),
                      "epoch": 0, "seed": 0}
        keep, earlier, why = kept_results(out, checkpoint)
        record_import(path, digest)
        removed: list[str] = []
        write_run(out, checkpoint, dataset, predicted, probs, report, metrics, removed, keep)
        if earlier is not None:
            kept = [rel for rel in written(out) if keep(rel)]
            if kept:
                runs.record_same_outputs(out, [earlier])
            metrics.update(kept=kept, removed=removed, why=why)
        return metrics


def kept_results(out: Path, new: dict) -> tuple[Any, str | None, str]:
    """Which results of the imported run already in ``out`` stay when ``new`` replaces its
    checkpoint, the old checkpoint's digest (None when there is no imported run there) and why.

    Results on the test split (``explanations/METHOD.npz``, their figures, the evaluation) stay
    when the new model's logits on the same test split equal the recorded ones (within float
    rounding) and Grad-CAM reads the same layer; every result stays when, besides, the weights and
    the model's code are the same; the report goes (it describes the model)."""
    old_path = out / CHECKPOINT
    try:
        old = load_checkpoint(old_path) if old_path.is_file() else None
    except XaiError:
        old = None
    if old is None or old.get("model") != IMPORTED or not isinstance(old.get("import"), dict):
        return (lambda rel: False), None, ""
    earlier = runs.checkpoint_digest(old_path)
    logits, before = new["test_logits"], old.get("test_logits")
    why = ("the earlier import recorded no outputs to compare" if not isinstance(before, torch.Tensor)
           else "its test split or classes differ" if (
               old.get("dataset") != new["dataset"] or old["class_names"] != new["class_names"]
               or before.shape != logits.shape)
           else "Grad-CAM reads another layer" if (
               new["import"]["gradcam_layer"] != old["import"].get("gradcam_layer"))
           else "the model's outputs on the test split changed" if not torch.allclose(
               before.float(), logits, rtol=1e-5, atol=1e-5 * float(logits.abs().max()))
           else "")
    same_outputs = not why
    same_model = same_outputs and all(
        old["import"].get(k) == new["import"][k] for k in ("weights_sha256", "source", "layout",
                                                           "output"))

    def keep(rel: str) -> bool:
        if rel == "report.html" or not same_outputs:
            return False
        if same_model:
            return True
        parts = rel.split("/")
        return (parts[0] in ("evaluation", "evaluation.csv")
                or (parts[0] == "explanations" and (
                    parts[1:2] == ["figures"]
                    or (len(parts) == 2 and parts[1].endswith(".npz")))))

    return keep, earlier, why or ("the model is the same" if same_model else
                                  "the model's outputs on the test split are unchanged")


def claiming_kind(dataset: Any) -> Any:
    """The registered kind of input whose optional ``claims(dataset)`` holds, else the default."""
    for name in registry.names("modalities"):
        modality = registry.get_modality(name)
        claims = getattr(modality, "claims", None)
        if callable(claims) and call("modalities", name, f"{name}.claims", claims, dataset):
            return modality
    return registry.get_modality(None)


def import_folder(model_name: str, folder: Path, dataset_spec: dict, out: Path, *,
                  force: bool = False) -> dict:
    """Write run directory ``out`` for a model saved as a folder (``xai import --hf``): the
    registered model ``model_name`` reads it (``from_folder``: its params, weights, class names
    and the data options that read the dataset as it does); its metrics on the test split. No
    code from the folder runs."""
    with runs.run_lock(out, "xai import"):
        runs.check_replaceable(out, force)
        cls = registry.get_model(model_name)
        if not callable(getattr(cls, "from_folder", None)):
            raise XaiError(f"model {model_name!r} does not read model folders (it has no from_folder)")
        found = call("models", model_name, f"{model_name}.from_folder", cls.from_folder, str(folder))
        spec = {**dataset_spec, **found["data"]}
        dataset = load_dataset(spec)
        labels = found["labels"]
        if labels is not None and list(labels) != list(dataset.class_names):
            raise XaiError(f"the model's classes in output order ({', '.join(labels)}) are not the "
                           f"dataset's ({', '.join(dataset.class_names)})")
        model = build_model(dataset, model_name, cls, found["params"])
        load_weights(model.network, found["state_dict"], model_name)
        model.check_forward(torch.from_numpy(dataset.test.X[:2]))
        probs = torch.softmax(torch.from_numpy(model.logits(dataset.test.X)), 1).numpy()
        predicted = probs.argmax(1)
        report = classification_report(dataset.test.y, predicted, dataset.class_names)
        metrics = {"model": model_name, "folder": str(folder), "dataset": dataset.name,
                   "test_accuracy": float(np.mean(predicted == dataset.test.y)),
                   "macro_f1": report["macro avg"]["f1-score"]}
        modality = modality_of(model)
        entries = call("modalities", modality.name, f"{modality.name}.checkpoint_entries",
                       modality.checkpoint_entries, model, dataset)
        checkpoint = {"format": CHECKPOINT_FORMAT, "model": model_name,
                      "hyperparameters": model.hyperparameters,
                      "state_dict": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
                      "class_names": list(dataset.class_names),
                      "feature_names": list(dataset.feature_names), "seq_len": int(dataset.seq_len),
                      "modality": model.modality, **entries, "dataset": spec, "epoch": 0, "seed": 0}
        write_run(out, checkpoint, dataset, predicted, probs, report, metrics)
        return metrics


def write_run(out: Path, checkpoint: dict, dataset: Any, predicted: np.ndarray, probs: np.ndarray,
              report: dict, metrics: dict, removed: list[str] | None = None,
              keep: Any = None) -> None:
    """An imported run's files, moved into ``out`` together at the end (``runs.staged``: the old
    model's results go, but those ``keep`` accepts; the removed are added to ``removed``)."""
    with runs.staged(out, "xai import", removed, keep) as tmp:
        torch.save(checkpoint, tmp / CHECKPOINT)
        write_predictions(tmp / "test_predictions.csv", dataset, predicted, probs)
        (tmp / "classification_report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "classification_report.txt").write_text(report_text(report))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
