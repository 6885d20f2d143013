"""Registers the text input kind, its datasets and its token models."""

from xaicore.plugin import hookimpl  # noqa: F401
