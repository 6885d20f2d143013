"""Errors that reach the user as a one-line message, never a traceback."""


class XaiError(Exception):
    """A problem with the user's input, data, model or plugins, explained in its message."""


class PluginError(XaiError):
    """A plugin failed to load or register (raised only under XAI_STRICT_PLUGINS=1)."""


class UnknownNameError(XaiError, LookupError):
    """A model, explainer, renderer or dataset name that no installed plugin provides."""


class PluginCodeError(XaiError):
    """Plugin code raised: one line naming the plugin, its distribution and the hook or method;
    the original exception is the ``__cause__`` (shown with ``--debug`` or ``XAI_DEBUG=1``)."""

    @classmethod
    def of(cls, who: str, where: str, exc: BaseException) -> "PluginCodeError":
        """``WHO failed in WHERE: Type: message``, caused by ``exc``."""
        error = cls(f"{who} failed in {where}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
