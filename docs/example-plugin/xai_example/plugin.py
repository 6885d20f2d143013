"""Registers the example explainer and renderers. Names only: nothing heavy is imported here."""

from xaicore.plugin import hookimpl


@hookimpl
def register_explainers(register):
    register("occlusion", "xai_example.occlusion:Occlusion",
             description="Drop in the target logit when a time window is replaced by a baseline, "
                         "spread evenly over the window's cells")


@hookimpl
def register_renderers(register):
    register("csv", "xai_example.csv_renderer:CsvRenderer",
             description="Attributions as a long-form CSV table")
    register("importance", "xai_example.importance_renderer:ImportanceRenderer",
             description="Mean absolute attribution over time, one SVG line per explanation")
