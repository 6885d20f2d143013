"""``feature-ablation``: the drop in the target logit when a group of cells is replaced by a baseline.

A series' cells fall into groups: ``segments`` contiguous time segments of (nearly) equal length
(step ``t`` in segment ``t * segments // T``, as shap's segments; default each step alone) crossed
with ``groups`` of features (``"0,1;2"``: features 0 and 1 together, 2 alone; names or indices;
default each feature alone). Each group is replaced in turn by the baseline (a kind: ``zero`` or the
train ``mean``, ...; or the user's own series) and every cell of it gets the group's whole drop.
This is captum's ``FeatureAblation`` with ``feature_mask`` the group of each cell and the same
baselines (tested). Ablated copies of all samples go through in passes of ``pass_rows``.
"""

from __future__ import annotations

from typing import Any

import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option, Series, XaiError, modality_of

from .occlusion import drops

SERIES_BASELINES = ("zero", "mean", "blurred", "random")


class FeatureAblation(BaseExplainer):
    """Drop in the target logit when each group of cells (time segment x feature group) of a
    series is replaced by a baseline."""

    name = "feature-ablation"
    description = ("Series: drop in the target logit when each group of cells (time segments x "
                   "feature groups) is replaced by a baseline")
    requires = ("background",)
    options = (
        Option("groups", str, None, "features ablated together: groups separated by ';', "
               "features in a group by ',' (indices or names), every feature in one group "
               "(default: each feature alone)"),
        Option("segments", int, None, "contiguous time segments of (nearly) equal length ablated "
               "together (default: each time step alone)", min=1, max=1_000_000),
        Option("baseline", Series, "zero", keywords=SERIES_BASELINES,
               help="what ablated cells become: a kind (zero, mean: the mean train series, "
                    "blurred, random) or your own array, one series [time, feature] ([time] for "
                    "one feature) shared by every sample or one per sample [sample, time, feature] "
                    "(a .npy file from the CLI)"),
        Option("background", object, None, "raw train inputs (baseline mean)"),
        Option("blur_sigma", float, None, "Gaussian blur width of the blurred baseline, in time "
               "steps (default: a tenth of the length)", min=0.0, max=1e6),
        Option("seed", int, 0, "seed of the random baseline", min=0, max=2**32 - 1),
    )

    def check(self, model: LoadedModel) -> str | None:
        kind = modality_of(model)
        if kind.masks_padding or getattr(kind, "spatial_dims", 1) != 1:
            return (f"it ablates time segments x feature groups of a series; use window-occlusion "
                    f"or shap for {kind.name}")
        return None

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **options: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        with torch.no_grad():
            logits = model.module(inputs)
        fx = logits.gather(1, target[:, None])[:, 0]
        base = options["baseline"]
        if not isinstance(base, torch.Tensor):
            base = modality_of(model).baseline(base, model, inputs, background=options["background"],
                                               blur_sigma=options["blur_sigma"], seed=options["seed"],
                                               method=self.name)
        base = base.expand_as(inputs)
        features = feature_groups(options["groups"], list(model.feature_names), inputs.shape[2],
                                  self.name)
        ids = cell_groups(inputs.shape[1], options["segments"], features, self.name)
        masks = (ids[None] == torch.arange(int(ids.max()) + 1)[:, None, None]).to(inputs.device)
        drop = drops(model, inputs, base, target, fx, masks)  # [n, groups]
        attributions = drop[:, ids.to(inputs.device)]
        return attributions.float(), {"groups": len(masks)}, logits


def feature_groups(spec: str | None, names: list[str], n_features: int, method: str) -> torch.Tensor:
    """The group of each feature from ``"0,1;2"`` (indices or names, every feature once), or each
    feature alone."""
    if spec is None:
        return torch.arange(n_features)
    group = torch.full((n_features,), -1, dtype=torch.long)
    parts = [part for part in spec.split(";") if part.strip()]
    for g, part in enumerate(parts):
        for item in (word.strip() for word in part.split(",")):
            if item in names:
                f = names.index(item)
            elif item.isdigit() and int(item) < n_features:
                f = int(item)
            else:
                raise XaiError(f"{method}: groups names feature {item!r}, which is neither a feature "
                               f"name nor an index below {n_features}")
            if group[f] >= 0:
                raise XaiError(f"{method}: groups names feature {item!r} twice; each feature "
                               f"belongs to one group")
            group[f] = g
    missing = [names[f] if f < len(names) else str(f) for f in range(n_features) if group[f] < 0]
    if missing:
        raise XaiError(f"{method}: groups leaves out feature(s) {', '.join(missing)}; every feature "
                       f"belongs to one group ('0,1;2')")
    return group


def cell_groups(steps: int, segments: int | None, features: torch.Tensor, method: str) -> torch.Tensor:
    """``[time, feature]`` group ids: time segment x feature group, numbered segment-major."""
    segments = steps if segments is None else segments
    if segments > steps:
        raise XaiError(f"{method}: segments {segments} is more than the series' {steps} time steps")
    segment = torch.arange(steps) * segments // steps
    return segment[:, None] * (int(features.max()) + 1) + features[None, :]
