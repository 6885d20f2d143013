"""Explaining the predicted class costs no extra forward pass for explainers that find it in
their own forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xaicore
from nets_explainers import small_hybrid
from tolerances import assert_close


@pytest.mark.parametrize("method", ["saliency", "input-x-gradient", "gradcam", "gradcam++"])
def test_the_predicted_class_comes_from_the_explainers_own_forward(method):
    model = small_hybrid(24)
    calls = []
    model.module.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    X = np.random.default_rng(0).normal(size=(6, 24, model.n_features))
    X = X.astype(np.float32)
    e = xaicore.explain(model, X, method=method, target="predicted")
    assert calls == [6]  # one forward of the batch, the one that is differentiated
    with torch.no_grad():
        expected = model.module(torch.from_numpy(X)).argmax(1).numpy()
    np.testing.assert_array_equal(e.targets, expected)
    np.testing.assert_array_equal(e.predictions, expected)
    calls.clear()
    given = xaicore.explain(model, X, method=method, target=expected)  # same class, given
    assert_close(given.attributions, e.attributions)


def test_other_explainers_find_the_predicted_class_with_one_extra_forward():
    model = small_hybrid(24)
    calls = []
    model.module.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    X = np.random.default_rng(1).normal(size=(4, 24, model.n_features))
    e = xaicore.explain(model, X.astype(np.float32), method="integrated-gradients", n_steps=4)
    assert calls[0] == 4 and e.targets.tolist() == e.predictions.tolist()
