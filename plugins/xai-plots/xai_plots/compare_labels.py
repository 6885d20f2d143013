"""The panel labels of a comparison figure: every panel names its model and its method."""

from __future__ import annotations

from collections.abc import Sequence

from xaicore.plugin import Explanation

from .figures import label, sample_title


def model_of(e: Explanation) -> tuple[str, str]:
    """What tells one model from another: its name and the digest of its checkpoint."""
    return (e.model_name, e.model_digest)


def model_names(explanations: Sequence[Explanation]) -> list[str]:
    """Each explanation's model name ("model" when it records none); models that share a name
    but not a checkpoint are told apart by the start of their checkpoint's digest."""
    models = list(dict.fromkeys(model_of(e) for e in explanations))
    names = []
    for e in explanations:
        name, digest = model_of(e)
        twins = [m for m in models if m[0] == name]
        name = name or "model"
        if len(twins) > 1:
            name += f" #{digest[:7]}" if digest else f" {twins.index(model_of(e)) + 1}"
        names.append(name)
    return names


def panel_labels(rows: Sequence[tuple[Explanation, int]], sep: str = " ") -> list[str]:
    """``model · method`` of every (explanation, sample position) panel; when the panels hold
    several models, each also says (after ``sep``) what its model predicts for the sample."""
    explanations = [e for e, _ in rows]
    several = len({model_of(e) for e in explanations}) > 1
    labels = []
    for name, (e, i) in zip(model_names(explanations), rows):
        text = f"{label(name)} · {label(e.method)}"
        if several:
            pred = int(e.predictions[i])
            text += f"{sep}(predicts {label(e.class_names[pred])}, {e.probabilities[i, pred]:.2f})"
        labels.append(text)
    return labels


def comparison_title(rows: Sequence[tuple[Explanation, int]]) -> str:
    """The sample of a comparison figure: with one model, its prediction and the true class; with
    several, the sample and its true class only (each panel names its model's prediction)."""
    first, i = rows[0]
    if len({model_of(e) for e, _ in rows}) == 1:
        return sample_title(first, i, with_method=False)
    true = int(first.labels[i])
    return f"sample {int(first.sample_ids[i])}" + (
        f": true {label(first.class_names[true])}" if true >= 0 else "")
