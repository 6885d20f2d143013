"""Checkpoints: read with ``weights_only=True`` and checked field by field, then rebuilt into a
``LoadedModel`` (a registered network, or a user's imported one)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.data.dataset import Dataset
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.models.devices import resolve_device
from xaicore.models.imported import IMPORTED, build, check_name, default_name, own_layer, weights_digest
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.runs.directory import CHECKPOINT, checkpoint_digest

CHECKPOINT_FORMAT = 1


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``: pickled code in it is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise XaiError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):
        raise XaiError(f"{path} is corrupt or not a torch checkpoint (not a torch.save archive)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()
                       if "unsupported" in line.lower() and "GLOBAL" in line), "")
        raise XaiError(f"{path} holds objects that a weights-only load refuses (arbitrary pickled "
                       f"code); it was not loaded and nothing in it ran. {detail}".rstrip()) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise XaiError(f"{path} is corrupt or not a torch checkpoint "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict):
        raise XaiError(f"{path} is not an xai checkpoint (it holds a {type(ckpt).__name__}, not a "
                       f"dict)")
    missing = [k for k in CHECKPOINT_FIELDS if k not in ckpt]
    if missing:
        raise XaiError(f"{path} is not an xai checkpoint: it lacks {', '.join(missing)}")
    if type(ckpt["format"]) is not int or ckpt["format"] != CHECKPOINT_FORMAT:
        raise XaiError(f"{path} has checkpoint format {_describe(ckpt['format'])}; this xai reads "
                       f"format {CHECKPOINT_FORMAT}")
    for key, (check, expected) in CHECKPOINT_FIELDS.items():
        if not check(ckpt[key]):
            raise XaiError(f"{path}: field {key!r} must be {expected}, not "
                           f"{_describe(ckpt[key])}")
    norm = ckpt.get("normalisation")
    if norm is not None and not _normalisation_ok(norm, len(ckpt["feature_names"])):
        raise XaiError(f"{path}: field 'normalisation' must hold finite 'mean' and positive 'std' "
                       f"lists of {len(ckpt['feature_names'])} numbers")
    if "dataset" in ckpt and not (isinstance(ckpt["dataset"], dict)
                                  and isinstance(ckpt["dataset"].get("name"), str)):
        raise XaiError(f"{path}: field 'dataset' must be a dict with a 'name', not "
                       f"{_describe(ckpt['dataset'])}")
    bad = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and not
           bool(torch.isfinite(v).all())]
    if bad:
        raise XaiError(f"{path}: weights {', '.join(bad[:3])} hold NaN or infinite values; such a "
                       f"model gives no usable predictions or attributions")
    return ckpt


def _names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


MAX_SEQ_LEN = 10_000_000  # time steps a checkpoint may declare (beyond: no series fits in memory)
CHECKPOINT_FIELDS = {
    "format": (lambda v: True, "an int"),
    "model": (lambda v: isinstance(v, str) and bool(v), "a model name"),
    "hyperparameters": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
                        "a dict of named parameters"),
    "state_dict": (lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()),
        "a dict of named tensors"),
    "class_names": (lambda v: _names(v) and len(v) >= 2 and len(set(v)) == len(v),
                    "a list of at least 2 distinct class names"),
    "feature_names": (_names, "a non-empty list of feature names"),
    "seq_len": (lambda v: v is None or (type(v) is int and 0 < v <= MAX_SEQ_LEN),
                f"a positive int up to {MAX_SEQ_LEN:,} or None"),
}


def _normalisation_ok(norm: Any, n_features: int) -> bool:
    if not (isinstance(norm, dict) and all(
            isinstance(norm.get(k), list) and all(type(v) in (int, float) for v in norm[k])
            for k in ("mean", "std"))):
        return False
    try:
        mean, std = (np.asarray(norm[k], dtype=np.float64) for k in ("mean", "std"))
    except OverflowError:  # an int beyond float range
        return False
    return (mean.shape == std.shape == (n_features,) and bool(np.isfinite(mean).all())
            and bool(np.isfinite(std).all()) and bool((std >= 0).all()))


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def model_from_checkpoint(ckpt: dict, device: Any = None, source: Path | None = None) -> LoadedModel:
    """Rebuild the network named in the checkpoint and load its weights; ``source``, the file it
    was read from, gives the model its digest."""
    model = _model_from_checkpoint(ckpt, device, None if source is None else Path(source).parent)
    if source is not None:
        model.digest = checkpoint_digest(Path(source))
    return model


def _model_from_checkpoint(ckpt: dict, device: Any, run_dir: Path | None) -> LoadedModel:
    if ckpt["model"] == IMPORTED:  # a model brought in with xai import
        spec = ckpt.get("import")
        source = spec.get("source") if isinstance(spec, dict) else None
        if not (isinstance(spec, dict) and all(isinstance(spec.get(k), str)
                                               for k in ("file", "attr", "sha256", "layout"))
                and (spec.get("output") is None or type(spec.get("output")) is int)
                and all(spec.get(k) is None or isinstance(spec[k], str)
                        for k in ("gradcam_layer", "module", "weights_sha256"))
                and (source is None or isinstance(source, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in source.items()))):
            raise XaiError("the checkpoint of an imported model lacks its 'import' entry (file, "
                           "attr, sha256, layout; output an int, gradcam_layer, module and "
                           "weights_sha256 strings, source a dict of strings, or none)")
        info = {"name": imported_name(ckpt), "class_names": ckpt["class_names"],
                "feature_names": ckpt["feature_names"], "hyperparameters": ckpt["hyperparameters"],
                "gradcam_layer": own_layer(spec.get("gradcam_layer")), "layout": spec["layout"],
                "output": spec.get("output"), "dataset": (ckpt.get("dataset") or {}).get("name", "")}
        kind = ckpt.get("modality")  # a kind that adopted the network (absent: the default kind)
        if kind is None:
            model = LoadedModel(build(spec, ckpt["hyperparameters"]), seq_len=ckpt["seq_len"], **info)
        else:
            if not isinstance(kind, str):
                raise XaiError(f"the checkpoint's field 'modality' must name a kind of input, not "
                               f"{_describe(kind)}")
            modality = registry.get_modality(kind)
            adopt = getattr(modality, "adopt", None)
            if not callable(adopt):
                raise XaiError(f"the checkpoint's imported model takes {modality.name} inputs, "
                               f"but that kind of input adopts no networks of yours")
            model = call("modalities", modality.name, f"{modality.name}.adopt", adopt,
                         build(spec, ckpt["hyperparameters"]), ckpt, info)
        load_weights(model.module, ckpt["state_dict"], spec["attr"])
        if spec.get("weights_sha256") not in (None, weights_digest(ckpt["state_dict"])):
            raise XaiError("the weights in this run's checkpoint are not the ones imported (their "
                           "digest differs from the one recorded): import the model again")
        return model.to(resolve_device(device))
    cls = registry.get_model(ckpt["model"])
    kind = ckpt.get("modality")
    if kind is not None and not isinstance(kind, str):
        raise XaiError(f"the checkpoint's field 'modality' must name a kind of input, not "
                       f"{_describe(kind)}")
    modality = registry.get_modality(kind)
    model = call("modalities", modality.name, f"{modality.name}.restore", modality.restore, cls, ckpt,
                 run_dir)
    load_weights(model.module, ckpt["state_dict"], ckpt["model"])
    return model.to(resolve_device(device))


def imported_name(ckpt: dict) -> str:
    """The name of an imported model (``xai import --name``; its class's for runs from before
    names), checked."""
    name = ckpt.get("model_name")
    if name is None:
        return default_name(ckpt["import"]["attr"])
    try:
        return check_name(name)
    except XaiError:
        raise XaiError(f"the checkpoint's field 'model_name' must be a model name, not "
                       f"{_describe(name)}") from None


def load_weights(module: nn.Module, state: dict, name: str) -> None:
    """Load ``state`` into ``module``; a mismatch names the missing, unexpected, misshapen or
    mistyped (integer for floating point or back) keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state and state[k].shape != own[k].shape]
    mistyped = [f"{k} {state[k].dtype} vs {own[k].dtype}" for k in own  # e.g. int weights
                if k in state and state[k].is_floating_point() != own[k].is_floating_point()]
    if missing or unexpected or misshapen or mistyped:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("shape differs", misshapen), ("dtype differs", mistyped))
                 if keys]
        raise XaiError(f"checkpoint weights do not fit model {name!r}: {'; '.join(parts)}")
    module.load_state_dict(state)


def load_run(run_dir: str | Path, device: Any = None) -> LoadedModel:
    """The trained model of a run directory written by ``xai train``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XaiError(f"no run directory at {run_dir}")
    return model_from_checkpoint(load_checkpoint(run_dir / CHECKPOINT), device,
                                 run_dir / CHECKPOINT)


def load_run_data(run: str | Path, device: Any = None) -> tuple[LoadedModel, Dataset]:
    """The model of a run and the dataset it was trained on (splits as in training)."""
    run = Path(run)
    ckpt = load_checkpoint(run / CHECKPOINT)
    if "dataset" not in ckpt:
        raise XaiError(f"the checkpoint of {run} names no dataset, so it has no test split to "
                       f"explain; use xaicore.explain() with your own inputs")
    model, dataset = model_from_checkpoint(ckpt, device, run / CHECKPOINT), load_dataset(ckpt["dataset"])
    modality = registry.get_modality(model.modality)
    reload = getattr(modality, "reload", None)  # optional: the data as this model reads it
    if callable(reload):
        dataset = call("modalities", modality.name, f"{modality.name}.reload", reload, model, dataset)
    return model, dataset

