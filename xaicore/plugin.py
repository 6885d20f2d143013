"""The public plugin API: everything a plugin imports from xaicore, and nothing else.

``from xaicore.plugin import hookimpl, BaseExplainer, Option, ...``. Only ``hookimpl`` is imported
eagerly; every other name is imported on first use (module ``__getattr__``), so a plugin module
that only registers hooks imports no torch, numpy or pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from xaicore.hookspecs import hookimpl

_LAZY: dict[str, str] = {
    # explainers and results
    "BaseExplainer": "xaicore.explainer",
    "build_explanation": "xaicore.explainer",
    "Explanation": "xaicore.explanation",
    "get_explainer": "xaicore.api",
    # errors and options
    "XaiError": "xaicore.errors",
    "Option": "xaicore.options",
    "defaults_of": "xaicore.options",
    "validate": "xaicore.options",
    # data and models
    "Dataset": "xaicore.data",
    "DataSplit": "xaicore.data",
    "as_series": "xaicore.data",
    "LoadedModel": "xaicore.model",
    "load_checkpoint": "xaicore.model",
    "CHECKPOINT": "xaicore.model",
    # runs
    "load_run_data": "xaicore.explaining",
    "method_names": "xaicore.explaining",
    "parse_samples": "xaicore.explaining",
    "StoredExplanation": "xaicore.store",
    "is_store": "xaicore.store",
    # installed components
    "names": "xaicore.registry",
    "get_metric": "xaicore.registry",
    "get_renderer": "xaicore.registry",
    "render_stage": "xaicore.stages",
    "renderers_for": "xaicore.stages",
    # engines (streaming)
    "ExplainJob": "xaicore.streaming",
    "explain_batch": "xaicore.streaming",
    "load_job_model": "xaicore.streaming",
    # files
    "atomic_open": "xaicore.files",
    "atomic_path": "xaicore.files",
    "write_text": "xaicore.files",
    "safe_name": "xaicore.files",
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its core module on first use."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xaicore.plugin' has no attribute {name!r}")


__all__ = sorted([*_LAZY, "hookimpl"])
