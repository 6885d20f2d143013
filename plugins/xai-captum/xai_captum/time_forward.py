"""``time-forward:<method>``: tint's ``TimeForwardTunnel`` around any method, for models that
predict at every step (``Model.per_step``).

The prediction after step t is the model's output on the prefix ``x[:, :t + 1]``; the wrapped
method explains it on that prefix (a per-sample baseline and the background cut to it), and the
map keeps, at each step t, the prefix's attribution of that step itself: ``out[:, t] =
A_t[:, t]`` (tint's layout). ``tf_prefixes`` also keeps every prefix's whole map in the extra
``prefix_attributions [sample, prediction step, time, feature]``, zero after the prefix (tint's
``return_temporal_attributions``). ``tf_target`` ``fixed`` explains the explanation's target at
every step (tint with a target given); ``step`` the class the model predicts from each prefix
(tint's ``task="multiclass"``). Steps before the model's first prediction (``per_step - 1``
of them) have no prediction to explain: zero, with ``step_target`` -1 there.

Explainers see one length per call, so each prefix length is one call of the wrapped method,
with every sample of the batch in it (its own passes inside); extras of the wrapped method
shaped like its attributions (shap's ``standard_error``) are assembled like them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError, declared

TARGETS = ("fixed", "step")
ALONE = ("time-forward wraps another method; use it as time-forward:<method>, for example "
         "time-forward:integrated-gradients")
FORWARD_OPTIONS = (
    Option("tf_target", str, "fixed", choices=TARGETS,
           help="fixed: the explanation's target at every step; step: at each step the class "
                "the model predicts from the prefix"),
    Option("tf_prefixes", bool, False,
           help="also keep every prefix's whole map in the extra prefix_attributions [sample, "
                "prediction step, time, feature]"),
)
OWN = frozenset(option.name for option in FORWARD_OPTIONS)
COSTLY = 48  # samples xai evaluate explains by default: one call of the method per step


def refusal(model: Any) -> str | None:
    """Why ``model`` cannot be explained step by step (it declares no ``per_step``), or None."""
    if getattr(model, "per_step", None) is None:
        return ("time-forward explains the prediction a model makes at every step, and this "
                "model predicts from whole series only (its network declares no per_step)")
    return None


class TimeForward:
    """The registered ``time-forward`` entry: ``wrap(explainer)`` returns the tunnel around it."""

    name = "time-forward"
    description = ("time-forward:<method>: the method at every prefix, for models that predict at "
                   "every step (tint's TimeForwardTunnel)")
    options = FORWARD_OPTIONS  # what xai list shows; time-forward:<method> takes them and <method>'s
    defaults = {option.name: option.default for option in FORWARD_OPTIONS}

    def check(self, model: LoadedModel) -> str | None:
        return ALONE

    def explain(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                **options: Any) -> Any:
        raise XaiError(ALONE)

    def wrap(self, inner: Any) -> TimeForwardExplainer:
        if callable(getattr(inner, "wrap", None)):
            raise XaiError(f"time-forward wraps a method, not the wrapper {inner.name!r} alone "
                           f"(use {inner.name}:<method>)")
        return TimeForwardExplainer(inner)


class TimeForwardExplainer(BaseExplainer):
    """``inner`` at every prefix: its own options and the wrapped method's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = f"time-forward:{inner.name}"  # type: ignore[misc]
        self.description = f"Time-forward tunnel around {inner.name}"  # type: ignore[misc]
        clash = OWN & {option.name for option in declared(inner)}
        if clash:
            raise XaiError(f"time-forward cannot wrap {inner.name}: it has options "
                           f"{', '.join(sorted(clash))} of its own")
        self.options = (*FORWARD_OPTIONS, *declared(inner))  # type: ignore[misc]
        self.defaults = {option.name: option.default for option in self.options}  # type: ignore[misc]
        self.requires = tuple(getattr(inner, "requires", ()))  # type: ignore[misc]
        self.maps_time = bool(getattr(inner, "maps_time", False))  # type: ignore[misc]
        most = getattr(inner, "evaluation_samples", None)
        self.evaluation_samples = min(COSTLY, most or COSTLY)  # type: ignore[misc]

    def check(self, model: LoadedModel) -> str | None:
        return refusal(model) or self.inner.check(model)

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict]:
        reason = refusal(model)
        if reason:
            raise XaiError(f"{self.name} cannot explain model {model.name!r}: {reason}")
        n, steps, channels = inputs.shape
        first = int(model.per_step)  # type: ignore[arg-type]
        if steps < first:
            raise XaiError(f"{self.name}: model {model.name!r} predicts from {first} steps on; "
                           f"these series have {steps}")
        inner = {k: v for k, v in opts.items() if k not in OWN}
        out = torch.zeros(inputs.shape, dtype=torch.float32)
        step_target = torch.full((n, steps), -1, dtype=torch.long)
        step_probability = torch.full((n, steps), float("nan"))
        prefixes = torch.zeros(n, steps, *inputs.shape[1:]) if opts["tf_prefixes"] else None
        cells: dict[str, torch.Tensor] = {}
        for t in range(first - 1, steps):
            given = {k: self.prefix(k, v, t + 1, steps) for k, v in inner.items()}
            result = self.inner.explain(model, inputs[:, :t + 1],
                                        target if opts["tf_target"] == "fixed" else None, **given)
            attributions = torch.as_tensor(np.asarray(result.attributions, dtype=np.float32))
            out[:, t] = attributions[:, t]
            if prefixes is not None:
                prefixes[:, t, :t + 1] = attributions
            explained = torch.as_tensor(np.asarray(result.targets), dtype=torch.long)
            step_target[:, t] = explained
            probabilities = torch.as_tensor(np.asarray(result.probabilities, dtype=np.float32))
            step_probability[:, t] = probabilities.gather(1, explained[:, None])[:, 0]
            for key, value in result.extras.items():
                if isinstance(value, np.ndarray) and value.shape == attributions.shape:
                    cells.setdefault(key, torch.zeros(inputs.shape))[:, t] = \
                        torch.as_tensor(value[:, t], dtype=torch.float32)
        extras: dict[str, Any] = {**cells, "step_target": step_target,
                                  "step_probability": step_probability, "first_step": first - 1}
        if prefixes is not None:
            extras["prefix_attributions"] = prefixes
        return out.to(inputs.device), extras

    def prefix(self, key: str, value: Any, length: int, steps: int) -> Any:
        """An option's value for the prefix of ``length`` steps: a per-sample series (a baseline)
        and the background series cut to it, anything else as given."""
        if key in self.series_names() and isinstance(value, torch.Tensor):
            return value[:, :length]
        if key == "background" and isinstance(value, (np.ndarray, torch.Tensor)) \
                and value.ndim == 3 and value.shape[1] == steps:
            return value[:, :length]
        return value
