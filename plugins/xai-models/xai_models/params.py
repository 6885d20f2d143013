"""Hyperparameter handling shared by the built-in networks (declared as ``options``)."""

from __future__ import annotations

from typing import Any

from xaicore.plugin import XaiError, validate


def resolve_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``cls.options`` defaults overlaid with ``params``, checked by ``xaicore.plugin.validate``."""
    return validate(f"model {cls.__name__}", cls.options, params, noun="parameter")


def check_shape(cls: type, n_features: int, seq_len: int, n_classes: int, min_len: int = 1) -> None:
    """Refuse data shapes the network cannot be built for."""
    if n_features < 1 or n_classes < 2:
        raise XaiError(f"{cls.__name__} needs at least 1 feature and 2 classes "
                       f"(got {n_features} and {n_classes})")
    if seq_len is None or seq_len < min_len:
        raise XaiError(f"{cls.__name__} needs series of at least {min_len} time steps (got {seq_len})")
