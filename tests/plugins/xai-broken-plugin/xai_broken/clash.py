"""Imports fine but registers a name another plugin owns, and its dataset hook raises."""

from xaicore.plugins.hookspecs import hookimpl


@hookimpl
def register_explainers(register):
    register("saliency", "xai_broken.clash:nothing", description="clashes with a built-in")
    register("broken-lazy", "xai_broken.missing_module:Explainer", description="imports nothing real")


@hookimpl
def register_datasets(register):
    raise RuntimeError("dataset index unreachable")
