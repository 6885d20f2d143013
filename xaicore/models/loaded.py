"""``LoadedModel``, the core ``Model``: a network with its classes, features and layout."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.errors import XaiError
from xaicore.models.devices import pass_rows
from xaicore.models.kinds import modality_name, modality_of
from xaicore.models.layouts import LayoutAdapter, check_layout
from xaicore.models.modules import SeriesModule, Standardize
from xaicore.plugins import registry
from xaicore.plugins.boundary import call, guard_forward, owner


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
        #: the kind of input (``protocols.Modality``) the network takes
        self.modality = modality_name(network)
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
        #: the fewest steps it predicts from at every step (``protocols.Model.per_step``), or None
        self.per_step = per_step_of(network, name)
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

    def to(self, device: str | torch.device) -> LoadedModel:
        self.module.to(device)
        return self

    def layer(self, path: str) -> nn.Module:
        """The submodule of the network at a dotted path such as ``cnn.3``."""
        try:
            return self.network.get_submodule(path)
        except AttributeError:
            conv = nn.Conv2d if getattr(modality_of(self), "spatial_dims", 1) == 2 else nn.Conv1d
            layers = [n for n, m in self.network.named_modules() if isinstance(m, conv)]
            raise XaiError(f"model {self.name!r} has no layer {path!r}; its {conv.__name__} layers "
                           f"are: {', '.join(layers) or 'none'}") from None

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

    @property
    def gradcam_layer_name(self) -> str | None:
        """The dotted name of the layer Grad-CAM targets by default, or None."""
        return self._gradcam_layer

    def gradcam_layer(self) -> nn.Module | None:
        return self.layer(self._gradcam_layer) if self._gradcam_layer else None

    def attention_weights(self) -> list[torch.Tensor] | None:
        getter = getattr(self.network, "attention_weights", None)
        return getter() if callable(getter) else None

    def has_attention(self) -> bool:
        return callable(getattr(self.network, "attention_weights", None))

    def check_inputs(self, inputs: Any) -> np.ndarray:
        """Inputs as the float32 array of the model's kind of input (series: ``[batch, time,
        feature]``), or an XaiError saying what is wrong."""
        return modality_of(self).check_inputs(self, inputs)

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


def per_step_of(network: nn.Module, name: str) -> int | None:
    """The network's declared ``per_step`` (an int, at least 1), None when it declares none, or a
    one-line XaiError naming the model."""
    steps = getattr(network, "per_step", None)
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise XaiError(f"model {name!r}: per_step must be the fewest time steps it predicts from "
                       f"(an int, at least 1), not {steps!r}")
    return steps


def wrap_model(module: nn.Module, *, class_names: list[str] | None = None,
               n_classes: int | None = None, feature_names: list[str] | None = None,
               n_features: int | None = None, seq_len: int | None = None,
               gradcam_layer: str | None = None, name: str = "custom", layout: str | None = None,
               output: int | None = None, kind: str | None = None,
               facts: dict | None = None) -> LoadedModel:
    """Make a torch classifier explainable by xai: inputs and attributions stay
    ``[batch, time, feature]``, and the module is given them in its own ``layout``: ``NTF``
    ``[batch, time, feature]`` (the default), ``NCT`` ``[batch, channel, time]`` (Conv1d) or
    ``NT`` ``[batch, time]`` (a vector of T values is one feature over T steps). ``output`` picks
    the logits when ``forward`` returns a tuple; ``gradcam_layer`` is a name in
    ``module.named_modules()``.

    ``kind`` names another kind of input the module takes (``xai list``'s MODALITIES), which
    adopts it as ``xai import`` does: ``facts`` are what the kind needs to know of its inputs
    (images: ``{"height": H, "width": W}``), ``layout`` one of the kind's (images: ``NCHW``, the
    default, or ``NHWC``) and ``n_features`` its channels."""
    if class_names is None:
        if n_classes is None:
            raise XaiError("wrap_model needs class_names or n_classes")
        class_names = [str(i) for i in range(n_classes)]
    if feature_names is None:
        if n_features is None:
            raise XaiError("wrap_model needs feature_names or n_features")
        feature_names = [f"feature_{i}" for i in range(n_features)]
    if kind is None or kind == registry.get_modality(None).name:
        return LoadedModel(module, name=name, class_names=class_names,
                           feature_names=feature_names, seq_len=seq_len,
                           gradcam_layer=gradcam_layer, layout=layout or "NTF", output=output)
    modality = registry.get_modality(kind)
    adopt = getattr(modality, "adopt", None)
    if not callable(adopt):
        raise XaiError(f"wrap_model: {modality.name} models take no networks of yours")
    layouts = getattr(modality, "layouts", None) or {}
    layout = layout or next(iter(layouts), None)
    if layout not in layouts:
        raise XaiError(f"wrap_model: layout must be one of "
                       f"{', '.join(f'{k} {v}' for k, v in layouts.items())} for "
                       f"{modality.name}; not {layout!r}")
    info: dict[str, Any] = {"name": name, "class_names": class_names, "feature_names": feature_names,
            "gradcam_layer": gradcam_layer, "dataset": "", "layout": layout, "output": output,
            "hyperparameters": {}}
    model = call("modalities", modality.name, f"{modality.name}.adopt", adopt, module,
                 dict(facts or {}), info)
    module.eval()
    return model
