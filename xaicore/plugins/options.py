"""Options declared once per component (name, type, default, range or choices, help), checked by one function.

Every kind of component (model, explainer, renderer, dataset loader, metric, engine) declares its
options the same way: an ``options`` attribute holding a tuple of ``Option``; ``declared`` reads it
and ``resolve`` is the one check the core runs on a component's options before the component runs.
``validate(owner, spec, values)`` overlays ``values`` on the defaults, refuses unknown names (with
close matches), converts CLI strings to the declared type and refuses wrong types and values out of
range, each with a one-line ``XaiError``. Light: no torch, numpy or pandas (numpy is imported
only to read a ``Series`` value).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xaicore.errors import XaiError

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class Series:
    """Option type of a series-shaped array: one series ``[time, feature]`` (``[time]`` for one
    feature) shared by every sample, or one per sample ``[sample, time, feature]``; a CLI string
    names a ``.npy`` file holding one. The option converts it to a real-valued numpy array;
    ``BaseExplainer`` checks its shape against the inputs and passes it on per sample, shaped like
    the inputs (a user's baseline)."""


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
               list: "a list of integers",
               Series: "an array ([time, feature] or [sample, time, feature]) or a .npy file"}


@dataclass(frozen=True)
class Option:
    """One option: ``type`` is bool, int, float, str, list (of integers; ``min``/``max`` bound each
    item), ``Series`` (an array shaped like one series or like the inputs, or a .npy file) or
    object (any value, passed through); ``keywords`` are words accepted instead of a value of the
    type (``n_steps`` = an integer or ``"auto"``, ``baseline`` = a kind or an array)."""

    name: str
    type: type
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    keywords: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for ``xai list --options``: name, type, default, allowed values, help."""
        allowed = ""
        if self.choices is not None:
            allowed = f" one of {', '.join(map(str, self.choices))}"
        elif self.min is not None or self.max is not None:
            allowed = f" in [{_fmt(self.min, '-inf')}, {_fmt(self.max, 'inf')}]"
        kind = " or ".join([_kind_name(self.type), *self.keywords])
        none = " or null" if self.accepts_none else ""
        return f"{self.name} ({kind}{none}, default {self.default!r}{allowed}): {self.help}".rstrip(": ")

    def as_dict(self) -> dict[str, Any]:
        """The declaration as JSON (``xai list --options --json``); defaults that JSON cannot
        hold are shown by their repr."""
        default = self.default if self.default is None or isinstance(
            self.default, (bool, int, float, str, list)) else repr(self.default)
        return {"name": self.name, "type": " or ".join([_kind_name(self.type), *self.keywords]),
                "default": default, "min": self.min, "max": self.max,
                "choices": None if self.choices is None else list(self.choices),
                "nullable": self.accepts_none, "help": self.help}

    @property
    def accepts_none(self) -> bool:
        return self.nullable or self.default is None

    def convert(self, owner: str, value: Any) -> Any:
        """``value`` as this option's type, or a one-line XaiError naming ``owner`` and the option."""
        where = f"{owner}: option {self.name!r}"
        if value is None or (isinstance(value, str) and value == "null" and self.type is not str):
            if self.accepts_none:
                return None
            raise XaiError(f"{where} must be {self._expected()}, not null")
        if isinstance(value, str) and value.strip() in self.keywords:
            return value.strip()
        if self.type is Series:
            return _as_series(self, owner, value)
        if self.type is not object:
            value = _as_type(self.type, value, f"{where} must be {self._expected()}, not {value!r}")
        if self.choices is not None and value not in self.choices:
            raise XaiError(f"{owner}: unknown {self.name} {value!r}; it must be one of "
                           f"{', '.join(map(str, self.choices))}")
        items = value if self.type is list else [value]
        if any(self.min is not None and v < self.min or self.max is not None and v > self.max
               for v in items):
            raise XaiError(f"{where} must be in [{_fmt(self.min, '-inf')}, {_fmt(self.max, 'inf')}], "
                           f"not {value!r}")
        return value

    def _expected(self) -> str:
        kind = _TYPE_NAMES.get(self.type, getattr(self.type, "__name__", str(self.type)))
        return " or ".join([kind, *map(repr, self.keywords)])


def _kind_name(kind: type) -> str:
    return "array" if kind is Series else getattr(kind, "__name__", str(kind))


def _as_series(option: Option, owner: str, value: Any) -> Any:
    """``value`` (an array, nested lists, a tensor or a CLI path of a ``.npy`` file) as a
    real-valued numpy array of 1 to 3 dimensions; its shape is checked against the inputs later."""
    import numpy as np

    where, expected = f"{owner}: option {option.name!r}", _TYPE_NAMES[Series]
    if isinstance(value, str):
        path = value.strip()
        if not path.endswith(".npy"):
            words = "".join(f"{word}, " for word in option.keywords)
            raise XaiError(f"{owner}: unknown {option.name} {value!r}; it must be one of {words}"
                           f"{expected}")
        try:
            value = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise XaiError(f"{where}: no file {path!r}") from None
        except (OSError, ValueError) as exc:
            raise XaiError(f"{where}: {path!r} is not a readable .npy array ({exc})") from None
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise XaiError(f"{where} must be {expected}, not a ragged or mixed sequence") from None
    if array.dtype.kind not in "iuf":
        raise XaiError(f"{where} must be a real-valued array, not dtype {array.dtype}")
    if not 1 <= array.ndim <= 4:
        raise XaiError(f"{where} must be [time, feature] ([time] for one feature) or "
                       f"[sample, time, feature] (or an input of the model's own layout, such as "
                       f"an image [channel, height, width]); got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def _fmt(bound: float | None, missing: str) -> str:
    if bound is None:
        return missing
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _as_type(kind: type, value: Any, error: str) -> Any:
    """Convert a Python value or a CLI string to ``kind`` without truncating or guessing."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise XaiError(error)
    if kind is int:
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise XaiError(error) from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise XaiError(error)
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise XaiError(error) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise XaiError(error)
        return float(value)
    if kind is list:
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise XaiError(error)
    if kind is str:
        if isinstance(value, str):
            return value
        raise XaiError(error)
    if isinstance(value, kind):
        return value
    raise XaiError(error)


def infer(defaults: Mapping[str, Any]) -> list[Option]:
    """Options for a component that declares only a ``defaults`` dict: the type of each default."""
    return [Option(name, type(default) if type(default) in (bool, int, float, str) else object, default)
            for name, default in defaults.items()]


def defaults_of(spec: Iterable[Option]) -> dict[str, Any]:
    return {option.name: option.default for option in spec}


def declared(component: Any) -> list[Option]:
    """The options ``component`` declares in ``options``; without them, options typed after its
    ``defaults`` dict (a network's ``default_params``), none when it has neither."""
    spec = getattr(component, "options", None) or ()
    if spec:
        return list(spec)
    return infer(getattr(component, "defaults", None) or getattr(component, "default_params", None)
                 or {})


def resolve(owner: str, component: Any, values: Mapping[str, Any], noun: str = "option",
            given_only: bool = False) -> dict[str, Any]:
    """The one check of a component's options before it runs: ``values`` against ``declared``.

    The declared defaults overlaid with the converted ``values``; with ``given_only`` (renderers,
    which take context they may ignore) only the declared names among ``values`` are checked and
    everything given is passed on, converted, without defaults added."""
    spec = declared(component)
    if not given_only:
        return validate(owner, spec, values, noun)
    names = {option.name for option in spec}
    mine = validate(owner, spec, {k: v for k, v in values.items() if k in names}, noun)
    return {k: mine[k] if k in names else v for k, v in values.items()}


def takes_options(owner: str, *spec: Option) -> Callable[[Callable], Callable]:
    """Declare the options of a function component (a dataset loader): it gets ``options`` and
    every call is checked by ``resolve``, from the core or from Python alike."""
    def declare(function: Callable) -> Callable:
        @functools.wraps(function)
        def checked(*args: Any, **values: Any) -> Any:
            return function(*args, **resolve(owner, checked, values))

        checked.options = spec  # type: ignore[attr-defined]
        return checked

    return declare


def validate(owner: str, spec: Iterable[Option], values: Mapping[str, Any],
             noun: str = "option") -> dict[str, Any]:
    """The defaults of ``spec`` overlaid with ``values``, each converted and checked."""
    by_name = {option.name: option for option in spec}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(by_name), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise XaiError(f"{owner} has no {noun} {', '.join(map(repr, unknown))}{hint}; its {noun}s "
                       f"are: {', '.join(sorted(by_name)) or 'none'}")
    out = {name: list(option.default) if option.type is list else option.default
           for name, option in by_name.items()}
    for name, value in values.items():
        out[name] = by_name[name].convert(owner, value)
    return out
