"""Registers the SHAP and occlusion explainers (shap is imported on first use)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("shap", "xai_shap.explainer:ShapExplainer",
             description="SHAP values over time segments (series), words and tokens (texts) or "
                         "superpixels and patches (images), with additivity error reported")
    register("window-occlusion", "xai_shap.occlusion:WindowOcclusion",
             description="Drop in the target logit when a series window, an image patch or a "
                         "player (a text's token or word, an image's superpixel) is occluded")
    register("feature-ablation", "xai_shap.ablation:FeatureAblation",
             description="Series: drop in the target logit when each group of cells (time segments "
                         "x feature groups) is replaced by a baseline")
    register("kernel-shap", "xai_shap.surrogates:KernelShap",
             description="KernelSHAP (efficiency exact) over time segments (series), words and "
                         "tokens (texts) or superpixels and patches (images)")
    register("lime", "xai_shap.surrogates:Lime",
             description="LIME (kernel-weighted ridge surrogate) over time segments (series), "
                         "words and tokens (texts) or superpixels and patches (images)")
