"""Registers Grad-CAM, Grad-CAM++ and CAM for Conv1d layers."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("gradcam", "xai_gradcam.explainers:GradCAM",
             description="Grad-CAM on a Conv1d (series, texts) or Conv2d (images) layer, upsampled")
    register("gradcam++", "xai_gradcam.explainers:GradCAMPlusPlus",
             description="Grad-CAM++ (Chattopadhyay et al. 2018) on a Conv1d or Conv2d layer")
    register("cam", "xai_gradcam.explainers:CAM",
             description="Class activation values at a layer, reduced over channels")
