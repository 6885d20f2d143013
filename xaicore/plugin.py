"""The component API: what an explainer, model, metric, renderer or dataset loader imports.

``from xaicore.plugin import hookimpl, BaseExplainer, Option, ...``. A plugin that builds commands
and workflows on runs (an engine, a report, an evaluation) imports the rest from
``xaicore.application``; no other xaicore module is public. Only ``hookimpl`` is imported eagerly;
every other name is imported on first use (module ``__getattr__``), so a plugin module that only
registers hooks imports no torch, numpy or pandas.
"""

from __future__ import annotations

from xaicore.lazy import lazy_names
from xaicore.plugins.hookspecs import hookimpl as hookimpl  # re-exported

_LAZY: dict[str, str] = {
    # explainers and results
    "BaseExplainer": "xaicore.explaining.base",
    "build_explanation": "xaicore.explaining.base",
    "as_background": "xaicore.explaining.background",
    "Explanation": "xaicore.explaining.explanation",
    # metrics
    "BaseMetric": "xaicore.explaining.metric",
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
    "pad_to": "xaicore.data.dataset",
    "InputSource": "xaicore.data.inputs",
    "open_input": "xaicore.data.inputs",
    "class_order": "xaicore.data.loading",
    "label_texts": "xaicore.data.loading",
    "npz_arrays": "xaicore.data.loading",
    "stratified_split": "xaicore.data.loading",
    "build_network": "xaicore.models.kinds",
    "modality_of": "xaicore.models.kinds",
    "View": "xaicore.models.kinds",
    "series_lengths": "xaicore.data.dataset",
    "LoadedModel": "xaicore.models.loaded",
    "pass_rows": "xaicore.models.devices",
    "memory_share": "xaicore.models.devices",
    "free_memory": "xaicore.models.devices",
    "pass_budget": "xaicore.models.devices",
    "saved_bytes_per_row": "xaicore.models.devices",
    # figures
    "MAX_FIGURE_INCHES": "xaicore.plugins.stages",
    "figure_size": "xaicore.plugins.stages",
    # files
    "atomic_open": "xaicore.files",
    "atomic_path": "xaicore.files",
    "write_text": "xaicore.files",
    "safe_name": "xaicore.files",
    "file_digest": "xaicore.files",
    "source_digest": "xaicore.files",
}


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = sorted([*_LAZY, "hookimpl"])
