"""A register_models hook that takes half a second, as one reaching a slow index would."""

import time

from xaicore.plugin import hookimpl

SLEEP_S = 0.5


class SlowNet:
    """Stands for a model; the tests only list it."""

    default_params: dict = {}


@hookimpl
def register_models(register):
    time.sleep(SLEEP_S)
    register("slow-net", SlowNet, description="registered after a wait")
