"""xai core: protocols, the Explanation result type and the plugin registry.

Heavy names (``explain``, ``Explanation``, ``load_run``, ``wrap_model``, ``train``,
``load_dataset``) are imported on first use so
that ``import xaicore`` and the ``xai`` command start without torch.
"""

from xaicore.lazy import lazy_names

__version__ = "0.1.0"

_LAZY = {
    "explain": "xaicore.explaining.api",
    "Explanation": "xaicore.explaining.explanation",
    "load_explanation": "xaicore.explaining.store",
    "load_run": "xaicore.models.checkpoints",
    "wrap_model": "xaicore.models.loaded",
    "LoadedModel": "xaicore.models.loaded",
    "XaiError": "xaicore.errors",
    "train": "xaicore.runs.training",
    "load_dataset": "xaicore.data.loading",
}


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = sorted(_LAZY) + ["__version__"]
