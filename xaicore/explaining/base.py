"""``BaseExplainer``: the shared half of every explainer (option checks, building the result)."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import torch

from xaicore.errors import XaiError
from xaicore.explaining.explanation import Explanation
from xaicore.explaining.lengths import attribute_by_length
from xaicore.models.devices import backward_safe
from xaicore.models.kinds import ViewModel, modality_of
from xaicore.models.loaded import LoadedModel
from xaicore.models.modules import padded_lengths
from xaicore.plugins.options import Option, Series, declared, defaults_of, resolve


class BaseExplainer:
    """Subclasses set ``name``, ``description``, ``options`` and implement ``attribute``.

    ``options`` declares each option once (``xaicore.plugins.options.Option``: type, default, range or
    choices, help); ``defaults`` is derived from it. A subclass that sets only a ``defaults`` dict
    gets options typed after its default values.

    Variable-length inputs (NaN padding) are explained in groups of one length, each cut to that
    length (``lengths.attribute_by_length``), so ``attribute`` never sees padding, whatever the
    kind of input.

    ``attribute(model, inputs, target, **options)`` returns ``(attributions, extras)`` with
    attributions shaped like ``inputs``, or ``(attributions, extras, logits)`` when it already ran
    the model on ``inputs`` (the logits are reused instead of another forward pass); ``explain``
    checks the options, runs it with gradients enabled (cuDNN off for RNN backward on CUDA) and
    wraps the result in an ``Explanation``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    options: ClassVar[tuple[Option, ...]] = ()
    #: True when ``attribute`` accepts ``target=None`` and explains, for each sample, the class its
    #: own forward pass predicts (returning those logits), so no extra forward is needed.
    resolves_predicted: ClassVar[bool] = False
    #: Data the explainer takes from the run when it explains it: "background" = the train inputs.
    requires: ClassVar[tuple[str, ...]] = ()
    #: True when the method maps importance over time and gives every feature the same value
    #: (Grad-CAM, attention): series of one time step are refused, the map would be a constant,
    #: and its explanations say so (``extras["time_only"]``: views show no per-feature split).
    maps_time: ClassVar[bool] = False
    #: True when the method differentiates the model: it attributes on the view its kind of input
    #: gives (``Modality.differentiable``: texts' embeddings), folded back to the inputs' shape.
    differentiates: ClassVar[bool] = False
    #: A costly method (many forward passes per sample) sets the most samples the default
    #: ``xai evaluate`` explains with it (a seeded subset; ``--full`` lifts it); None: all of them.
    evaluation_samples: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options" in cls.__dict__:
            cls.defaults = defaults_of(cls.options)

    def check(self, model: LoadedModel) -> str | None:
        return None

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor | None,
                  **options: Any) -> tuple[Any, dict]:
        raise NotImplementedError

    def resolve_options(self, options: dict) -> dict:
        """Defaults overlaid with ``options``, each checked against its declaration."""
        return resolve(self.name, self, options)

    def explain(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor | None,
                **options: Any) -> Explanation:
        """Explain ``inputs`` for ``target`` class indices, or (None) for the class the model
        predicts for each sample, found in the explainer's own forward pass where it can."""
        opts = self.resolve_options(options)
        series = {k for k in self.series_names() if isinstance(opts.get(k), np.ndarray)}
        opts = {k: per_sample(self.name, k, v, inputs, model) if k in series else v
                for k, v in opts.items()}
        if self.maps_time and inputs.shape[1] == 1:
            raise XaiError(one_step_message(self.name, inputs.shape[2]))
        model.module.eval()
        first = None
        if target is None and not self.resolves_predicted:  # the predicted class, found first
            with torch.no_grad():
                first = model.module(inputs)
            target = first.argmax(1)
        modality = modality_of(model)
        if self.differentiates and series and modality.differentiable(model, inputs[:1]) is not None:
            raise XaiError(f"{self.name}: options {', '.join(sorted(series))} take arrays only "
                           f"for inputs it differentiates themselves, not {modality.name}")
        lengths = padded_lengths(inputs)
        with torch.enable_grad(), backward_safe(model):
            if lengths is None:
                attributions, extras, logits = self.attribute_on(model, inputs, target, opts)
            else:  # each group at its own length: no padding beyond it reaches the explainer
                attributions, extras, logits = attribute_by_length(
                    self.attribute_on, model, inputs, target, opts, lengths, series)
        logits = first if logits is None else logits
        if target is None:
            if logits is None:
                raise XaiError(f"{self.name} resolves the predicted class but returned no logits")
            target = logits.detach().argmax(1)
        public = {k: v for k, v in opts.items() if not isinstance(v, (torch.Tensor, np.ndarray))}
        if self.maps_time:
            extras = {**extras, "time_only": True}
        return build_explanation(model, inputs, target, attributions, self.name, public, extras,
                                 logits)

    def attribute_on(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor | None,
                     opts: dict) -> tuple[Any, dict, torch.Tensor | None]:
        """``attribute_in_halves`` on the inputs, or for a method that differentiates, on the
        view the kind of input gives (texts: the embeddings), folded back to the inputs' shape."""
        view = modality_of(model).differentiable(model, inputs) if self.differentiates else None
        if view is None:
            return self.attribute_in_halves(model, inputs, target, opts)
        on_view = cast(LoadedModel, ViewModel(model, view.module))
        attributions, extras, logits = self.attribute_in_halves(on_view, view.inputs, target, opts)
        return view.fold(attributions), extras, logits

    def series_names(self) -> frozenset[str]:
        """The options of type ``Series``: given an array, one reaches ``attribute`` per sample,
        shaped like the inputs and cut along with them."""
        return frozenset(option.name for option in declared(self) if option.type is Series)

    def attribute_in_halves(self, model: LoadedModel, inputs: torch.Tensor,
                            target: torch.Tensor | None,
                            opts: dict) -> tuple[Any, dict, torch.Tensor | None]:
        """``attribute`` on the batch; when it runs out of memory, on each half of the batch in
        turn (down to single samples, then a one-line error)."""
        logits: list[torch.Tensor]
        try:
            attributions, extras, *logits = self.attribute(model, inputs, target, **opts)
            return attributions, extras, (logits[0] if logits else None)
        except (MemoryError, RuntimeError) as exc:
            if not out_of_memory(exc):
                raise
        if len(inputs) == 1:
            raise XaiError(f"{self.name}: explaining one series of {inputs.shape[1]} time steps "
                           f"x {inputs.shape[2]} features needs more memory than is available "
                           f"here; shorten or downsample the series") from None
        half = len(inputs) // 2
        series = {k for k, v in opts.items() if k in self.series_names() and isinstance(v, torch.Tensor)}
        parts = [self.attribute_in_halves(model, inputs[s], None if target is None else target[s],
                                          {k: v[s] if k in series else v for k, v in opts.items()})
                 for s in (slice(None, half), slice(half, None))]
        return join_parts(parts)


def as_inputs(model: Any, array: np.ndarray, row: tuple[int, int]) -> np.ndarray:
    """``array`` laid out as the model's inputs read it: one input (``[steps, features]``) when
    the model's ``check_inputs`` takes it as one, else as many; unchanged when it takes neither
    or only by changing its values' count (padding a shorter series is no layout)."""
    for batch in (array[None], array):
        try:
            converted = model.check_inputs(batch)
        except XaiError:
            continue
        if converted.size != batch.size:
            continue
        return converted[0] if len(batch) == 1 and converted.shape[1:] == row else converted
    return array


def per_sample(method: str, name: str, value: np.ndarray, inputs: torch.Tensor,
               model: Any = None) -> torch.Tensor:
    """A ``Series`` option's array as one series per sample, shaped like ``inputs`` on its device:
    ``[time, feature]`` (``[time]`` for one feature) repeated for every sample, or
    ``[sample, time, feature]`` as given, or either in a layout ``model``'s inputs take (an
    image ``[C, H, W]``: its kind's ``check_inputs``); NaN or infinite values only where the
    inputs are padding."""
    n, steps, features = inputs.shape
    array = value[:, None] if value.ndim == 1 and features == 1 else value
    if array.shape not in ((steps, features), (n, steps, features)) and model is not None:
        array = as_inputs(model, array, (steps, features))
    if array.shape == (steps, features):
        array = np.broadcast_to(array, (n, steps, features))
    if array.shape != (n, steps, features):
        raise XaiError(f"{method}: option {name!r} must be [time, feature] = ({steps}, {features}) "
                       f"shared by every sample or [sample, time, feature] = ({n}, {steps}, "
                       f"{features}); got shape {value.shape}")
    series = torch.as_tensor(np.ascontiguousarray(array), dtype=inputs.dtype, device=inputs.device)
    if bool((~torch.isfinite(series) & ~torch.isnan(inputs)).any()):
        raise XaiError(f"{method}: option {name!r} holds NaN or infinite values inside the series "
                       f"(allowed only in the padding after each series' length)")
    return series


def one_step_message(method: str, n_features: int) -> str:
    """Why a map over time cannot explain series of one time step, and the likely layout mistake."""
    return (f"{method} maps importance over time, but these series have one time step "
            f"({n_features} feature(s)), so every feature would get one constant; is the layout "
            f"right? A vector of {n_features} values read as one series is [n, {n_features}, 1] "
            f"(wrap_model(layout=...) or xai import --layout gives it to your model as NT or NCT); "
            f"otherwise use a per-feature method such as saliency or integrated-gradients")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CPU allocator, CUDA, or numpy)."""
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or \
        "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower()


def join_parts(parts: list[tuple[Any, dict, Any]]) -> tuple[Any, dict, Any]:
    """Attributions, per-sample extras and logits of consecutive sample ranges, joined."""
    def join(values: list[Any]) -> Any:
        if isinstance(values[0], torch.Tensor):
            return torch.cat(values)
        if isinstance(values[0], np.ndarray) and values[0].ndim:
            return np.concatenate(values)
        return values[0]  # a whole-batch value (JSON), the same for every part

    extras = {key: join([p[1][key] for p in parts]) for key in parts[0][1]}
    logits = None if parts[0][2] is None else torch.cat([p[2] for p in parts])
    return join([p[0] for p in parts]), extras, logits


def build_explanation(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                      attributions: Any, method: str, options: dict,
                      extras: dict | None = None, logits: torch.Tensor | None = None) -> Explanation:
    """An ``Explanation`` with the model's predictions and probabilities for ``inputs``
    (from ``logits`` when the explainer already computed them, else from a forward pass)."""
    with torch.no_grad():
        if logits is None:
            logits = model.module(inputs)
        probs = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
    if isinstance(attributions, torch.Tensor):
        attributions = attributions.detach().float().cpu().numpy()
    extras = {k: (v.detach().cpu().numpy() if not isinstance(v, torch.Tensor)
                  or not v.is_floating_point() else v.detach().float().cpu().numpy())
              if isinstance(v, torch.Tensor) else v for k, v in (extras or {}).items()}
    X = inputs.detach().cpu().numpy()
    modality = modality_of(model)
    annotate = getattr(modality, "annotate", None)  # optional: per-sample extras of the kind
    if callable(annotate):
        extras = {**annotate(model, X), **extras}
    return Explanation(attributions, X, target.cpu().numpy(),
                       probs.argmax(1), probs, method, options, extras,
                       class_names=model.class_names, feature_names=model.feature_names,
                       model_name=model.name, dataset=getattr(model, "dataset", ""),
                       model_digest=getattr(model, "digest", ""),
                       modality=modality.name)
