"""Registers Grad-CAM, Grad-CAM++, CAM and dCAM for Conv1d layers."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("gradcam", "xai_gradcam.explainers:GradCAM",
             description="Grad-CAM on a Conv1d (series, texts) or Conv2d (images) layer, upsampled")
    register("gradcam++", "xai_gradcam.explainers:GradCAMPlusPlus",
             description="Grad-CAM++ (Chattopadhyay et al. 2018) on a Conv1d or Conv2d layer")
    register("cam", "xai_gradcam.explainers:CAM",
             description="Class activation values at a layer, reduced over channels")
    register("dcam", "xai_gradcam.dimensions:DimensionCAM",
             description="dimension-wise CAM of a Conv1d layer: each feature's Shapley share of the "
                         "Grad-CAM map (after dCAM, Boniol et al. 2022)")
