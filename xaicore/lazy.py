"""Names of a public module imported on first use, so importing the module loads no torch."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(module: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``table[name]`` (``"pkg.mod"``, or
    ``"pkg.mod:attr"`` when the name differs) on first use."""

    def __getattr__(name: str) -> Any:
        if name in table:
            where, _, attr = table[name].partition(":")
            return getattr(import_module(where), attr or name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
