"""``BaseMetric``: the shared half of every metric (declared options checked, capabilities declared)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

from xaicore.errors import XaiError
from xaicore.plugins.options import Option, defaults_of, resolve
from xaicore.protocols import METRIC_CAPABILITIES

#: The methods whose ``**options`` are checked against the declaration before they run.
CHECKED = ("evaluate", "evaluate_curves", "evaluate_many", "parts", "evaluate_part", "combine")


class BaseMetric:
    """Subclasses set ``name``, ``description``, ``higher_is_better``, ``options`` and implement
    ``evaluate``; ``capabilities`` names the optional methods they implement
    (``protocols.METRIC_CAPABILITIES``).

    Every call of a method in ``CHECKED`` gets the declared defaults overlaid with the options it
    was given, each checked (``xaicore.plugins.options.resolve``), so the body never sees an
    unknown name or a value of the wrong type or out of range.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Inputs the evaluation must provide (``"mask"``: ground truth of synthetic datasets).
    requires: ClassVar[tuple[str, ...]] = ()
    #: False keeps a costly metric out of the default evaluation (it runs when asked by name).
    default: ClassVar[bool] = True
    #: The kinds of input (``Modality.name``) it runs on by default; empty: every kind.
    default_kinds: ClassVar[tuple[str, ...]] = ()
    #: True asks ``xai evaluate`` for a paired verdict against the random baseline.
    versus_random: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options" in cls.__dict__:
            cls.defaults = defaults_of(cls.options)
        cls.capabilities = frozenset(cls.capabilities)
        unknown = sorted(cls.capabilities - set(METRIC_CAPABILITIES))
        if unknown:
            raise TypeError(f"metric {cls.__name__} declares unknown capabilities {unknown}; "
                            f"they are: {', '.join(sorted(METRIC_CAPABILITIES))}")
        for method in CHECKED:
            if method in cls.__dict__ and not getattr(cls.__dict__[method], "_checks_options", False):
                setattr(cls, method, _checked(cls.__dict__[method]))

    def resolve_options(self, options: dict) -> dict:
        """Defaults overlaid with ``options``, each checked against its declaration."""
        return resolve(f"metric {self.name}", self, options)

    def check(self, model: Any) -> str | None:
        """None when the metric can score explanations of ``model``, otherwise why it cannot."""
        return None

    def evaluate(self, model: Any, explanation: Any, **options: Any) -> dict[str, float]:
        raise NotImplementedError


def _checked(method: Callable) -> Callable:
    @functools.wraps(method)
    def checked(self: BaseMetric, *args: Any, **options: Any) -> Any:
        return method(self, *args, **self.resolve_options(options))

    checked._checks_options = True  # type: ignore[attr-defined]
    return checked


def capabilities_of(metric: Any) -> frozenset[str]:
    """The optional methods ``metric`` declares (``capabilities``), each checked to be there."""
    declared = frozenset(getattr(metric, "capabilities", ()))
    for capability in sorted(declared):
        missing = [m for m in METRIC_CAPABILITIES.get(capability, ("?",))
                   if not callable(getattr(metric, m, None))]
        if missing:
            raise XaiError(f"metric {getattr(metric, 'name', metric)} declares the capability "
                           f"{capability!r} but has no {', '.join(missing)}")
    return declared
