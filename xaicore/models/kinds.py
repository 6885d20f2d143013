"""The input kind (``protocols.Modality``) of a model, and the view gradient methods attribute on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xaicore.errors import XaiError
from xaicore.plugins import registry
from xaicore.plugins.boundary import failure


@dataclass
class View:
    """Where gradients are taken: ``module`` maps ``inputs`` (``[batch, position, channel]``, no
    NaN) to logits, and ``fold`` maps attributions on ``inputs`` to the model's inputs' shape."""

    module: nn.Module
    inputs: torch.Tensor
    fold: Callable[[torch.Tensor], torch.Tensor]


class ViewModel:
    """A model whose ``module`` is a view's (every other attribute is the model's own)."""

    def __init__(self, model: Any, module: nn.Module) -> None:
        self.model = model
        self.module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def modality_of(model: Any) -> Any:
    """The registered kind of input of a model (or network): its ``modality``, else the default."""
    return registry.get_modality(getattr(model, "modality", None) or None)


def modality_name(network: Any) -> str:
    """The name of the kind of input a network takes."""
    return str(getattr(network, "modality", None) or modality_of(network).name)


def build_network(cls: type, name: str, *args: Any, refusal: str | None = None,
                  **params: Any) -> nn.Module:
    """``cls(*args, **params)``, the constructor of the network registered as ``name``; with
    ``refusal``, a TypeError or ValueError (parameters it does not take) is the one-line error
    ``refusal: <why>``; any other failure names the plugin."""
    try:
        return cls(*args, **params)
    except XaiError:
        raise
    except (TypeError, ValueError) as exc:
        if refusal is None:
            raise failure("models", name, f"{name}.__init__", exc) from exc
        raise XaiError(f"{refusal}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the plugin's constructor
        raise failure("models", name, f"{name}.__init__", exc) from exc
