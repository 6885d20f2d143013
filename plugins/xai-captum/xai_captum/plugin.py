"""Registers captum's gradient-based attribution methods (captum is imported on first use)."""

from xaicore.plugin import hookimpl

METHODS = {
    "integrated-gradients": ("IntegratedGradientsExplainer", "Integrated Gradients with convergence delta"),
    "saliency": ("SaliencyExplainer", "Gradient of the target logit with respect to the input"),
    "input-x-gradient": ("InputXGradientExplainer", "Input times gradient"),
    "smoothgrad": ("SmoothGradExplainer", "Saliency averaged over noisy copies of the input"),
    "deeplift": ("DeepLiftExplainer", "DeepLIFT (rescale rule) against a baseline"),
    "gradient-shap": ("GradientShapExplainer", "Expected gradients over a background sample"),
}


@hookimpl
def register_explainers(register):
    for name, (cls, description) in METHODS.items():
        register(name, f"xai_captum.explainers:{cls}", description=description)
    register("noise-tunnel", "xai_captum.tunnel:NoiseTunnel",
             description="noise-tunnel:<method> (series, images): SmoothGrad, SmoothGrad² or "
                         "VarGrad around a gradient method")
    register("extremal-mask", "xai_captum.masks:ExtremalMask",
             description="Series only: a mask learned with a perturbation network (ExtremalMask)")
    register("dynamask", "xai_captum.masks:DynaMask",
             description="Series only: masks of set areas learned against a fade or a blur (DynaMask)")
    register("time-forward", "xai_captum.time_forward:TimeForward",
             description="time-forward:<method>: the method at every prefix, for models that "
                         "predict at every step (tint's TimeForwardTunnel)")
