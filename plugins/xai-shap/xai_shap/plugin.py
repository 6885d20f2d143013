"""Registers the SHAP explainer (shap is imported on first use)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("shap", "xai_shap.explainer:ShapExplainer",
             description="SHAP values over time segments with additivity error reported")
