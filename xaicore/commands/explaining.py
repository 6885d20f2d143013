"""Commands of this group; their heavy imports happen inside the command functions."""

import click  # noqa: F401

COMMANDS: list = []
