"""The plugin boundary: an exception raised by plugin code (an explainer, a model's forward, an
engine, a dataset loader, a command) becomes one line, ``plugin X (distribution Y) failed in
<where>: <error>``, with the original exception as its cause (shown by ``--debug`` or
``XAI_DEBUG=1``). An ``XaiError`` a plugin raises on purpose passes through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from xaicore.errors import PluginCodeError, UnknownNameError, XaiError
from xaicore.plugins import registry


def owner(kind: str, name: str) -> str:
    """``plugin X (distribution Y)`` of a registered component, or the name alone when it is not
    registered (a model wrapped from Python)."""
    try:
        return registry.owner(kind, name)
    except UnknownNameError:
        return f"{registry.SINGULAR[kind]} {name!r}"


def failure(kind: str, name: str, where: str, exc: BaseException) -> PluginCodeError:
    return PluginCodeError.of(owner(kind, name), where, exc)


def call(kind: str, name: str, where: str, function: Callable, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, plugin code of component ``name``."""
    try:
        return function(*args, **kwargs)
    except XaiError:
        raise
    except Exception as exc:  # noqa: BLE001 - plugin code: report it in one line
        raise failure(kind, name, where, exc) from exc


def iterate(kind: str, name: str, where: str, items: Iterator) -> Iterator:
    """The items of a plugin's generator, its exceptions reported as ``call`` does."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except XaiError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise failure(kind, name, where, exc) from exc
        yield item


def guard_forward(network: Any, name: str) -> None:
    """Make the network's ``forward`` report its exceptions as model ``name``'s, so a failing
    model is not blamed on the explainer that called it. The network's class becomes a subclass
    of its own (same name, same ``isinstance``), so copies (``copy.deepcopy``) are guarded too
    and call their own weights."""
    cls: Any = type(network)
    if getattr(cls, "_xai_model_name", None) is not None:
        return
    network.__class__ = _guarded_class(cls, name)


@functools.cache
def _guarded_class(cls: Any, name: str) -> type:
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return call("models", name, f"{name}.forward", super(guarded, self).forward, *args,
                    **kwargs)

    guarded: Any = type(cls.__name__, (cls,), {"forward": forward, "_xai_model_name": name,
                                          "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__})
    return guarded
