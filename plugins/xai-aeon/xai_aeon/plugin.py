"""Registers every classification dataset shipped inside the aeon package, without importing aeon."""

from importlib.util import find_spec
from pathlib import Path

from xaicore.plugin import hookimpl


def shipped_datasets() -> list[str]:
    """Names of the datasets aeon ships with both a _TRAIN.ts and a _TEST.ts file."""
    spec = find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(d.name for d in data.iterdir()
                  if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file())


@hookimpl
def register_datasets(register):
    for name in shipped_datasets():
        register(name, "xai_aeon.loader:load", description=f"UCR/UEA {name} (shipped with aeon)")
