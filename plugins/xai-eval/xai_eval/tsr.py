"""Temporal Saliency Rescaling (Ismail et al., NeurIPS 2020) around any explainer, in torch.

1. Explain the input with the wrapped method: R.
2. Time relevance: for every time step t, mask all its features (with the per-feature train mean, or
   zero for a model without stored normalisation), explain again, and score
   ``time[t] = sum |R - R_masked|``.
3. Time steps with ``time[t]`` above the sample's mean are relevant. Within each, mask every feature
   alone and score ``feature[t, f] = sum |R - R_masked|`` (with one feature this is the step itself,
   so its feature relevance is 1).
4. The result is ``time[t] * feature[t, f]`` in relevant steps and 0 elsewhere (non-negative).

Masked copies go through the wrapped explainer in batches of ``batch_size`` series.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from xaicore.plugin import (
    Explanation,
    LoadedModel,
    Option,
    XaiError,
    build_explanation,
    declared,
    modality_of,
)

from .guard import explain_again, explainer_call

BATCH_SIZE = 64
ALONE = ("tsr wraps another explainer; use it as tsr:<method>, for example "
         "tsr:integrated-gradients")


class TemporalSaliencyRescaling:
    """The registered ``tsr`` entry: ``wrap(explainer)`` returns the rescaling explainer."""

    name = "tsr"
    description = "Temporal Saliency Rescaling around another explainer: tsr:<method>"
    defaults: dict[str, Any] = {}
    options: tuple[Option, ...] = ()  # none of its own: tsr:<method> takes those of <method>

    def check(self, model: LoadedModel) -> str | None:
        return ALONE

    def explain(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                **options: Any) -> Explanation:
        raise XaiError(ALONE)

    def wrap(self, inner: Any) -> TSRExplainer:
        if isinstance(inner, (TemporalSaliencyRescaling, TSRExplainer)):
            raise XaiError("tsr cannot wrap tsr; wrap an attribution method such as saliency")
        return TSRExplainer(inner)


class TSRExplainer:
    """TSR applied to ``inner``; its options are the wrapped explainer's and pass through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = f"tsr:{inner.name}"
        self.description = f"Temporal Saliency Rescaling of {inner.name}"
        self.defaults = dict(getattr(inner, "defaults", {}))
        self.options = tuple(declared(inner))
        self.requires = tuple(getattr(inner, "requires", ()))

    def check(self, model: LoadedModel) -> str | None:
        if getattr(modality_of(model), "spatial_dims", 1) != 1:
            return ("Temporal Saliency Rescaling rescales time steps and features; this model's "
                    "input has two spatial axes, not a time axis. Use the method without tsr:")
        return explainer_call(self.inner.name, "check", self.inner.check, model)

    def _explain(self, model: LoadedModel, x: torch.Tensor, t: torch.Tensor,
                 options: dict) -> torch.Tensor:
        return torch.as_tensor(explain_again(self.inner, model, x, t, **options).attributions,
                               device=x.device)

    def _changes(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                 reference: torch.Tensor, fill: torch.Tensor, sample: np.ndarray, step: np.ndarray,
                 feature: np.ndarray | None, options: dict) -> np.ndarray:
        """``sum |R - R_masked|`` for each (sample, time step[, feature]) job, masked copies batched."""
        out = np.empty(len(sample))
        for start in range(0, len(sample), BATCH_SIZE):
            s = torch.as_tensor(sample[start:start + BATCH_SIZE], device=inputs.device)
            ts = torch.as_tensor(step[start:start + BATCH_SIZE], device=inputs.device)
            x = inputs[s].clone()
            rows = torch.arange(len(s), device=inputs.device)
            if feature is None:
                x[rows, ts] = fill
            else:
                fs = torch.as_tensor(feature[start:start + BATCH_SIZE], device=inputs.device)
                x[rows, ts, fs] = fill[fs]
            masked = self._explain(model, x, target[s], options)
            out[start:start + len(s)] = (reference[s] - masked).abs().nansum(dim=(1, 2)).cpu().numpy()
        return out

    def explain(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                **options: Any) -> Explanation:
        reference = self._explain(model, inputs, target, options)
        n, T, F = inputs.shape
        fill = (model.normalisation.mean.to(inputs.device, inputs.dtype).reshape(-1)
                if model.normalisation is not None else torch.zeros(F, device=inputs.device))
        with warnings.catch_warnings():  # the masked copies' own warnings (IG deltas...) are noise
            warnings.simplefilter("ignore", RuntimeWarning)
            sample, step = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(T), indexing="ij"))
            valid = ~torch.isnan(inputs).all(2).cpu().numpy().ravel()  # padding is never masked
            time = np.full(n * T, np.nan)
            time[valid] = self._changes(model, inputs, target, reference, fill, sample[valid],
                                        step[valid], None, options)
            time = time.reshape(n, T)
            relevant = time > np.nanmean(time, axis=1, keepdims=True)
            feature = np.ones((n, T, F))
            if F > 1:
                rel_s, rel_t = np.nonzero(relevant)
                s, t, f = (np.repeat(rel_s, F), np.repeat(rel_t, F), np.tile(np.arange(F), len(rel_s)))
                feature[s, t, f] = self._changes(model, inputs, target, reference, fill, s, t, f,
                                                 options)
        rescaled = np.where(relevant[:, :, None], time[:, :, None] * feature, 0.0)
        public = {k: v for k, v in options.items() if not isinstance(v, (torch.Tensor, np.ndarray))}
        return build_explanation(model, inputs, target, rescaled, self.name, public,
                                 {"time_relevance": time})
