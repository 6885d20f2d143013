"""Background data shared by the metrics (their options go through ``xaicore.plugin.validate``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from xaicore.plugin import XaiError


def background_array(background: Any, n_features: int, what: str) -> np.ndarray:
    """Train inputs ``[n, time, feature]`` as float32, checked against the model's features."""
    X = np.asarray(background, dtype=np.float32)
    if X.ndim == 2 and n_features == 1:
        X = X[:, :, None]
    if X.ndim != 3 or X.shape[2] != n_features or X.shape[0] == 0:
        raise XaiError(f"{what}: background must be train inputs [n, time, {n_features}], got "
                       f"shape {X.shape}")
    return X
