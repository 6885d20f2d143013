"""How the suite compares floating-point results: one rule, stated once.

float32 carries about 7 significant digits, and a value computed through a reduction differs by a
few units in the last place of the *largest* term when the same rows are computed in another batch
split, thread schedule or kernel. So two float32 results are equal when

    |actual - expected| <= rtol * (|expected| + max|expected|)

with ``rtol = FLOAT32_RTOL``: relative to each value and to the magnitude of the array it belongs
to (an element near zero inherits the array's rounding error, not a tolerance of its own).

A test passes a wider ``rtol`` only where the two sides are different estimates (an integral's
quadrature error, a sampled estimator, pixels read back from a figure) and says so. Results that
must be identical (same process, same batch, same seed: byte-identity, resume, caching) are compared
with ``assert_identical``, never with a tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT32_RTOL = 1e-5
FLOAT16_RTOL = 1e-3  # what the HTML report embeds its arrays with


def as_float64(values: Any) -> np.ndarray:
    """A numpy array or torch tensor (on any device, with or without a graph) as float64."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def tolerance(expected: Any, rtol: float = FLOAT32_RTOL, scale: float | None = None) -> float:
    """The absolute part of the rule: ``rtol`` times the magnitude of the values compared.

    The magnitude is the largest absolute value in ``expected``, or ``scale`` where the values come
    from larger ones (a mean of probabilities has their scale, 1, however small the mean).
    """
    if scale is not None:
        return rtol * scale
    values = np.abs(as_float64(expected))
    values = values[np.isfinite(values)]
    return float(rtol * values.max()) if values.size else 0.0


def assert_close(actual: Any, expected: Any, rtol: float = FLOAT32_RTOL, *,
                 scale: float | None = None, err_msg: str = "", equal_nan: bool = False) -> None:
    """``actual`` equals ``expected`` within floating-point error (the module's rule)."""
    np.testing.assert_allclose(as_float64(actual), as_float64(expected), rtol=rtol,
                               atol=tolerance(expected, rtol, scale), err_msg=err_msg,
                               equal_nan=equal_nan)


def is_close(actual: Any, expected: Any, rtol: float = FLOAT32_RTOL, *,
             scale: float | None = None) -> bool:
    """Whether ``assert_close`` would pass: for asserting that two results *differ*."""
    return bool(np.allclose(as_float64(actual), as_float64(expected), rtol=rtol,
                            atol=tolerance(expected, rtol, scale)))


def assert_identical(actual: Any, expected: Any, *, err_msg: str = "") -> None:
    """Bit-for-bit equal (NaN where NaN): the same computation on the same values."""
    np.testing.assert_array_equal(actual, expected, err_msg=err_msg)


def assert_frames_close(actual: Any, expected: Any) -> None:
    """Two tables with the same columns: float columns by the module's rule, the rest exactly."""
    import pandas as pd

    assert list(actual.columns) == list(expected.columns)
    for column in expected.columns:
        if expected[column].dtype.kind == "f":
            assert_close(actual[column], expected[column], err_msg=column, equal_nan=True)
        else:
            pd.testing.assert_series_equal(actual[column], expected[column], check_exact=True)
