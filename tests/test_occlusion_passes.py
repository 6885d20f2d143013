"""The pass size of ``window-occlusion`` and ``feature-ablation`` on CPU: the device's
``pass_rows``, capped so that one pass's largest layer output stays within
``ACTIVATION_VALUES``; the size changes no value beyond float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xai_shap.occlusion as occlusion
import xaicore
from tolerances import assert_close
from xaicore.models.devices import pass_rows
from xaicore.models.loaded import LoadedModel
from xaicore.plugins.registry import get_model


def built(name: str, features: int = 1, steps: int = 60) -> LoadedModel:
    torch.manual_seed(0)
    network = get_model(name)(features, steps, 2)
    return LoadedModel(network, name=name, class_names=["a", "b"],
                       feature_names=[f"f{i}" for i in range(features)], seq_len=steps)


def test_wide_convolutions_get_small_passes_and_narrow_networks_large_ones():
    x = torch.zeros(3, 60, 1)
    rows = {name: occlusion.occlusion_rows(built(name), x) for name in ("fcn", "cnn-lstm-attention")}
    # fcn's largest layer output: its third block's padded input, 256 channels x (60 + 2) steps;
    # cnn-lstm-attention's: its first convolution's, 16 channels x 60 steps
    assert rows["fcn"] == occlusion.ACTIVATION_VALUES // (256 * 62)
    assert rows["cnn-lstm-attention"] == min(pass_rows("cpu", 60), occlusion.ACTIVATION_VALUES // (16 * 60))
    assert rows["fcn"] < rows["cnn-lstm-attention"]


@pytest.mark.parametrize("method, options", [("window-occlusion", {"window": 6, "stride": 3}),
                                             ("feature-ablation", {"segments": 12})])
def test_the_pass_size_changes_no_value_beyond_float_rounding(method, options, monkeypatch):
    model = built("fcn", 2)
    X = np.random.default_rng(0).normal(size=(5, 60, 2)).astype(np.float32)
    default = xaicore.explain(model, X, method=method, **options)
    monkeypatch.setattr(occlusion, "occlusion_rows", lambda model, inputs: 1)
    one_row = xaicore.explain(model, X, method=method, **options)
    assert_close(one_row.attributions, default.attributions,
                 scale=float(np.abs(default.attributions).max()))
