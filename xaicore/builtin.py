"""The core's own plugin: the in-process ``local`` engine, registered like any other engine."""

from xaicore.plugins.hookspecs import hookimpl


@hookimpl
def register_engines(register):
    register("local", "xaicore.explaining.streaming:LocalEngine",
             description="In-process streaming: constant memory, one batch at a time")
