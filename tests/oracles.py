"""Slow, direct formulations of what production computes by a faster path; the tests compare the two."""

from __future__ import annotations

from typing import Any

import numpy as np


def linear_impute_sparse(x: np.ndarray, removed: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``xai_eval.perturbation.linear_impute`` written as ROAD's sparse linear system, one series at
    a time: every removed cell equals the average of its neighbours in time, kept cells fixed."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    out = np.array(x, dtype=np.float64)
    n, T, F = x.shape
    for i in range(n):
        for f in range(F):
            gone = np.flatnonzero(removed[i, :, f])
            if gone.size == 0:
                continue
            if gone.size == T:
                out[i, :, f] = fallback[f]
                continue
            where = {t: k for k, t in enumerate(gone)}
            A = lil_matrix((gone.size, gone.size))
            b = np.zeros(gone.size)
            for k, t in enumerate(gone):
                neighbours = [u for u in (t - 1, t + 1) if 0 <= u < T]
                A[k, k] = 1.0
                for u in neighbours:
                    if u in where:
                        A[k, where[u]] -= 1.0 / len(neighbours)
                    else:
                        b[k] += x[i, u, f] / len(neighbours)
            out[i, gone, f] = spsolve(A.tocsr(), b)
    return out


def layer_integrated_gradients(model, texts: list[str], targets: np.ndarray, n_steps: int) -> np.ndarray:
    """captum's ``LayerIntegratedGradients`` on a token model's embedding layer, per token
    ``[text, token]`` (summed over the embedding), from a PAD baseline that keeps the special
    tokens (captum's BERT tutorial), trapezoid rule."""
    import torch
    from captum.attr import LayerIntegratedGradients

    from xai_text.modules import ids_and_mask

    x = torch.from_numpy(model.check_inputs(texts))
    ids, mask = ids_and_mask(x, model.tokenizer.pad_id)
    special = torch.isin(ids, torch.tensor(sorted(model.tokenizer.special_ids)))
    reference = torch.where(special | ~mask, ids, torch.full_like(ids, model.tokenizer.pad_id))
    lig = LayerIntegratedGradients(lambda i, m: model.network(i, m), model.embedding_layer())
    return lig.attribute(ids, baselines=reference, target=torch.from_numpy(targets),
                         additional_forward_args=(mask,), n_steps=n_steps,
                         method="riemann_trapezoid").sum(-1).detach().numpy()


def feature_shapley_cam(model, layer_name: str, x: np.ndarray, base: np.ndarray,
                        targets: np.ndarray) -> np.ndarray:
    """dCAM (``xai_gradcam.dimensions``) written as Shapley's average over every ordering of the
    features, one sample at a time: the layer map ``sum_k alpha_k A_k`` of the input holding the
    sample on the features added so far and ``base`` elsewhere, ``alpha`` the time-mean gradient
    of the target logit at the sample; ``[sample, feature, layer_time]``."""
    import itertools

    import torch

    layer = model.layer(layer_name)
    captured: list = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        result = []
        for i in range(len(x)):
            sample = torch.from_numpy(np.ascontiguousarray(x[i:i + 1])).requires_grad_(True)
            logits = model.module(sample)
            (grad,) = torch.autograd.grad(logits[0, int(targets[i])], captured[-1])
            alpha = grad[0].mean(1).double().numpy()

            def worth(features: list[int], i: int = i, alpha: np.ndarray = alpha) -> np.ndarray:
                z = np.array(base[i], dtype=np.float32)
                z[:, features] = x[i][:, features]
                with torch.no_grad():
                    model.module(torch.from_numpy(z[None]))
                return alpha @ captured[-1][0].double().numpy()

            n_features = x.shape[2]
            orders = list(itertools.permutations(range(n_features)))
            phi = 0.0
            for order in orders:
                gains = np.zeros((n_features, len(worth([]))))
                before, kept = worth([]), []
                for f in order:
                    kept.append(f)
                    after = worth(kept)
                    gains[f] = after - before
                    before = after
                phi = phi + gains
            result.append(phi / len(orders))
    finally:
        handle.remove()
    return np.stack(result)


def time_forward(attribute, forward, X: Any, target: Any,
                 first: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tint's ``TimeForwardTunnel`` written out, one prediction step at a time: the prefix
    ``X[:, :t + 1]`` explained by ``attribute(prefix, target_t)`` for ``target`` (None: the class
    ``forward`` predicts from the prefix, tint's task="multiclass"), and ``(map, prefixes,
    targets)``: ``map[:, t]`` the prefix's attribution of step t (tint's default layout),
    ``prefixes[:, t, :t + 1]`` the prefix's whole map (``return_temporal_attributions``, zero
    after it) and each step's target (-1 before step ``first - 1``, where nothing is predicted)."""
    import torch

    n, steps, features = X.shape
    out = np.zeros((n, steps, features))
    prefixes = np.zeros((n, steps, steps, features))
    targets = np.full((n, steps), -1)
    for t in range(first - 1, steps):
        prefix = X[:, :t + 1]
        with torch.no_grad():
            chosen = forward(prefix).argmax(1) if target is None else target
        partial = np.asarray(attribute(prefix, chosen), dtype=np.float64)
        out[:, t] = partial[:, t]
        prefixes[:, t, :t + 1] = partial
        targets[:, t] = chosen.numpy()
    return out, prefixes, targets


def lime_every_coalition(forward, x: np.ndarray, base: np.ndarray, target: int,
                         width: float) -> np.ndarray:
    """What LIME's sampled fit estimates, univariate, one player per step, no penalty: the
    weighted least squares with intercept over every coalition (each as likely, as LIME draws
    them), weighted by its kernel ``exp(-d^2 / (2 width^2))`` on the cosine distance ``d = 1 -
    sqrt(|z| / m)`` of the coalition to the sample; the coefficients ``[m]``."""
    import torch

    m = x.shape[0]
    z = ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1).astype(np.float64)
    rows = np.where(z[:, :, None] == 1, x[None], base[None]).astype(np.float32)
    with torch.no_grad():
        y = forward(torch.from_numpy(rows))[:, target].double().numpy()
    d = 1 - np.sqrt(z.sum(1) / m)
    root = np.sqrt(np.exp(-d ** 2 / (2 * width ** 2)))
    design = np.concatenate([np.ones((len(z), 1)), z], 1)
    coefficients = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)[0]
    return coefficients[1:]
