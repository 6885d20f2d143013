"""Players that a kind of input declares (texts' words or tokens, images' superpixels or patches):
each sample plays its own game over them, an absent player's positions taken from the kind's
substrate, so the reference is the sample itself with every player absent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from xaicore.plugin import LoadedModel, Option, XaiError, modality_of

from .shapley import (
    MAX_EXACT_PLAYERS,
    Goal,
    exact_cost,
    exact_shapley,
    sampled_cost,
    sampled_shapley,
)

#: what each option of the players does, for the refusal of one a kind's unit does not take
PLAYER_OPTIONS = {
    "n_segments": "cuts series into time segments and images into superpixels",
    "compactness": "shapes images' superpixels",
    "patch": "sizes images' grid patches",
}
COMPACTNESS = Option("compactness", float, None, "images, superpixels (shap players=, "
                     "occlusion unit=): SLIC's balance of colour against space (higher: squarer "
                     "superpixels; default 0.1 on pixels scaled to [0, 1], 10 for three "
                     "channels, segmented in CIELAB)", min=0.0)
PATCH = Option("patch", int, None, "images, patches (shap players=, occlusion unit=): the side of "
               "the square patches in pixels (default a quarter of the shorter side: a 4 x 4 "
               "grid)", min=1, max=1_000_000)
#: the kind's substrate an absent player takes when none is named: a blur where the kind has one
#: (shap's image masker and the RISE and LIME practice), else the kind's default
PREFERRED_ABSENT = "blurred"


@dataclass
class Players:
    """``ids[i, t]``: the player that position ``t`` of sample ``i`` belongs to (all its channels),
    -1 for positions that are never players (texts' special tokens and padding); ``counts[i]``:
    sample ``i``'s number of players; ``unit``: what they are (words, superpixels...)."""

    unit: str
    ids: torch.Tensor
    counts: torch.Tensor

    def spread(self, values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Per-player values ``[len(rows), m]`` of the samples ``rows`` spread evenly over their
        positions: ``[len(rows), position]``, 0 on non-players."""
        ids = self.ids[rows]
        m = values.shape[1]
        column = torch.where(ids >= 0, ids, m)  # non-players read an appended 0
        sizes = torch.zeros(len(rows), m + 1, dtype=values.dtype, device=values.device)
        sizes.scatter_add_(1, column, torch.ones_like(column, dtype=values.dtype))
        padded = torch.cat([values / sizes[:, :m].clamp_min(1), values.new_zeros(len(rows), 1)], 1)
        return padded.gather(1, column)


def has_players(model: LoadedModel) -> bool:
    """Whether the kind of input of ``model`` declares players (``Modality.players``)."""
    return callable(getattr(modality_of(model), "players", None))


def kind_players(model: LoadedModel, inputs: torch.Tensor, unit: str | None, options: dict,
                 method: str, option: str = "players") -> Players:
    """The players of ``inputs`` by ``unit`` (None: the kind's default), as the kind gives them,
    with the options of ``PLAYER_OPTIONS`` given in ``options``; a unit the kind does not declare,
    or an option its unit does not take, is a one-line XaiError."""
    kind = modality_of(model)
    if not has_players(model):
        raise XaiError(f"{method}: the kind of input {kind.name} declares no players")
    if unit is not None and unit not in kind.player_units:
        raise XaiError(f"{method}: option {option} must be one of {', '.join(kind.player_units)} "
                       f"for {kind.name}, not {unit!r}")
    given = {name: options[name] for name in PLAYER_OPTIONS if options.get(name) is not None}
    named = unit or next(iter(kind.player_units))
    takes = kind.player_units[named]
    for name in given:
        if name not in takes:
            raise XaiError(f"{method}: {name} {PLAYER_OPTIONS[name]}; the {named} of {kind.name} "
                           f"take {', '.join(takes) or 'no option'}")
    used, ids = kind.players(model, inputs.detach().cpu().numpy(), unit, **given)
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=inputs.device)
    return Players(used, ids, (ids.max(1).values + 1).clamp_min(0))


def default_absent(model: LoadedModel) -> str:
    """The substrate absent players take when no option names one (``PREFERRED_ABSENT``)."""
    substrates = modality_of(model).substrates
    return PREFERRED_ABSENT if PREFERRED_ABSENT in substrates else substrates[0]


def reference(model: LoadedModel, inputs: torch.Tensor, absent: str, where: str) -> torch.Tensor:
    """Every sample with each position replaced as ``absent`` (one of the kind's substrates: the
    mask or pad token, the blurred image...), what the kind never removes kept; ``where`` names
    the option in the error."""
    modality = modality_of(model)
    if absent not in modality.substrates:
        raise XaiError(f"{where} must be one of {', '.join(modality.substrates)} for "
                       f"{modality.name}, not {absent!r}")
    out = modality.substrate(absent, model, inputs.detach().cpu().numpy())
    return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(inputs.device)


def word_values(attributions: torch.Tensor, model: LoadedModel, inputs: torch.Tensor) -> dict:
    """For a kind with word players (texts), the ``word_values`` extra: the attributions
    ``[sample, position]`` summed over each word's positions, entry ``w`` the value of word ``w``,
    NaN beyond the sample's words; no extra for other kinds."""
    if "words" not in modality_of(model).player_units:
        return {}
    words = kind_players(model, inputs, "words", {}, "word_values")
    column = torch.where(words.ids >= 0, words.ids, attributions.shape[1])
    sums = torch.zeros(len(inputs), attributions.shape[1] + 1, dtype=attributions.dtype,
                       device=attributions.device)
    sums.scatter_add_(1, column, attributions)
    position = torch.arange(attributions.shape[1], device=attributions.device)
    return {"word_values": torch.where(position < words.counts[:, None], sums[:, :-1], torch.nan)}


class PlayerGame:
    """``v(S) = f_c(x with the players outside S replaced by the reference)`` for the samples of
    one group, all with ``n_players`` players; one reference per sample (``base`` is ignored)."""

    def __init__(self, module: torch.nn.Module, inputs: torch.Tensor, reference: torch.Tensor,
                 ids: torch.Tensor, target: torch.Tensor, n_players: int, batch_size: int) -> None:
        self.module = module
        self.inputs = inputs
        self.reference = reference
        self.ids = torch.where(ids >= 0, ids, n_players)  # non-players read an always-present column
        self.target = target
        self._n_players = n_players
        self.batch_size = batch_size
        self.evaluations = 0

    @property
    def n_players(self) -> int:
        return self._n_players

    @torch.no_grad()
    def __call__(self, sample: torch.Tensor, coalitions: torch.Tensor,
                 base: torch.Tensor) -> torch.Tensor:
        """Target logits (float64) of rows: ``sample`` indices and ``coalitions [rows, players]``."""
        out = torch.empty(len(sample), dtype=torch.float64, device=self.inputs.device)
        for start in range(0, len(sample), self.batch_size):
            part = slice(start, start + self.batch_size)
            rows = sample[part]
            kept = torch.cat([coalitions[part], coalitions.new_ones(len(rows), 1)], 1)
            present = kept.gather(1, self.ids[rows])[..., None]
            logits = self.module(torch.where(present, self.inputs[rows], self.reference[rows]))
            out[part] = logits.gather(1, self.target[rows][:, None])[:, 0].double()
        self.evaluations += len(sample)
        return out


def choose(algorithm: str, m: int, pairs: int, kind: str) -> str:
    """``exact`` or ``sampled`` for a sample of ``m`` players (``auto``: exact when it costs at
    most twice the sampled estimate, as for series)."""
    if algorithm == "deep":
        raise XaiError(f"shap: algorithm 'deep' is per time step of a series; {kind} take auto, "
                       f"sampled or exact")
    if algorithm == "owen":
        raise XaiError(f"shap: algorithm 'owen' is over the features and time segments of a "
                       f"series; {kind} take auto, sampled or exact")
    if algorithm == "exact" and m > MAX_EXACT_PLAYERS:
        raise XaiError(f"shap: exact values of a sample with {m} players need 2^{m} coalitions; "
                       f"at most {MAX_EXACT_PLAYERS} players, or algorithm='sampled'")
    if algorithm == "auto":
        return "exact" if exact_cost(1, m, 1) <= 2 * sampled_cost(1, m, 1, pairs) else "sampled"
    return algorithm


def solve_players(module: torch.nn.Module, inputs: torch.Tensor, reference: torch.Tensor,
                  players: Players, target: torch.Tensor, fx: torch.Tensor, f_ref: torch.Tensor,
                  algorithm: str, pairs: int, seed: int, batch_size: int, kind: str,
                  split: Callable[[int, str, int], list[slice]], goal: Goal) -> Solved:
    """Shapley values of every sample's own game, samples of one player count solved together
    (``split(n, algorithm, m)`` cuts a group to fit in memory); sampled pairs come from one
    generator per sample seeded ``seed`` and are raised towards ``goal`` (its players weighted
    by their positions here), so a sample gets the same values alone as in any batch."""
    n, positions = players.ids.shape
    values = torch.zeros(n, positions, dtype=torch.float64, device=inputs.device)
    error = torch.zeros_like(values)
    exact = torch.ones(n, dtype=torch.bool, device=inputs.device)
    evaluations = 0
    for m in (int(c) for c in players.counts.unique() if c > 0):  # no players: all 0
        chosen = choose(algorithm, m, pairs, kind)
        group = (players.counts == m).nonzero()[:, 0]
        for part in split(len(group), chosen, m):
            rows = group[part]
            game = PlayerGame(module, inputs[rows], reference[rows], players.ids[rows],
                              target[rows], m, batch_size)
            if m == 1:
                phi = (fx[rows] - f_ref[rows])[:, None]
                variance = torch.zeros_like(phi)
            elif chosen == "exact":
                phi = exact_shapley(game, len(rows), 1)[0]
                variance = torch.zeros_like(phi)
            else:
                generators = [torch.Generator().manual_seed(seed) for _ in range(len(rows))]
                phi, variance = sampled_shapley(game, fx[rows], f_ref[rows, None], pairs, generators,
                                                replace(goal, sizes=player_sizes(players, rows, m)))
                exact[rows] = m < 4  # first-order coalitions are all of them
            values[rows] = players.spread(phi, rows)
            error[rows] = players.spread(variance.sqrt(), rows)
            evaluations += game.evaluations
    return Solved(values, error, exact, evaluations)


def player_sizes(players: Players, rows: torch.Tensor, m: int) -> torch.Tensor:
    """How many positions each of the ``m`` players of the samples ``rows`` has: ``[rows, m]``."""
    ids = players.ids[rows]
    counts = torch.zeros(len(rows), m + 1, dtype=torch.long, device=ids.device)
    counts.scatter_add_(1, torch.where(ids >= 0, ids, m), torch.ones_like(ids))
    return counts[:, :m]


@dataclass
class Solved:
    """Per-position values and standard errors ``[sample, position]`` (float64), whether each
    sample's values are exact, and the model rows evaluated."""

    values: torch.Tensor
    standard_error: torch.Tensor
    exact: torch.Tensor
    evaluations: int


def occlusion_drops(model: LoadedModel, inputs: torch.Tensor, reference: torch.Tensor,
                    players: Players, target: torch.Tensor, fx: torch.Tensor,
                    rows_per_pass: int) -> torch.Tensor:
    """``fx - f(x with player j replaced by the reference)`` for every sample and player:
    ``[n, max players]`` (0 beyond a sample's players), the occluded rows of all samples in
    passes of ``rows_per_pass``."""
    sample = torch.arange(len(inputs), device=inputs.device).repeat_interleave(players.counts)
    first = torch.cumsum(players.counts, 0) - players.counts
    which = torch.arange(len(sample), device=inputs.device) - first[sample]
    drop = torch.zeros(len(inputs), max(int(players.counts.max()), 1), dtype=fx.dtype,
                       device=inputs.device)
    with torch.no_grad():
        for start in range(0, len(sample), rows_per_pass):
            i, j = sample[start:start + rows_per_pass], which[start:start + rows_per_pass]
            occluded = (players.ids[i] == j[:, None])[..., None]
            logits = model.module(torch.where(occluded, reference[i], inputs[i]))
            drop[i, j] = fx[i] - logits.gather(1, target[i][:, None])[:, 0]
    return drop


def player_extras(players: Players) -> dict[str, Any]:
    """What every explanation over players records: each sample's player count and each
    position's player (-1: none), so the players can be drawn and the values summed per player."""
    return {"n_players": players.counts, "player_ids": players.ids}
