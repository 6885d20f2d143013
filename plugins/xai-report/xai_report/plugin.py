"""Registers the self-contained HTML report."""

from xaicore.plugin import hookimpl


@hookimpl
def register_renderers(register):
    register("html-report", "xai_report.report:HtmlReport",
             description="One self-contained HTML file: model card, explanations, evaluation")


@hookimpl
def register_commands(cli):
    from xai_report.commands import report_cmd

    cli.add_command(report_cmd)
