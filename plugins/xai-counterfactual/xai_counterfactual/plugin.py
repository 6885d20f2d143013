"""Registers the counterfactual explainers native-guide and comte (nothing heavy imported)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("native-guide", "xai_counterfactual.native_guide:NativeGuide",
             description="Counterfactual of series (Native Guide, Delaney et al. 2021): the most "
                         "important window of the nearest unlike neighbour, by its Grad-CAM, "
                         "copied in and widened until the target class; multivariate too")
    register("comte", "xai_counterfactual.comte:CoMTE",
             description="Counterfactual of multivariate series (CoMTE, Ates et al. 2021): the "
                         "fewest whole channels swapped in from a target-class train series")
