"""The time budget of one plugin hook call: a hook that takes longer is named in a warning.

A ``register_*`` hook runs before every command, so a slow one stalls them all; the warning says
which plugin it is. ``XAI_HOOK_BUDGET_S`` overrides the budget (seconds).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from xaicore.errors import PluginError

HOOK_BUDGET_S = 2.0
BUDGET_VARIABLE = "XAI_HOOK_BUDGET_S"


def hook_budget() -> float:
    """Seconds one hook call may take: ``XAI_HOOK_BUDGET_S`` or ``HOOK_BUDGET_S``."""
    text = os.environ.get(BUDGET_VARIABLE, "").strip()
    if not text:
        return HOOK_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise PluginError(f"{BUDGET_VARIABLE} must be a positive number of seconds, not {text!r}")
    return value


def timed_hook(owner: str, hook: str, function: Callable, **kwargs: Any) -> Any:
    """``function(**kwargs)``, the ``hook`` of ``owner`` (``plugin X (distribution Y)``), with a
    warning on stderr when it took longer than the budget."""
    budget = hook_budget()
    start = time.perf_counter()
    try:
        return function(**kwargs)
    finally:
        took = time.perf_counter() - start
        if took > budget:
            sys.stderr.write(f"warning: {owner}: {hook} took {took:.1f} s, over the "
                             f"{budget:g} s budget ({BUDGET_VARIABLE})\n")
