"""``LoadedModel`` (the core ``Model``), checkpoints and run directories."""

from __future__ import annotations

import contextlib
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from . import registry
from .data import as_series
from .errors import XaiError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device for ``--device`` (cpu, cuda, cuda:N, auto/None); an XaiError otherwise."""
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise XaiError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise XaiError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XaiError(f"device {device!r} requested but CUDA is not available here")
    return dev


class Standardize(nn.Module):
    """Per-feature z-normalisation with statistics from the train split, kept inside the model."""

    def __init__(self, mean: Any, std: Any) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        self.register_buffer("std", torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LoadedModel:
    """A network with its metadata; ``module`` maps raw ``[batch, time, feature]`` inputs to logits.

    Normalisation is part of ``module``, so attributions are in the units of the data as loaded.
    """

    input_layout = "NTF"

    def __init__(self, network: nn.Module, *, name: str, class_names: list[str],
                 feature_names: list[str], seq_len: int | None, mean: Any = None, std: Any = None,
                 hyperparameters: dict | None = None, dataset: str = "",
                 gradcam_layer: str | None = None) -> None:
        self.network = network
        self.name = name
        self.class_names = list(class_names)
        self.feature_names = list(feature_names)
        self.seq_len = seq_len
        self.hyperparameters = dict(hyperparameters or {})
        self.dataset = dataset
        self.normalisation = None if mean is None else Standardize(mean, std)
        self.module = network if mean is None else nn.Sequential(self.normalisation, network)
        self._gradcam_layer = gradcam_layer or getattr(network, "gradcam_layer", None)
        self.module.eval()

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def device(self) -> torch.device:
        param = next(self.module.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "LoadedModel":
        self.module.to(device)
        return self

    def layer(self, path: str) -> nn.Module:
        """The submodule of the network at a dotted path such as ``cnn.3``."""
        try:
            return self.network.get_submodule(path)
        except AttributeError:
            layers = [n for n, m in self.network.named_modules() if isinstance(m, nn.Conv1d)]
            raise XaiError(f"model {self.name!r} has no layer {path!r}; its Conv1d layers are: "
                           f"{', '.join(layers) or 'none'}") from None

    def gradcam_layer(self) -> nn.Module | None:
        return self.layer(self._gradcam_layer) if self._gradcam_layer else None

    def attention_weights(self) -> list[torch.Tensor] | None:
        getter = getattr(self.network, "attention_weights", None)
        return getter() if callable(getter) else None

    def has_attention(self) -> bool:
        return callable(getattr(self.network, "attention_weights", None))

    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Inputs as float32 ``[batch, time, feature]``, or an XaiError saying what is wrong."""
        X = as_series(inputs, f"inputs for model {self.name!r}", self.n_features)
        if X.shape[2] != self.n_features:
            raise XaiError(f"inputs have {X.shape[2]} feature(s) per time step but model "
                           f"{self.name!r} was trained on {self.n_features} "
                           f"({', '.join(self.feature_names)})")
        if self.seq_len is not None and X.shape[1] != self.seq_len:
            raise XaiError(f"inputs have {X.shape[1]} time steps but model {self.name!r} was "
                           f"trained on series of length {self.seq_len}")
        return X

    @torch.no_grad()
    def logits(self, inputs: Any, batch_size: int = 512) -> np.ndarray:
        X = self.check_inputs(inputs)
        self.module.eval()
        out = [self.module(torch.from_numpy(X[i:i + batch_size]).to(self.device)).float().cpu()
               for i in range(0, len(X), batch_size)]
        return torch.cat(out).numpy()

    def predict_proba(self, inputs: Any, batch_size: int = 512) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits(inputs, batch_size)), dim=1).numpy()


def wrap_model(module: nn.Module, *, class_names: list[str] | None = None,
               n_classes: int | None = None, feature_names: list[str] | None = None,
               n_features: int | None = None, seq_len: int | None = None,
               gradcam_layer: str | None = None, name: str = "custom") -> LoadedModel:
    """Make any ``[batch, time, feature] -> logits`` torch module explainable by xai."""
    if class_names is None:
        if n_classes is None:
            raise XaiError("wrap_model needs class_names or n_classes")
        class_names = [str(i) for i in range(n_classes)]
    if feature_names is None:
        if n_features is None:
            raise XaiError("wrap_model needs feature_names or n_features")
        feature_names = [f"feature_{i}" for i in range(n_features)]
    return LoadedModel(module, name=name, class_names=class_names, feature_names=feature_names,
                       seq_len=seq_len, gradcam_layer=gradcam_layer)


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
    required = ("format", "model", "hyperparameters", "state_dict", "class_names",
                "feature_names", "seq_len")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise XaiError(f"{path} is not an xai checkpoint (expected keys: {', '.join(required)})")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise XaiError(f"{path} has checkpoint format {ckpt['format']!r}; this xai reads "
                       f"format {CHECKPOINT_FORMAT}")
    problem = checkpoint_problem(ckpt)
    if problem:
        raise XaiError(f"{path} is not a valid xai checkpoint: {problem}")
    return ckpt


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checkpoint_problem(ckpt: dict) -> str | None:
    """The first field of a checkpoint with a wrong type or value (NaN/inf weights), else None."""
    if not isinstance(ckpt["model"], str):
        return f"field 'model' must be a string, not {type(ckpt['model']).__name__}"
    if not isinstance(ckpt["hyperparameters"], dict) or \
            not all(isinstance(k, str) for k in ckpt["hyperparameters"]):
        return "field 'hyperparameters' must be a dict with string keys"
    if ckpt["seq_len"] is not None and not (_is_int(ckpt["seq_len"]) and ckpt["seq_len"] > 0):
        return f"field 'seq_len' must be a positive integer or None, not {ckpt['seq_len']!r:.60}"
    for key in ("class_names", "feature_names"):
        names = ckpt[key]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            return f"field {key!r} must be a non-empty list of strings"
    if len(set(ckpt["class_names"])) != len(ckpt["class_names"]):
        return "field 'class_names' has repeated names"
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        return "field 'state_dict' must be a dict of parameter names to tensors"
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        return f"weights {bad[0]!r} (and {len(bad) - 1} more) hold NaN or infinite values"
    norm = ckpt.get("normalisation")
    if norm is not None:
        n = len(ckpt["feature_names"])
        if not isinstance(norm, dict) or any(
                not isinstance(norm.get(k), list) or len(norm[k]) != n
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in norm[k])
                for k in ("mean", "std")):
            return f"field 'normalisation' must be {{mean, std}}: {n} finite numbers each"
    if "dataset" in ckpt and not isinstance(ckpt["dataset"], (dict, str)):
        return "field 'dataset' must be a dataset spec (dict)"
    return None


def model_from_checkpoint(ckpt: dict, device: Any = None) -> LoadedModel:
    """Rebuild the network named in the checkpoint and load its weights."""
    cls = registry.get_model(ckpt["model"])
    network = cls(len(ckpt["feature_names"]), ckpt["seq_len"], len(ckpt["class_names"]),
                  **ckpt["hyperparameters"])
    norm = ckpt.get("normalisation") or {}
    model = LoadedModel(network, name=ckpt["model"], class_names=ckpt["class_names"],
                        feature_names=ckpt["feature_names"], seq_len=ckpt["seq_len"],
                        mean=norm.get("mean"), std=norm.get("std"),
                        hyperparameters=ckpt["hyperparameters"], dataset=ckpt.get("dataset", ""))
    try:
        model.module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise XaiError(f"checkpoint weights do not fit model {ckpt['model']!r}: "
                       f"{str(exc).splitlines()[0]}") from None
    return model.to(resolve_device(device))


def load_run(run_dir: str | Path, device: Any = None) -> LoadedModel:
    """The trained model of a run directory written by ``xai train``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XaiError(f"no run directory at {run_dir}")
    return model_from_checkpoint(load_checkpoint(run_dir / CHECKPOINT), device)


@contextlib.contextmanager
def backward_safe(model: LoadedModel) -> Iterator[None]:
    """Allow backward through RNNs in eval mode: cuDNN refuses it, so it is disabled on CUDA."""
    if model.device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield
