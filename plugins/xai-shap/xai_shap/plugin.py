"""Registers the SHAP and occlusion explainers (shap is imported on first use)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("shap", "xai_shap.explainer:ShapExplainer",
             description="SHAP values over time segments (series) or words and tokens (texts), "
                         "with additivity error reported")
    register("window-occlusion", "xai_shap.occlusion:WindowOcclusion",
             description="Drop in the target logit when a series window or a text's token or word "
                         "is occluded")
