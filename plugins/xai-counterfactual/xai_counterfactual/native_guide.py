"""Native Guide (Delaney et al. 2021): the nearest unlike neighbour's most important window, by its
class activation map, copied into the query and widened until the model predicts the target.

The nearest unlike neighbour (NUN) is the train series nearest to the query (Euclidean) among
those the model predicts as the target class, so copying all of it is a valid counterfactual and
the widening always ends. Each window is the contiguous span of that width with the largest sum
of the NUN's importance map for the target (``importance``: Grad-CAM by default, computed by the
registered explainer). Multivariate series: the window covers every feature (``channels="all"``),
or (``"ranked"``) the features are then added one at a time inside the found window, ranked by
the importance-weighted squared difference between NUN and query there, until the target is
reached. Every sample and every width of a pass are one batch of forward passes.
"""

from __future__ import annotations

import numpy as np
import torch

from xaicore.application import get_explainer, plugin_call
from xaicore.plugin import LoadedModel, Option, XaiError

from .base import CounterfactualExplainer, forward, nearest_of_class, result, target_members


class NativeGuide(CounterfactualExplainer):
    name = "native-guide"
    description = "counterfactual: the nearest unlike neighbour's most important window copied in"
    options = (
        Option("importance", str, "gradcam", "registered explainer whose map of the nearest unlike "
               "neighbour ranks the windows (a model Grad-CAM cannot explain: saliency, "
               "integrated-gradients)"),
        Option("channels", str, "all", "multivariate series: the window covers all features, or "
               "the fewest of them ranked by importance-weighted change", choices=("all", "ranked")),
        Option("step", int, 1, "window widths tried: 1, 1 + step, ... up to the series' length",
               min=1),
        Option("background", object, None, "raw train inputs [n, time, feature]"),
    )

    def attribute(self, model, inputs, target, **opts):
        train, classes = target_members(model, opts["background"], inputs, target, self.name)
        nun = train[nearest_of_class(inputs, target, train, classes)[:, 0]]
        weights = importance(opts["importance"], model, nun, target, train)
        starts, widths = widen(model, inputs, nun, target, weights.sum(2), int(opts["step"]))
        steps = torch.arange(inputs.shape[1], device=inputs.device)
        window = (steps >= starts[:, None]) & (steps < (starts + widths)[:, None])  # [n, time]
        features = torch.ones(inputs.shape[0], inputs.shape[2], dtype=torch.bool, device=inputs.device)
        if opts["channels"] == "ranked" and inputs.shape[2] > 1:
            features = fewest_features(model, inputs, nun, target, weights, window)
        cells = window[:, :, None] & features[:, None, :]
        counterfactuals = torch.where(cells, nun, inputs)
        extras = {"window": torch.stack([starts, starts + widths], 1), "features": features,
                  "importance": opts["importance"]}
        return result(model, inputs, target, counterfactuals, nun, extras)


def importance(method: str, model: LoadedModel, nun: torch.Tensor, target: torch.Tensor,
               train: torch.Tensor) -> torch.Tensor:
    """``|map|`` ``[sample, time, feature]`` of the registered explainer ``method`` on the NUNs
    for the target; a model it cannot explain is a one-line error naming the way out."""
    explainer = get_explainer(method)
    if getattr(explainer, "counterfactual", False):
        raise XaiError(f"native-guide: importance must be an attribution method, not {method}")
    reason = plugin_call("explainers", method, f"{method}.check", explainer.check, model)
    if reason:
        raise XaiError(f"native-guide ranks windows by {method}, which cannot explain model "
                       f"{model.name!r}: {reason}; pass the option importance= another "
                       f"registered explainer (saliency, integrated-gradients)")
    needs = {"background": train} if "background" in getattr(explainer, "requires", ()) else {}
    explained = plugin_call("explainers", method, f"{method}.explain", explainer.explain, model,
                            nun, target, **needs)
    values = np.abs(np.nan_to_num(np.asarray(explained.attributions, dtype=np.float64)))
    return torch.as_tensor(values, device=nun.device)


def best_starts(weights: torch.Tensor, width: int) -> torch.Tensor:
    """Start of the window of ``width`` steps with the largest sum of ``weights [sample, time]``
    (the earliest among equal sums)."""
    sums = torch.cumsum(torch.nn.functional.pad(weights, (1, 0)), 1)
    return (sums[:, width:] - sums[:, :-width]).argmax(1)


def widen(model: LoadedModel, inputs: torch.Tensor, nun: torch.Tensor, target: torch.Tensor,
          weights: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and width of each sample's narrowest window (widths 1, 1 + step, ..., the length)
    whose copy from its NUN the model predicts as the target; several widths of every sample
    still searching go in one batch."""
    n, steps, n_features = inputs.shape
    widths = list(range(1, steps + 1, step))
    if widths[-1] != steps:
        widths.append(steps)
    found = torch.full((n,), steps, dtype=torch.long, device=inputs.device)
    searching = torch.arange(n, device=inputs.device)
    time = torch.arange(steps, device=inputs.device)
    rows = max(1, 4096 * 64 // max(1, steps * n_features))
    at = 0
    while len(searching) and at < len(widths):
        chunk = widths[at:at + max(1, rows // len(searching))]
        at += len(chunk)
        starts = torch.stack([best_starts(weights[searching], w) for w in chunk], 1)  # [s, w]
        width = torch.as_tensor(chunk, device=inputs.device)
        window = (time >= starts[..., None]) & (time < (starts + width)[..., None])  # [s, w, time]
        candidates = torch.where(window[..., None], nun[searching, None], inputs[searching, None])
        predicted = forward(model, candidates.flatten(0, 1)).argmax(1).view(len(searching), -1)
        hit = predicted == target[searching, None]
        done = hit.any(1)
        found[searching[done]] = width[hit.float().argmax(1)[done]]
        searching = searching[~done]
    return torch.stack([best_starts(weights[i:i + 1], int(found[i]))[0] for i in range(n)]), found


def fewest_features(model: LoadedModel, inputs: torch.Tensor, nun: torch.Tensor,
                    target: torch.Tensor, weights: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """``[sample, feature]``: the fewest features, taken in order of the importance-weighted
    squared change inside the window, whose copy the model predicts as the target (all of them,
    the window found over every feature, when no fewer do)."""
    n, _, n_features = inputs.shape
    change = (weights * (nun - inputs).double() ** 2 * window[..., None]).sum(1)  # [n, feature]
    order = change.argsort(1, descending=True)
    rank = order.argsort(1)  # each feature's place in its sample's order
    taken = rank[:, None, :] < torch.arange(1, n_features + 1, device=inputs.device)[None, :, None]
    cells = window[:, None, :, None] & taken[:, :, None, :]  # [n, k, time, feature]
    candidates = torch.where(cells, nun[:, None], inputs[:, None])
    hit = forward(model, candidates.flatten(0, 1)).argmax(1).view(n, n_features) == target[:, None]
    hit[:, -1] = True
    return taken[torch.arange(n), hit.float().argmax(1)]

