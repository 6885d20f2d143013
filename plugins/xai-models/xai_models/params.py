"""Hyperparameter handling shared by the built-in networks."""

from __future__ import annotations

from typing import Any

from xaicore.errors import XaiError


def resolve_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``cls.default_params`` overlaid with ``params``; unknown names and bad types are XaiErrors."""
    unknown = sorted(set(params) - set(cls.default_params))
    if unknown:
        raise XaiError(f"model {cls.__name__} has no parameter {', '.join(map(repr, unknown))}; "
                       f"its parameters are: {', '.join(sorted(cls.default_params))}")
    out = dict(cls.default_params)
    for key, value in params.items():
        default = cls.default_params[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise XaiError(f"parameter {key!r} of {cls.__name__} must be true or false, not {value!r}")
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise XaiError(f"parameter {key!r} of {cls.__name__} must be a positive integer, "
                               f"not {value!r}")
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise XaiError(f"parameter {key!r} of {cls.__name__} must be a number, not {value!r}")
            value = float(value)
        if isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise XaiError(f"parameter {key!r} of {cls.__name__} must be a list of positive "
                               f"integers, not {value!r}")
            value = list(value)
        out[key] = value
    return out


def check_shape(cls: type, n_features: int, seq_len: int, n_classes: int, min_len: int = 1) -> None:
    """Refuse data shapes the network cannot be built for."""
    if n_features < 1 or n_classes < 2:
        raise XaiError(f"{cls.__name__} needs at least 1 feature and 2 classes "
                       f"(got {n_features} and {n_classes})")
    if seq_len is None or seq_len < min_len:
        raise XaiError(f"{cls.__name__} needs series of at least {min_len} time steps (got {seq_len})")
