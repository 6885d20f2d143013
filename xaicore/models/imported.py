"""Users' own networks in runs (made by ``xai import``), and the rule for running their code.

A run's checkpoint names the user's code file; loading the run imports that file again, and only
a file this user imported on this machine: ``xai import`` records the file's absolute path and
sha256 in the user's own state folder (``imported_code_book``, outside every run), and a
checkpoint naming any other file, a changed one, a relative path or one inside a run folder is
refused before anything is imported. A run folder someone hands you cannot make xai run code you
did not choose.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn

from xaicore.errors import XaiError
from xaicore.files import file_digest, locked, run_root, write_text

IMPORTED = "imported"
ADAPTED = "net."  # the network inside its LayoutAdapter: weights and layers are named net.*


def network_class(path: Path, attr: str, module: str | None = None) -> Any:
    """The user's ``nn.Module`` subclass ``attr`` of file ``path``, or a function returning such a
    network (``torchvision.models.resnet18``). The file is imported as a file of its own, unless
    ``module`` names the package module it is (its relative imports need the package): that is
    imported by name, and only if the name still leads to ``path``."""
    loaded = _import_by_name(module, path) if module else _import_file(path)
    cls = getattr(loaded, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) or inspect.isfunction(cls)):
        raise XaiError(f"{path} has no torch.nn.Module class {attr!r} (nor a function that "
                       f"returns one)")
    return cls


def _import_file(path: Path) -> Any:
    name = f"xai_imported_{file_digest(path)[:12]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise XaiError(f"{path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the file's own imports of its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise XaiError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
        finally:
            sys.path.remove(str(path.parent))
        sys.modules[name] = module
    return module


def _import_by_name(name: str, path: Path) -> Any:
    # the folder holding the top package of ``path``, so the name finds it from any folder
    folder = path.parent if path.name == "__init__.py" else path
    root = str(folder.parents[min(name.count("."), len(folder.parents) - 1)])
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise XaiError(f"importing {name} failed: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    finally:
        sys.path.remove(root)
    found = Path(getattr(module, "__file__", None) or "").resolve()
    if found != path:
        raise XaiError(f"module {name} is now {found}, not the file {path} you imported; import "
                       f"the model again")
    return module


def own_layer(stored: str | None) -> str | None:
    """The Grad-CAM layer's name in the user's network; the checkpoint names it inside the
    adapted module (``net.conv2``), like the weights in its ``state_dict``."""
    return stored.removeprefix(ADAPTED) if stored else None


def imported_code_book() -> Path:
    """The user's record of the code files they imported: ``$XDG_STATE_HOME/xai`` (default
    ``~/.local/state/xai``), never inside a run."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "xai" / "imported-code.json"


def _book() -> dict[str, list[str]]:
    try:
        data = json.loads(imported_code_book().read_text())
    except (OSError, ValueError):
        return {}
    return {k: [s for s in v if isinstance(s, str)] for k, v in data.items()
            if isinstance(k, str) and isinstance(v, list)} if isinstance(data, dict) else {}


def record_import(path: Path, sha256: str) -> None:
    """Note that this user chose to import ``path`` as it is now (its sha256)."""
    book = imported_code_book()
    with locked(book.parent, "xai import"):
        data = _book()
        if sha256 not in data.setdefault(str(path), []):
            data[str(path)].append(sha256)
        write_text(book, json.dumps(data, indent=1) + "\n")


def build(spec: dict, params: dict, chosen: bool = False) -> nn.Module:
    """The network a checkpoint's ``import`` entry names: refused unless its file is an absolute
    path outside every run folder, byte for byte a file this user imported (or, ``chosen``, the
    file being imported now)."""
    path = Path(spec["file"])
    if not path.is_absolute():
        raise XaiError(f"the checkpoint names its model code by a relative path ({path}); xai "
                       f"runs only the file you imported, recorded by its absolute path: run xai "
                       f"import again")
    root = run_root(path.resolve())
    if root is not None:
        raise XaiError(f"the model code {path} lies inside the run folder {root}: code that comes "
                       f"with a run folder is never run; keep your model's code outside runs and "
                       f"import it from there")
    if not path.is_file():
        raise XaiError(f"the model code of this run, {path}, is gone; import the model again")
    if file_digest(path) != spec["sha256"]:
        raise XaiError(f"{path} changed since the model was imported (its sha256 differs); "
                       f"xai only runs the code you imported: run xai import again")
    if not chosen and spec["sha256"] not in _book().get(str(path), []):
        raise XaiError(f"the model code {path} of this run was not imported by you on this "
                       f"machine (no record in {imported_code_book()}); xai runs only code you "
                       f"imported: if you trust it, run xai import --module {path}:{spec['attr']} "
                       f"again")
    cls = network_class(path, spec["attr"], spec.get("module"))
    try:
        net = cls(**params)
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise XaiError(f"{spec['attr']}(**params) failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise XaiError(f"{spec['attr']}(**params) returned a {type(net).__name__}, not a "
                       f"torch.nn.Module")
    return net

