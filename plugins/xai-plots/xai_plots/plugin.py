"""Registers the matplotlib renderers (matplotlib is imported on first use)."""

from xaicore.plugin import hookimpl


@hookimpl
def register_renderers(register):
    register("training-curves", "xai_plots.training:TrainingCurves",
             description="Loss and accuracy per epoch (PNG, SVG, EPS)")
    register("confusion-matrix", "xai_plots.training:ConfusionMatrix",
             description="Confusion matrix of the test split (PNG, SVG)")
    register("sample-plots", "xai_plots.samples:SamplePlots",
             description="Each sample with its attribution (series band or feature x time heatmap; "
                         "image, map and overlay)")
    register("global-plots", "xai_plots.global_plots:GlobalPlots",
             description="Feature and time-step importance, SHAP summaries, attention maps")


@hookimpl
def register_commands(cli):
    from .commands import figures_cmd

    cli.add_command(figures_cmd)
