"""CoMTE (Ates et al. 2021): whole channels swapped in from a distractor, a train series of the
target class, until the model predicts the target; the fewest channels over the distractors.

The distractors are the ``distractors`` train series nearest to the query (Euclidean) among those
the model predicts as the target class. For each, channels are added greedily (``search="greedy"``:
each step the one whose swap raises the target's probability most) until the target is predicted;
swapping all of them gives the distractor itself, so the search always ends. Every sample,
distractor and candidate channel of a step are one batch of forward passes. ``search="exhaustive"``
(CoMTE's brute-force search, for up to ``MAX_EXHAUSTIVE`` channels) tries every set of channels of
every distractor in order of size, so its count is the fewest there is.
"""

from __future__ import annotations

from itertools import combinations

import torch

from xaicore.plugin import LoadedModel, Option, XaiError

from .base import CounterfactualExplainer, forward, nearest_of_class, result, target_members

MAX_EXHAUSTIVE = 10  # channels: 2^10 - 1 sets per distractor


class CoMTE(CounterfactualExplainer):
    name = "comte"
    description = "counterfactual: the fewest whole channels swapped in from a target-class series"
    options = (
        Option("distractors", int, 3, "nearest target-class train series tried as sources of "
               "channels", min=1, max=100),
        Option("search", str, "greedy", "greedy forward selection of channels, or every set of "
               f"channels by size (exhaustive, up to {MAX_EXHAUSTIVE} channels)",
               choices=("greedy", "exhaustive")),
        Option("background", object, None, "raw train inputs [n, time, feature]"),
    )

    def check(self, model: LoadedModel) -> str | None:
        reason = super().check(model)
        if reason is None and model.n_features == 1:
            return ("comte swaps whole channels, and a univariate series has one: its only "
                    "counterfactual would be a train series itself; use native-guide")
        return reason

    def attribute(self, model, inputs, target, **opts):
        train, classes = target_members(model, opts["background"], inputs, target, self.name)
        nearest = nearest_of_class(inputs, target, train, classes, int(opts["distractors"]))
        if opts["search"] == "exhaustive" and inputs.shape[2] > MAX_EXHAUSTIVE:
            raise XaiError(f"comte: search='exhaustive' tries every set of channels, 2^"
                           f"{inputs.shape[2]} - 1 per distractor for these {inputs.shape[2]}; it "
                           f"takes at most {MAX_EXHAUSTIVE} channels: use search='greedy'")
        search = every_set if opts["search"] == "exhaustive" else fewest_channels
        channels, best = search(model, inputs, train[nearest], target)
        chosen = nearest[torch.arange(len(inputs)), best]
        counterfactuals = torch.where(channels[:, None, :], train[chosen], inputs)
        extras = {"channels": channels, "distractor": chosen}
        return result(model, inputs, target, counterfactuals, train[nearest[:, 0]], extras)


def fewest_channels(model: LoadedModel, inputs: torch.Tensor, distractors: torch.Tensor,
                    target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The swapped channels ``[sample, feature]`` and the distractor (position among each
    sample's ``distractors [sample, k, time, feature]``) with the fewest channels that reach the
    target (among as few, the highest target probability): greedy forward selection per
    distractor."""
    n, k, _, n_features = distractors.shape
    chosen = torch.zeros((n, k, n_features), dtype=torch.bool, device=inputs.device)
    count = torch.full((n, k), n_features, dtype=torch.long, device=inputs.device)
    reached = torch.zeros((n, k), device=inputs.device)
    searching = torch.ones((n, k), dtype=torch.bool, device=inputs.device)
    one_hot = torch.eye(n_features, dtype=torch.bool, device=inputs.device)
    for size in range(1, n_features + 1):
        rows, sources = torch.nonzero(searching, as_tuple=True)
        if not len(rows):
            break
        masks = chosen[rows, sources][:, None, :] | one_hot[None]  # [pair, candidate, feature]
        candidates = torch.where(masks[:, :, None, :], distractors[rows, sources][:, None],
                                 inputs[rows][:, None])
        probabilities = torch.softmax(forward(model, candidates.flatten(0, 1)).float(), 1)
        probabilities = probabilities.view(len(rows), n_features, -1)
        wanted = probabilities.gather(2, target[rows][:, None, None].expand(-1, n_features, 1))[..., 0]
        wanted = wanted.masked_fill(chosen[rows, sources], -1.0)  # a channel swapped already
        best = wanted.argmax(1)
        chosen[rows, sources] = masks[torch.arange(len(rows)), best]
        hit = probabilities[torch.arange(len(rows)), best].argmax(1) == target[rows]
        count[rows[hit], sources[hit]] = size
        reached[rows[hit], sources[hit]] = wanted[torch.arange(len(rows)), best][hit]
        searching[rows[hit], sources[hit]] = False
    best_source = (count.double() * 2 - reached.double()).argmin(1)  # fewest, then most probable
    return chosen[torch.arange(n), best_source], best_source


def every_set(model: LoadedModel, inputs: torch.Tensor, distractors: torch.Tensor,
              target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Like ``fewest_channels``, by trying every set of channels of every distractor in order of
    size (one sample's sets of one size in a batch): the fewest channels that reach the target,
    among as few the most probable."""
    n, k, _, n_features = distractors.shape
    channels = torch.ones((n, n_features), dtype=torch.bool, device=inputs.device)
    source = torch.zeros(n, dtype=torch.long, device=inputs.device)
    for i in range(n):
        for size in range(1, n_features + 1):
            sets = torch.tensor([[f in chosen for f in range(n_features)]
                                 for chosen in combinations(range(n_features), size)],
                                dtype=torch.bool, device=inputs.device)  # [set, feature]
            candidates = torch.where(sets[None, :, None, :], distractors[i][:, None], inputs[i])
            probabilities = torch.softmax(forward(model, candidates.flatten(0, 1)).float(), 1)
            hit = probabilities.argmax(1) == target[i]
            if bool(hit.any()):
                best = int(probabilities[:, target[i]].masked_fill(~hit, -1.0).argmax())
                source[i], channels[i] = best // len(sets), sets[best % len(sets)]
                break
    return channels, source
