"""Registers the self-contained HTML report."""

from xaicore.hookspecs import hookimpl


@hookimpl
def register_renderers(register):
    register("html-report", "xai_report.report:HtmlReport",
             description="One self-contained HTML file: model card, explanations, evaluation")
