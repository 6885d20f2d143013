"""``LoadedModel`` (the core ``Model``), checkpoints and run directories."""

from __future__ import annotations

import contextlib
import os
import pickle
import weakref
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from xaicore.plugins import registry
from xaicore.plugins.boundary import failure, guard_forward, owner
from xaicore.data.dataset import as_series, pad_to, series_lengths
from xaicore.errors import XaiError
from xaicore.runs.directory import CHECKPOINT, checkpoint_digest
from xaicore.runs.layouts import LayoutAdapter, check_layout

CHECKPOINT_FORMAT = 1


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pass_rows(device: torch.device | str, values_per_row: int) -> int:
    """Rows per no-grad forward pass of series with ``values_per_row`` (time x feature) values.

    On CPU small passes stay in cache and run fastest (rows/s fall beyond a few hundred rows of a
    GunPoint-sized series); on CUDA large passes fill the device.
    """
    cpu = torch.device(device).type == "cpu"
    most, values = (256, 2 ** 16) if cpu else (8192, 2 ** 23)
    return int(min(most, max(1, values // max(1, values_per_row))))


_memory_share = 1.0


def share_memory(fraction: float) -> None:
    """Let this process plan its passes with ``fraction`` of the free memory it sees: processes
    working side by side (the evaluation's workers) each take their share."""
    global _memory_share
    if not 0 < fraction <= 1:
        raise ValueError(f"memory share must be in (0, 1], got {fraction}")
    _memory_share = float(fraction)


def memory_share() -> float:
    """The fraction of the free memory this process may plan with (``share_memory``; 1 alone)."""
    return _memory_share


#: cgroup memory limit and usage files: v2, then v1 (a container sees its own group at the root).
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def free_memory(device: torch.device | str) -> int:
    """Bytes this process may still allocate on ``device``: free memory on CUDA; otherwise the
    least of the available RAM, what its address-space and data limits leave (RLIMIT_AS against
    VmSize, RLIMIT_DATA against VmData) and what its cgroup's memory limit leaves."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return max(0, min([available_ram(), *limit_headroom(), *cgroup_headroom()]))


def available_ram() -> int:
    """MemAvailable of /proc/meminfo, else the free physical pages."""
    meminfo = _read_kib("/proc/meminfo")
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def limit_headroom() -> list[int]:
    """Bytes left under this process's finite RLIMIT_AS and RLIMIT_DATA."""
    try:
        import resource
    except ImportError:  # no POSIX limits on this platform
        return []
    status = _read_kib("/proc/self/status")
    left = []
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and used in status:
            left.append(soft - status[used])
    return left


def cgroup_headroom() -> list[int]:
    """Bytes left under the memory limit of this process's cgroup (none when unlimited)."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**62:  # "max" or a huge number: no limit
            return [int(limit) - usage]
        return []
    return []


def _read_kib(path: str) -> dict[str, int]:
    """``Name: N kB`` lines of a /proc file as bytes (an empty dict where there is no /proc)."""
    values = {}
    try:
        with open(path) as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                    values[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


_saved_bytes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def saved_bytes_per_row(module: nn.Module, row: torch.Tensor) -> int:
    """Bytes of the tensors a forward of ``module`` keeps for its backward, per input row like
    ``row``: measured on probes of 2 and 4 copies of it (their difference leaves out what does
    not grow with the batch, the parameters), once per module, row shape, type and device."""
    key = (tuple(row.shape), row.dtype, row.device, module.training)
    known = _saved_bytes.setdefault(module, {})
    if key not in known:
        known[key] = _measure_saved_bytes(module, row)
    return known[key]


def _measure_saved_bytes(module: nn.Module, row: torch.Tensor) -> int:
    def saved(rows: int) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.layout == torch.strided:
                storage = tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        x = row.detach()[None].expand(rows, *row.shape).clone().requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        return sum(storages.values())

    return max(0, (saved(4) - saved(2)) // 2)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device that exists here (None or "auto": cuda when available)."""
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise XaiError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise XaiError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index or 0) >= torch.cuda.device_count()):
        raise XaiError(f"device {device!r} requested but that CUDA device is not available here")
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


def padded_lengths(x: torch.Tensor) -> torch.Tensor | None:
    """The valid length of every row of ``x [batch, time, feature]`` whose trailing steps are NaN
    in every feature (padding), or None when no row is padded."""
    pad = torch.isnan(x).all(-1)
    if not bool(pad[:, -1].any()):
        return None
    trailing = pad.flip(1).long().cumprod(1).sum(1)
    return x.shape[1] - trailing


class SeriesModule(nn.Sequential):
    """Normalisation then the network. A padded batch (trailing NaN steps) reaches the network as
    zeros with the valid ``lengths`` of its rows: ``network(x, lengths)``; gradients on padding
    are zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalisation, network = self
        lengths = padded_lengths(x)
        x = normalisation(x)
        if lengths is None:
            return network(x)
        if not getattr(network, "variable_length", False):
            raise XaiError(f"model {type(network).__name__} cannot mask padding (NaN after the "
                           f"end of a series); it would read padding as data")
        return network(torch.where(torch.isnan(x), torch.zeros_like(x), x), lengths)


class LoadedModel:
    """A network with its metadata; ``module`` maps raw ``[batch, time, feature]`` inputs to logits.

    Normalisation is part of ``module``, so attributions are in the units of the data as loaded.
    ``layout`` None: the network takes ``[batch, time, feature]`` itself (a registered network);
    otherwise ``module`` calls it through a ``LayoutAdapter`` in that layout (``NTF``, ``NCT`` or
    ``NT``), with ``output`` picking the logits of a network that returns a tuple. ``network``
    stays the user's own module, so layers and attention are found under their own names.
    """

    input_layout = "NTF"

    def __init__(self, network: nn.Module, *, name: str, class_names: list[str],
                 feature_names: list[str], seq_len: int | None, mean: Any = None, std: Any = None,
                 hyperparameters: dict | None = None, dataset: str = "",
                 gradcam_layer: str | None = None, layout: str | None = None,
                 output: int | None = None) -> None:
        self.network = network
        guard_forward(network, name)
        self.name = name
        self.class_names = list(class_names)
        self.feature_names = list(feature_names)
        self.seq_len = seq_len
        self.hyperparameters = dict(hyperparameters or {})
        self.dataset = dataset
        #: sha256 of the checkpoint the model was loaded from ("" for a model wrapped in memory);
        #: every result records it, so results of another model are never taken for this one's
        self.digest = ""
        if layout is not None:
            check_layout(layout, len(self.feature_names))
        forward = network if layout is None else LayoutAdapter(network, layout, output)
        #: whether the network masks padding, so it takes variable-length series (NaN-padded)
        self.variable_length = bool(getattr(network, "variable_length", False))
        self.normalisation = None if mean is None else Standardize(mean, std)
        self.module = (forward if mean is None and not self.variable_length else
                       SeriesModule(self.normalisation or nn.Identity(), forward))
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

    def check_forward(self, x: torch.Tensor) -> None:
        """Run ``x`` (a few samples) through the model and refuse an output that is not logits
        ``[batch, classes]``, naming what came back."""
        was_training = self.module.training
        self.module.eval()
        with torch.no_grad():
            out = self.module(x)
        self.module.train(was_training)
        expected = (len(x), self.n_classes)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = (f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
                   else f"a {type(out).__name__}")
            raise XaiError(f"{owner('models', self.name)}: model {self.name!r} must return logits "
                           f"[batch, classes] = {list(expected)} from forward, not {got}")

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
        if self.variable_length and self.seq_len is not None and X.shape[1] < self.seq_len:
            X = pad_to(X, self.seq_len)  # shorter series are padded to the trained length
        if self.seq_len is not None and X.shape[1] != self.seq_len:
            longest = "at most " if self.variable_length else ""
            raise XaiError(f"inputs have {X.shape[1]} time steps but model {self.name!r} was "
                           f"trained on series of length {longest}{self.seq_len}")
        lengths = series_lengths(X)
        if not self.variable_length and (lengths < X.shape[1]).any():
            i = int(np.argmax(lengths < X.shape[1]))
            raise XaiError(f"inputs are variable-length (sample {i} ends in NaN padding after "
                           f"{int(lengths[i])} of {X.shape[1]} steps) but model {self.name!r} "
                           f"cannot mask padding; use a model that can (the built-in ones do)")
        return X

    @torch.no_grad()
    def logits(self, inputs: Any, batch_size: int | None = None) -> np.ndarray:
        X = self.check_inputs(inputs)
        self.module.eval()
        batch_size = batch_size or pass_rows(self.device, int(np.prod(X.shape[1:])))
        out = [self.module(torch.from_numpy(X[i:i + batch_size]).to(self.device)).float().cpu()
               for i in range(0, len(X), batch_size)]
        return torch.cat(out).numpy()

    def predict_proba(self, inputs: Any, batch_size: int | None = None) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits(inputs, batch_size)), dim=1).numpy()


def wrap_model(module: nn.Module, *, class_names: list[str] | None = None,
               n_classes: int | None = None, feature_names: list[str] | None = None,
               n_features: int | None = None, seq_len: int | None = None,
               gradcam_layer: str | None = None, name: str = "custom", layout: str = "NTF",
               output: int | None = None) -> LoadedModel:
    """Make a torch classifier explainable by xai: inputs and attributions stay
    ``[batch, time, feature]``, and the module is given them in its own ``layout``: ``NTF``
    ``[batch, time, feature]``, ``NCT`` ``[batch, channel, time]`` (Conv1d) or ``NT``
    ``[batch, time]`` (a vector of T values is one feature over T steps). ``output`` picks the
    logits when ``forward`` returns a tuple; ``gradcam_layer`` is a name in
    ``module.named_modules()``."""
    if class_names is None:
        if n_classes is None:
            raise XaiError("wrap_model needs class_names or n_classes")
        class_names = [str(i) for i in range(n_classes)]
    if feature_names is None:
        if n_features is None:
            raise XaiError("wrap_model needs feature_names or n_features")
        feature_names = [f"feature_{i}" for i in range(n_features)]
    return LoadedModel(module, name=name, class_names=class_names, feature_names=feature_names,
                       seq_len=seq_len, gradcam_layer=gradcam_layer, layout=layout, output=output)


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
    model = _model_from_checkpoint(ckpt, device)
    if source is not None:
        model.digest = checkpoint_digest(Path(source))
    return model


def _model_from_checkpoint(ckpt: dict, device: Any) -> LoadedModel:
    if ckpt["model"] == "imported":  # a model brought in with xai import
        from xaicore.runs.importing import IMPORTED, build, own_layer

        spec = ckpt.get("import")
        if not (isinstance(spec, dict) and all(isinstance(spec.get(k), str)
                                               for k in ("file", "attr", "sha256", "layout"))
                and (spec.get("output") is None or type(spec.get("output")) is int)
                and (spec.get("gradcam_layer") is None or isinstance(spec["gradcam_layer"], str))):
            raise XaiError("the checkpoint of an imported model lacks its 'import' entry (file, "
                           "attr, sha256, layout; output and gradcam_layer an int and a string "
                           "or none)")
        model = LoadedModel(build(spec, ckpt["hyperparameters"]), name=IMPORTED,
                            class_names=ckpt["class_names"], feature_names=ckpt["feature_names"],
                            seq_len=ckpt["seq_len"], hyperparameters=ckpt["hyperparameters"],
                            gradcam_layer=own_layer(spec.get("gradcam_layer")),
                            layout=spec["layout"], output=spec.get("output"),
                            dataset=(ckpt.get("dataset") or {}).get("name", ""))
        load_weights(model.module, ckpt["state_dict"], spec["attr"])
        return model.to(resolve_device(device))
    cls = registry.get_model(ckpt["model"])
    try:
        network = cls(len(ckpt["feature_names"]), ckpt["seq_len"], len(ckpt["class_names"]),
                      **ckpt["hyperparameters"])
    except (TypeError, ValueError) as exc:
        raise XaiError(f"the checkpoint's hyperparameters do not fit model {ckpt['model']!r}: "
                       f"{exc}") from None
    except XaiError:
        raise
    except Exception as exc:  # noqa: BLE001 - the plugin's constructor
        raise failure("models", ckpt["model"], f"{ckpt['model']}.__init__", exc) from exc
    norm = ckpt.get("normalisation")
    if norm is None:  # xai train always stores it
        raise XaiError(f"the checkpoint lacks 'normalisation' (the train split's per-feature mean "
                       f"and std that model {ckpt['model']!r} was trained with)")
    model = LoadedModel(network, name=ckpt["model"], class_names=ckpt["class_names"],
                        feature_names=ckpt["feature_names"], seq_len=ckpt["seq_len"],
                        mean=norm.get("mean"), std=norm.get("std"),
                        hyperparameters=ckpt["hyperparameters"],
                        dataset=(ckpt.get("dataset") or {}).get("name", ""))
    load_weights(model.module, ckpt["state_dict"], ckpt["model"])
    return model.to(resolve_device(device))


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


@contextlib.contextmanager
def backward_safe(model: LoadedModel) -> Iterator[None]:
    """Allow backward through RNNs in eval mode: cuDNN refuses it, so it is disabled on CUDA."""
    if model.device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield
