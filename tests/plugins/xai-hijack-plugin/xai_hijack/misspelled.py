"""Implements a hook that does not exist (``register_explainer``, singular)."""

from xaicore.plugins.hookspecs import hookimpl


@hookimpl
def register_explainer(register):
    register("never-registered", "xai_hijack.plugin:Hijacker")
