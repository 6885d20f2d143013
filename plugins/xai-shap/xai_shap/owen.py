"""Owen values of the segment game over a binary hierarchy of its players.

The hierarchy halves the features (the first half of the features against the second, each half
again, down to single features), then each feature's time segments (the first half of the
segments against the second, down to single segments). The Owen value of a player is the mean of
its marginal contributions over the orders of the players in which every node's players come
together (at each node either child first, with probability 1/2): a solution of the same game
other than the Shapley value, which averages over every order. It is computed by the recursion of
shap's Partition explainer, every node expanded, so the values are exact: node ``A`` with sibling
``B`` in a context ``C`` (players outside their parent, present or absent as the orders above
decide) gets ``(v(C + A) - v(C) + v(C + B + A) - v(C + B)) / 2``, and its children split it in the
contexts ``C`` and ``C + B``. The values sum exactly to ``v(N) - v({})``.
"""

from __future__ import annotations

from typing import TypeAlias

import torch

from .shapley import Game, game_values

Node: TypeAlias = "int | tuple[Node, Node]"


def hierarchy(n_features: int, n_segments: int) -> Node:
    """The binary tree of the players ``f * n_segments + s``: features halved, then segments."""

    def build(features: range, segments: range) -> Node:
        if len(features) > 1:
            half = len(features) // 2
            return build(features[:half], segments), build(features[half:], segments)
        if len(segments) > 1:
            half = len(segments) // 2
            return build(features, segments[:half]), build(features, segments[half:])
        return features[0] * n_segments + segments[0]

    return build(range(n_features), range(n_segments))


def leaves(node: Node) -> list[int]:
    """The players under ``node``."""
    return [node] if isinstance(node, int) else leaves(node[0]) + leaves(node[1])


def owen_cost(tree: Node) -> int:
    """Coalitions one background sample's Owen values evaluate: two per internal node and
    context, a node at depth ``d`` having ``2^d`` contexts."""

    def count(node: Node, contexts: int) -> int:
        if isinstance(node, int):
            return 0
        return 2 * contexts + count(node[0], 2 * contexts) + count(node[1], 2 * contexts)

    return count(tree, 1)


def owen_bytes(m: int, n_background: int, coalitions: int) -> int:
    """Peak bytes of one sample in ``owen_values``: its deepest level's coalitions (at most all
    of them) with every background sample (coalition, indices, values), twice for copies."""
    return 2 * coalitions * n_background * (m + 64)


def owen_values(game: Game, fx: torch.Tensor, fb: torch.Tensor, tree: Node) -> torch.Tensor:
    """Exact Owen values ``[n, players]`` (float64) of the game of each sample, the mean of those
    of the games ``v_b`` of its background samples (``fb [n, nb]`` their ``v_b({})``), over
    ``tree``; one level of the tree's nodes in every context evaluated per batch of passes."""
    n, n_background = fb.shape
    m = game.n_players
    device = fx.device
    phi = torch.zeros(n, n_background, m, dtype=torch.float64, device=device)
    nodes: list[Node] = [tree]
    context = torch.zeros(1, m, dtype=torch.bool, device=device)
    without = torch.zeros(n, n_background, 1, dtype=torch.float64, device=device)  # v(C) - v({})
    within = (fx[:, None] - fb)[..., None]  # v(C + node) - v({})
    weight = torch.ones(1, dtype=torch.float64, device=device)
    while nodes:
        leaf = torch.tensor([isinstance(node, int) for node in nodes], device=device)
        players = torch.tensor([node for node in nodes if isinstance(node, int)], dtype=torch.long,
                               device=device)
        phi.index_add_(2, players, weight[leaf] * (within - without)[..., leaf])
        split = [node for node in nodes if not isinstance(node, int)]
        if not split:
            break
        keep = ~leaf
        context, without, within, weight = context[keep], without[..., keep], within[..., keep], \
            weight[keep]
        left, right = (torch.zeros(len(split), m, dtype=torch.bool, device=device) for _ in range(2))
        for j, node in enumerate(split):
            left[j, leaves(node[0])] = True
            right[j, leaves(node[1])] = True
        coalitions = torch.stack([context | left, context | right], 1).reshape(-1, m)
        v = game_values(game, coalitions[None, None].expand(n, n_background, -1, m))
        v = v.reshape(n, n_background, len(split), 2) - fb[..., None, None]
        with_left, with_right = v[..., 0], v[..., 1]
        # children in order: left alone, left after right, right alone, right after left
        nodes = [child for node in split for child in (node[0], node[0], node[1], node[1])]
        context = torch.stack([context, context | right, context, context | left], 1).reshape(-1, m)
        without = torch.stack([without, with_right, without, with_left], -1).flatten(-2)
        within = torch.stack([with_left, within, with_right, within], -1).flatten(-2)
        weight = (weight[:, None] / 2).expand(-1, 4).reshape(-1)
    return phi.mean(1)
