"""The public plugin API: everything a plugin imports from xaicore, and nothing else.

``from xaicore.plugin import hookimpl, BaseExplainer, Option, ...``. Only ``hookimpl`` is imported
eagerly; every other name is imported on first use (module ``__getattr__``), so a plugin module
that only registers hooks imports no torch, numpy or pandas. A value ``module:attr`` names an
attribute called otherwise in its module.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from xaicore.plugins.hookspecs import hookimpl as hookimpl  # re-exported

_LAZY: dict[str, str] = {
    # explainers and results
    "BaseExplainer": "xaicore.explaining.base",
    "build_explanation": "xaicore.explaining.base",
    "Explanation": "xaicore.explaining.explanation",
    "get_explainer": "xaicore.explaining.api",
    # metrics
    "BaseMetric": "xaicore.explaining.metric",
    "capabilities_of": "xaicore.explaining.metric",
    # errors and options
    "XaiError": "xaicore.errors",
    "Option": "xaicore.plugins.options",
    "Series": "xaicore.plugins.options",
    "declared": "xaicore.plugins.options",
    "defaults_of": "xaicore.plugins.options",
    "takes_options": "xaicore.plugins.options",
    "validate": "xaicore.plugins.options",
    # data and models
    "Dataset": "xaicore.data.dataset",
    "DataSplit": "xaicore.data.dataset",
    "as_series": "xaicore.data.dataset",
    "series_lengths": "xaicore.data.dataset",
    "LoadedModel": "xaicore.models.loaded",
    "load_checkpoint": "xaicore.models.checkpoints",
    "CHECKPOINT": "xaicore.runs.directory",
    "pass_rows": "xaicore.models.devices",
    "memory_share": "xaicore.models.devices",
    "set_memory_share": "xaicore.models.devices",
    "free_memory": "xaicore.models.devices",
    "saved_bytes_per_row": "xaicore.models.devices",
    # runs
    "load_run_data": "xaicore.models.checkpoints",
    "method_names": "xaicore.explaining.methods",
    "parse_samples": "xaicore.explaining.runs",
    "StoredExplanation": "xaicore.explaining.store",
    "load_explanation": "xaicore.explaining.store",
    "hold_runs": "xaicore.runs.directory",
    "stale_reason": "xaicore.runs.directory",
    "is_store": "xaicore.explaining.store",
    # the plugin boundary: a call into another plugin's code, its failure one line naming it
    "plugin_call": "xaicore.plugins.boundary:call",
    # installed components
    "names": "xaicore.plugins.registry",
    "get_metric": "xaicore.plugins.registry",
    "get_renderer": "xaicore.plugins.registry",
    "render_stage": "xaicore.plugins.stages",
    "renderers_for": "xaicore.plugins.stages",
    # engines (streaming)
    "ExplainJob": "xaicore.explaining.streaming",
    "explain_batch": "xaicore.explaining.streaming",
    "load_job_model": "xaicore.explaining.streaming",
    # files
    "atomic_open": "xaicore.files",
    "atomic_path": "xaicore.files",
    "write_text": "xaicore.files",
    "safe_name": "xaicore.files",
    # statistics
    "spearman_rows": "xaicore.explaining.ranks",
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its core module on first use."""
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        return getattr(import_module(module), attr or name)
    raise AttributeError(f"module 'xaicore.plugin' has no attribute {name!r}")


__all__ = sorted([*_LAZY, "hookimpl"])
