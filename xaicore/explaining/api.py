"""``explain()``: one call from a model and a batch of inputs to an ``Explanation``."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from xaicore.errors import XaiError
from xaicore.explaining.base import BaseExplainer
from xaicore.explaining.explanation import Explanation
from xaicore.models.loaded import LoadedModel
from xaicore.plugins.boundary import call
from xaicore.plugins.registry import get_explainer


def predicted(target: Any) -> bool:
    return target is None or (isinstance(target, str) and target == "predicted")


def resolve_targets(model: LoadedModel, X: np.ndarray, target: Any,
                    labels: np.ndarray | None) -> np.ndarray:
    """Class indices to explain: the predicted class, the true class, or given classes."""
    n = len(X)
    if isinstance(target, str):
        target = target.strip()
    if predicted(target):
        return model.logits(X).argmax(1)
    if isinstance(target, str) and target == "true":
        if labels is None:
            raise XaiError("target 'true' needs the true labels of the samples")
        return np.asarray(labels, dtype=np.int64)
    if isinstance(target, str):
        if target in model.class_names:
            return np.full(n, model.class_names.index(target), dtype=np.int64)
        if not re.fullmatch(r"[0-9]+", target):
            raise XaiError(f"target must be 'predicted', 'true', a class index or a class name; "
                           f"{target!r} is none of these (classes: "
                           f"{', '.join(model.class_names)})")
        target = int(target)
    targets = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,)).copy()
    bad = (targets < 0) | (targets >= model.n_classes)
    if bad.any():
        raise XaiError(f"class index {int(targets[bad][0])} is out of range: model {model.name!r} "
                       f"has {model.n_classes} classes (0..{model.n_classes - 1}: "
                       f"{', '.join(model.class_names)})")
    return targets


def explain(model: LoadedModel, inputs: Any, method: str = "integrated-gradients",
            target: Any = "predicted", labels: Any = None, sample_ids: Any = None,
            **options: Any) -> Explanation:
    """Explain ``inputs [batch, time, feature]`` with one registered method.

    ``target`` is ``"predicted"`` (default), ``"true"`` (needs ``labels``), a class name or else a
    class index (a text is read as a class name first, spaces around it ignored),
    or one index per sample. ``options`` go to the explainer (``n_steps=50``, ``layer="cnn.3"``...).
    """
    X = model.check_inputs(inputs)
    explainer = get_explainer(method)
    reason = _plugin_call(method, "check", explainer.check, model)
    if reason:
        raise XaiError(f"{method} cannot explain model {model.name!r}: {reason}")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(X),):
            raise XaiError(f"{len(X)} samples but {labels.shape} labels")
    x = torch.from_numpy(X).to(model.device)
    if predicted(target) and isinstance(explainer, BaseExplainer):
        t = None  # the explainer finds the predicted class in its own forward pass
    else:
        t = torch.from_numpy(resolve_targets(model, X, target, labels)).to(model.device)
    explanation = _plugin_call(method, "explain", explainer.explain, model, x, t, **options)
    explanation.method = method
    if labels is not None:
        explanation.labels = labels
    if sample_ids is not None:
        explanation.sample_ids = np.asarray(sample_ids, dtype=np.int64)
    return explanation


def _plugin_call(method: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` of an explainer; anything but a XaiError becomes one line."""
    name = method.partition(":")[0]
    return call("explainers", name, f"{name}.{what}", function, *args, **kwargs)
