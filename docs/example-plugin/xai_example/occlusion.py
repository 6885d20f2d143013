"""Sliding-window occlusion: how much the target logit drops when a window is replaced by a baseline.

Windows of ``window`` steps of one feature, side by side (no overlap; the last one cut at the end).
Each window's drop is spread evenly over its cells (divided by the window's width), so a window's
cells sum to its drop. This is not captum's ``Occlusion``, which gives every cell the whole drop of
each window covering it (averaged over them): with ``window=1`` the two agree; for captum's values
multiply by the width, or use the built-in ``window-occlusion``, which equals captum's.
"""

from __future__ import annotations

import torch

from xaicore.plugin import BaseExplainer, Option


class Occlusion(BaseExplainer):
    name = "occlusion"
    description = ("Drop in the target logit when a time window is replaced by a baseline, spread "
                   "evenly over the window's cells")
    options = (
        Option("window", int, 1, min=1, max=100_000, help="time steps occluded together (each "
               "cell gets its window's drop divided by the window's width)"),
        Option("baseline", float, 0.0, help="value the window is replaced by"),
    )

    def attribute(self, model, inputs, target, *, window, baseline):
        n, t, f = inputs.shape
        with torch.no_grad():
            full = model.module(inputs).gather(1, target[:, None])[:, 0]
            starts = range(0, t, window)
            # every (window, feature) occlusion of every sample in one batched forward pass
            occluded = inputs.repeat(len(starts) * f, 1, 1).view(len(starts), f, n, t, f)
            for i, s in enumerate(starts):
                for j in range(f):
                    occluded[i, j, :, s:s + window, j] = baseline
            logits = model.module(occluded.reshape(-1, t, f)).view(len(starts), f, n, -1)
            drop = full - logits.gather(3, target.view(1, 1, n, 1).expand(len(starts), f, n, 1))[..., 0]
        attributions = torch.zeros_like(inputs)
        for i, s in enumerate(starts):
            width = min(window, t - s)
            attributions[:, s:s + width, :] = (drop[i].T / width)[:, None, :]  # cells sum to the drop
        return attributions, {}
