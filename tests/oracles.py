"""Slow, direct formulations of what production computes by a faster path; the tests compare the two."""

from __future__ import annotations

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
