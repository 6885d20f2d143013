"""What native-guide and comte share: the wanted class, the train series the model puts in it,
the nearest of them, batched forward passes, and the result (``counterfactual - input``)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from xaicore.plugin import BaseExplainer, LoadedModel, XaiError, as_background, modality_of, pass_rows

#: ``Explanation.kind`` of every result of these explainers (``extras["result_kind"]``).
KIND = "counterfactual"
#: The extras shaped like the inputs.
SERIES_EXTRAS = ("counterfactual", "changed", "nearest_unlike")


class CounterfactualExplainer(BaseExplainer):
    """A counterfactual method: ``target`` is the class wanted (None: the most likely other class);
    the values are ``counterfactual - input``, zero on every unchanged cell."""

    #: Declared for ``xai explain --method all`` (which leaves counterfactual methods out: their
    #: values are changes, not attributions) and ``xai evaluate`` (which scores them on their own
    #: metrics).
    counterfactual: ClassVar[bool] = True
    requires = ("background",)

    def check(self, model: LoadedModel) -> str | None:
        kind = modality_of(model).name
        if kind != "series":
            return (f"{self.name} builds counterfactual series from train series; this model "
                    f"explains {kind}")
        return None

    def explain(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor | None,
                **options: Any):
        """The counterfactual of each sample for ``target`` (None: its most likely other class);
        a target the model already predicts is an ``XaiError``."""
        model.module.eval()
        with torch.no_grad():
            logits = model.module(inputs)
        predicted = logits.argmax(1)
        if target is None:
            target = logits.scatter(1, predicted[:, None], float("-inf")).argmax(1)
        target = target.to(predicted.device)
        same = torch.nonzero(target == predicted).flatten().tolist()
        if same:
            shown = ", ".join(map(str, same[:5])) + (" ..." if len(same) > 5 else "")
            raise XaiError(f"{self.name}: the model already predicts the target class "
                           f"{model.class_names[int(target[same[0]])]!r} for {len(same)} "
                           f"sample(s) (positions {shown}); a counterfactual needs another class: "
                           f"choose samples of other classes, or leave the target at 'predicted' "
                           f"(the most likely other class)")
        explanation = super().explain(model, inputs, target, **options)
        steps = explanation.inputs.shape[1]
        for key in SERIES_EXTRAS:  # variable-length groups come back padded to the longest group
            value = explanation.extras[key]
            if value.shape[1] < steps:
                padding = np.full((len(value), steps - value.shape[1], *value.shape[2:]),
                                  False if value.dtype == bool else np.nan, dtype=value.dtype)
                explanation.extras[key] = np.concatenate([value, padding], 1)
        return explanation


def forward(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x`` in no-grad passes of the device's size."""
    rows = pass_rows(x.device, int(np.prod(x.shape[1:])))
    with torch.no_grad():
        return torch.cat([model.module(x[i:i + rows]) for i in range(0, len(x), rows)]) if len(x) \
            else torch.zeros((0, model.n_classes), device=x.device)


def target_members(model: LoadedModel, background: Any, inputs: torch.Tensor,
                   target: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The train series (``background``) and the class the model predicts for each; every target
    class must be predicted for one of them, else an ``XaiError``."""
    train = as_background(background, inputs, method)
    classes = forward(model, train).argmax(1)
    missing = sorted(set(target.tolist()) - set(classes.tolist()))
    if missing:
        raise XaiError(f"{method}: the model predicts class {model.class_names[missing[0]]!r} for no "
                       f"train series, so there is no series of that class to take values from")
    return train, classes


def nearest_of_class(inputs: torch.Tensor, target: torch.Tensor, train: torch.Tensor,
                     classes: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Indices ``[sample, k]`` into ``train`` of the ``k`` series nearest (Euclidean) to each
    sample among those the model puts in its target class, nearest first (fewer members: the
    nearest repeated)."""
    found = torch.zeros((len(inputs), k), dtype=torch.long, device=inputs.device)
    for cls in target.unique().tolist():
        rows = torch.nonzero(target == cls).flatten()
        members = torch.nonzero(classes == cls).flatten()
        distances = torch.cdist(inputs[rows].flatten(1).double(), train[members].flatten(1).double())
        order = distances.argsort(1)[:, :k]
        if order.shape[1] < k:
            order = torch.cat([order, order[:, :1].expand(-1, k - order.shape[1])], 1)
        found[rows] = members[order]
    return found


def result(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
           counterfactuals: torch.Tensor, nearest: torch.Tensor,
           extras: dict) -> tuple[torch.Tensor, dict]:
    """``counterfactual - input`` and the extras every counterfactual result holds: the series,
    the class the model predicts for it (run again here, not taken from the search) and that
    class's probability, the changed cells, whether the target is reached, and the nearest
    target-class train series (the baseline counterfactual)."""
    probabilities = torch.softmax(forward(model, counterfactuals).float(), 1)
    predicted = probabilities.argmax(1)
    return counterfactuals - inputs, {
        "result_kind": KIND,
        "counterfactual": counterfactuals,
        "counterfactual_prediction": predicted,
        "counterfactual_probability": probabilities.gather(1, predicted[:, None])[:, 0],
        "counterfactual_probabilities": probabilities,
        "changed": counterfactuals != inputs,
        "valid": predicted == target,
        "nearest_unlike": nearest,
        **extras,
    }
