"""The hooks a plugin implements. Each receives a ``register`` callback.

``register(name, target, **info)`` records an entry without importing it: ``target`` is either the
object itself or a ``"module:attribute"`` string that is imported the first time the entry is used,
so registering never imports torch, captum, shap or matplotlib.
"""

import pluggy

hookspec = pluggy.HookspecMarker("xai")
hookimpl = pluggy.HookimplMarker("xai")


@hookspec
def register_modalities(register):
    """Register kinds of input (classes following ``protocols.Modality``): series, texts, images.

    ``register(name, target, default=True)`` makes it the kind of every network that names none.
    """


@hookspec
def register_models(register):
    """Register model architectures (``torch.nn.Module`` classes following ``protocols.Network``)."""


@hookspec
def register_explainers(register):
    """Register explainers (classes following ``protocols.Explainer``)."""


@hookspec
def register_renderers(register):
    """Register renderers (classes following ``protocols.Renderer``)."""


@hookspec
def register_datasets(register):
    """Register dataset loaders (callables ``load(name, **options) -> DataSplit``)."""


@hookspec
def register_metrics(register):
    """Register explanation-quality metrics (classes following ``protocols.Metric``)."""


@hookspec
def register_engines(register):
    """Register execution engines (classes following ``protocols.Engine``)."""


@hookspec
def register_commands(cli):
    """Add ``click`` commands to ``cli`` (the ``xai`` group) with ``cli.add_command(command)``.

    The module defining the command is imported by ``xai --help``: import torch and other heavy
    modules inside the command function.
    """
