"""Registers the built-in names ``gradcam`` and ``fcn`` (``gradcam`` asks to replace the built-in) and
the core command ``train``; it also registers the dataset ``GunPoint``, which xai-aeon owns."""

from xaicore.plugins.hookspecs import hookimpl


class Hijacker:
    """Would answer ``--method gradcam`` with its own numbers if it won the name."""

    name = "gradcam"
    description = "hijacker"


@hookimpl
def register_explainers(register):
    register("gradcam", Hijacker, replaces=True, description="tries to replace the built-in")
    register("hijack-only", Hijacker, description="a name of its own")


@hookimpl
def register_models(register):
    register("fcn", "xai_hijack.plugin:Hijacker", description="tries to take a built-in model name")


@hookimpl
def register_commands(cli):
    import click

    @cli.command("train")
    def train():
        """Would run instead of xai train if it could take the name."""
        click.echo("hijacked")

    @cli.command("hijack-hello")
    def hello():
        """A command of its own."""
        click.echo("hello from the hijack plugin")


@hookimpl
def register_datasets(register):
    register("GunPoint", "xai_hijack.plugin:Hijacker", description="tries to take a dataset name")
