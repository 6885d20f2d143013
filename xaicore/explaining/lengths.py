"""Explaining variable-length series: every sample at its own length, then padded back.

A batch with padding (trailing NaN steps) is split into groups of samples of one valid length;
each group, cut to that length, goes through the explainer as fixed-length series (a user's
per-sample baselines cut with it), so baselines,
blurs, SHAP segments, Grad-CAM upsampling and attention all stay within the valid steps and give
what the sample gives on its own. Attributions and per-sample array extras are padded back with
NaN (-1 for integers, False for booleans); a whole-batch value that differs between groups
becomes a dict keyed by the length. Background series (``background``, train inputs) are cut to
the group's length, their own padding filled with the background's per-feature mean.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch

Attribute = Callable[..., tuple[Any, dict, Any]]


def attribute_by_length(attribute: Attribute, model: Any, inputs: torch.Tensor,
                        target: torch.Tensor | None, opts: dict, lengths: torch.Tensor,
                        series: Collection[str] = ()) -> tuple[np.ndarray, dict, torch.Tensor | None]:
    """``attribute(model, inputs, target, opts)`` on each group of one length, joined in the
    order of ``inputs``; the options named in ``series`` (per-sample series shaped like the
    inputs, a user's baselines) are cut to the group's rows and length with them."""
    groups = []
    for length in sorted(lengths.unique().tolist()):
        rows = (lengths == length).nonzero()[:, 0]
        cut = {k: cut_background(v, length, inputs.shape[1]) if k == "background" else
               v[rows, :length] if k in series else v for k, v in opts.items()}
        groups.append((length, rows, attribute(model, inputs[rows, :length],
                                               None if target is None else target[rows], cut)))
    order = torch.cat([rows for _, rows, _ in groups]).argsort().cpu().numpy()
    attributions = pad_join([as_numpy(part[0]) for _, _, part in groups],
                            inputs.shape[1:])[order]
    extras: dict[str, Any] = {}
    for key in dict.fromkeys(key for _, _, part in groups for key in part[1]):
        if any(key not in part[1] for _, _, part in groups):  # notes of some groups (warnings)
            extras[key] = list(dict.fromkeys(item for _, _, part in groups for item in part[1].get(key, [])))
            continue
        values = [part[1][key] for _, _, part in groups]
        if all(is_array(v) for v in values):
            extras[key] = pad_join([as_numpy(v) for v in values])[order]
        elif all(_same(v, values[0]) for v in values):
            extras[key] = values[0]
        else:
            extras[key] = {str(length): v for (length, _, _), v in zip(groups, values)}
    logits = None if groups[0][2][2] is None else \
        torch.cat([part[2] for _, _, part in groups])[torch.from_numpy(order).to(inputs.device)]
    return attributions, extras, logits


def cut_background(background: Any, length: int, steps: int) -> Any:
    """Background series cut to ``length`` steps, padding filled with the per-feature mean (left
    as given when it is not ``[n, steps, feature]``, for the explainer to refuse)."""
    if background is None:
        return None
    X = as_numpy(background).astype(np.float32, copy=True)
    if X.ndim != 3 or X.shape[1] != steps:
        return background
    cut = X[:, :length]
    missing = np.isnan(cut)
    if missing.any():
        cut = np.where(missing, np.nanmean(X, axis=(0, 1))[None, None, :], cut)
    return cut


def is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim > 0


def as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.is_floating_point() else value).numpy()
    return np.asarray(value)


def pad_join(parts: list[np.ndarray], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Arrays of one kind, padded on every axis but the first to ``shape`` (default: the
    largest), concatenated."""
    if shape is None:
        shape = tuple(np.max([p.shape[1:] for p in parts], axis=0)) if parts[0].ndim > 1 else ()
    fill = (False if parts[0].dtype == bool else -1 if np.issubdtype(parts[0].dtype, np.integer)
            else np.nan)
    padded = []
    for part in parts:
        out = np.full((len(part), *shape), fill, dtype=part.dtype)
        out[(slice(None),) + tuple(slice(0, n) for n in part.shape[1:])] = part
        padded.append(out)
    return np.concatenate(padded)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (ValueError, TypeError):
        return False
