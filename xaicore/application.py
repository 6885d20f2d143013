"""The application API: what a plugin that builds commands and workflows on runs imports (an
engine, the report, the evaluation), beside the component API ``xaicore.plugin``.

``from xaicore.application import load_run_data, method_names, ...``. Every name is imported on
first use (module ``__getattr__``), so importing this module loads no torch, numpy or pandas. A
value ``module:attr`` names an attribute called otherwise in its module.
"""

from __future__ import annotations

from xaicore.lazy import lazy_names

_LAZY: dict[str, str] = {
    # a run's model and data, and the methods that fit it
    "load_run_data": "xaicore.models.checkpoints",
    "method_names": "xaicore.explaining.methods",
    "check_methods": "xaicore.explaining.methods",
    "with_requirements": "xaicore.explaining.methods",
    "parse_samples": "xaicore.explaining.runs",
    # result stores
    "StoredExplanation": "xaicore.explaining.store",
    "load_explanation": "xaicore.explaining.store",
    "is_store": "xaicore.explaining.store",
    # run folders
    "hold_runs": "xaicore.runs.directory",
    "stale_reason": "xaicore.runs.directory",
    "CHECKPOINT": "xaicore.runs.directory",
    "load_checkpoint": "xaicore.models.checkpoints",
    # installed components
    "names": "xaicore.plugins.registry",
    "get_explainer": "xaicore.explaining.api",
    "get_metric": "xaicore.plugins.registry",
    "get_modality": "xaicore.plugins.registry",
    "get_renderer": "xaicore.plugins.registry",
    "capabilities_of": "xaicore.explaining.metric",
    "render_stage": "xaicore.plugins.stages",
    "renderers_for": "xaicore.plugins.stages",
    "read_figures": "xaicore.plugins.stages",
    # the plugin boundary: a call into another plugin's code, its failure one line naming it
    "plugin_call": "xaicore.plugins.boundary:call",
    # engines (streaming) and worker processes
    "ExplainJob": "xaicore.explaining.streaming",
    "explain_batch": "xaicore.explaining.streaming",
    "load_job_model": "xaicore.explaining.streaming",
    "set_memory_share": "xaicore.models.devices",
    # statistics
    "spearman_rows": "xaicore.explaining.ranks",
    "bootstrap_indices": "xaicore.explaining.intervals",
    "mean_interval": "xaicore.explaining.intervals",
    # agreement of models' explanations (comparison.csv, the comparison report)
    "Agreement": "xaicore.explaining.agreement",
    "agreement": "xaicore.explaining.agreement",
    "model_labels": "xaicore.explaining.agreement",
    "dataset_difference": "xaicore.explaining.agreement",
    "AGREEMENT_MEASURES": "xaicore.explaining.agreement:MEASURES",
    "AGREEMENT_TOP_K": "xaicore.explaining.agreement:TOP_K",
}


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = sorted(_LAZY)
