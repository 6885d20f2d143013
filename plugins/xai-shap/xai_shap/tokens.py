"""Players of texts: each real non-special token, or each word; an absent player's tokens become the
kind's substrate (the mask or pad token), so the reference is the sample's own text masked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from xaicore.plugin import LoadedModel, XaiError, modality_of

from .shapley import MAX_EXACT_PLAYERS, exact_cost, exact_shapley, sampled_cost, sampled_shapley

UNITS = ("words", "tokens")


@dataclass
class TokenPlayers:
    """``ids[i, t]``: the player that token ``t`` of text ``i`` belongs to, -1 for special tokens and
    padding (never players); ``counts[i]``: text ``i``'s number of players."""

    ids: torch.Tensor
    counts: torch.Tensor

    def spread(self, values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Per-player values ``[len(rows), m]`` of the texts ``rows`` spread evenly over their
        tokens: ``[len(rows), token]``, 0 on non-players."""
        ids = self.ids[rows]
        m = values.shape[1]
        column = torch.where(ids >= 0, ids, m)  # non-players read an appended 0
        sizes = torch.zeros(len(rows), m + 1, dtype=values.dtype, device=values.device)
        sizes.scatter_add_(1, column, torch.ones_like(column, dtype=values.dtype))
        padded = torch.cat([values / sizes[:, :m].clamp_min(1), values.new_zeros(len(rows), 1)], 1)
        return padded.gather(1, column)


def token_players(model: LoadedModel, inputs: torch.Tensor, unit: str) -> TokenPlayers:
    """The players of ``inputs`` by ``unit`` (``words``: a word's tokens are one player, from the
    kind's ``word_ids``; ``tokens``: each real non-special token)."""
    annotate = getattr(modality_of(model), "annotate", None)
    words = annotate(model, inputs.detach().cpu().numpy()).get("word_ids") if callable(annotate) else None
    if words is None:
        raise XaiError(f"the kind of input of model {model.name!r} gives no word_ids: no token or "
                       f"word players")
    word_ids = torch.as_tensor(np.asarray(words), dtype=torch.long, device=inputs.device)
    real = word_ids >= 0
    ids = word_ids if unit == "words" else torch.where(real, real.long().cumsum(1) - 1, -1)
    return TokenPlayers(ids, (ids.max(1).values + 1).clamp_min(0))


def reference(model: LoadedModel, inputs: torch.Tensor, absent: str, where: str) -> torch.Tensor:
    """Every sample's text with each player replaced as ``absent`` (the kind's substrate: mask or
    pad), special tokens and padding kept; ``where`` names the option in the error."""
    modality = modality_of(model)
    if absent not in modality.substrates:
        raise XaiError(f"{where} must be one of {', '.join(modality.substrates)} for "
                       f"{modality.name}, not {absent!r}")
    out = modality.substrate(absent, model, inputs.detach().cpu().numpy())
    return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(inputs.device)


class TokenGame:
    """``v(S) = f_c(x with the players outside S replaced by the reference)`` for the texts of one
    group, all with ``n_players`` players; one reference per sample (``base`` is ignored)."""

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


def word_values(attributions: torch.Tensor, model: LoadedModel, inputs: torch.Tensor) -> torch.Tensor:
    """Per text, the attributions ``[sample, token]`` summed over each word's tokens:
    ``[sample, token]``, entry ``w`` the value of word ``w``, NaN beyond the text's words."""
    words = token_players(model, inputs, "words")
    column = torch.where(words.ids >= 0, words.ids, attributions.shape[1])
    sums = torch.zeros(len(inputs), attributions.shape[1] + 1, dtype=attributions.dtype,
                       device=attributions.device)
    sums.scatter_add_(1, column, attributions)
    position = torch.arange(attributions.shape[1], device=attributions.device)
    return torch.where(position < words.counts[:, None], sums[:, :-1], torch.nan)


def choose(algorithm: str, m: int, pairs: int) -> str:
    """``exact`` or ``sampled`` for a text of ``m`` players (``auto``: exact when it costs at most
    twice the sampled estimate, as for series)."""
    if algorithm == "deep":
        raise XaiError("shap: algorithm 'deep' is per time step of a series; texts take auto, "
                       "sampled or exact")
    if algorithm == "exact" and m > MAX_EXACT_PLAYERS:
        raise XaiError(f"shap: exact values of a text with {m} players need 2^{m} coalitions; "
                       f"at most {MAX_EXACT_PLAYERS} players, or algorithm='sampled'")
    if algorithm == "auto":
        return "exact" if exact_cost(1, m, 1) <= 2 * sampled_cost(1, m, 1, pairs) else "sampled"
    return algorithm


def solve_texts(module: torch.nn.Module, inputs: torch.Tensor, reference: torch.Tensor,
                players: TokenPlayers, target: torch.Tensor, fx: torch.Tensor, f_ref: torch.Tensor,
                algorithm: str, pairs: int, seed: int, batch_size: int,
                split: Callable[[int, str, int], list[slice]]) -> Solved:
    """Shapley values of every text's own game, texts of one player count solved together
    (``split(n, algorithm, m)`` cuts a group to fit in memory); sampled pairs come from one
    generator per text seeded ``seed``, so a text gets the same values alone as in any batch."""
    n, steps = players.ids.shape
    values = torch.zeros(n, steps, dtype=torch.float64, device=inputs.device)
    error = torch.zeros_like(values)
    exact = torch.ones(n, dtype=torch.bool, device=inputs.device)
    evaluations = 0
    for m in (int(c) for c in players.counts.unique() if c > 0):  # no players: all 0
        chosen = choose(algorithm, m, pairs)
        group = (players.counts == m).nonzero()[:, 0]
        for part in split(len(group), chosen, m):
            rows = group[part]
            game = TokenGame(module, inputs[rows], reference[rows], players.ids[rows], target[rows],
                             m, batch_size)
            if m == 1:
                phi = (fx[rows] - f_ref[rows])[:, None]
                variance = torch.zeros_like(phi)
            elif chosen == "exact":
                phi = exact_shapley(game, len(rows), 1)[0]
                variance = torch.zeros_like(phi)
            else:
                generators = [torch.Generator().manual_seed(seed) for _ in range(len(rows))]
                phi, variance = sampled_shapley(game, fx[rows], f_ref[rows, None], pairs, generators)
                exact[rows] = m < 4  # first-order coalitions are all of them
            values[rows] = players.spread(phi, rows)
            error[rows] = players.spread(variance.sqrt(), rows)
            evaluations += game.evaluations
    return Solved(values, error, exact, evaluations)


@dataclass
class Solved:
    """Per-token values and standard errors ``[sample, token]`` (float64), whether each text's
    values are exact, and the model rows evaluated."""

    values: torch.Tensor
    standard_error: torch.Tensor
    exact: torch.Tensor
    evaluations: int
