"""Users' own networks in runs (made by ``xai import``), and the rule for running their code.

A run's checkpoint names the user's code file; loading the run imports that file again, and only
a file this user imported on this machine: ``xai import`` records the file's absolute path and
sha256 in the user's own state folder (``imported_code_book``, outside every run), and a
checkpoint naming a file not in that book, a relative path or one inside a run folder is refused
before anything is imported. A run folder someone hands you cannot make xai run code you did not
choose.

A file the user imported stays trusted by its path after they edit it, while it is theirs alone
(owned by them, writable by no one else); a version byte for byte the one imported needs no such
check. What identifies the model is not the file but ``code_identity``: the source of the class
or builder function imported and of every class of the network's modules (torch's own left out),
recorded at import and compared after the import: an edit elsewhere in the file changes nothing,
an edit of the model's code is refused, naming the class that changed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaicore.errors import XaiError
from xaicore.files import file_digest, locked, run_root, write_text

IMPORTED = "imported"  # the checkpoint's "model" of every imported network (its name is apart)
ADAPTED = "net."  # the network inside its LayoutAdapter: weights and layers are named net.*
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", re.ASCII)


def default_name(attr: str) -> str:
    """An imported model's name when none is given: its class or function's (``IMPORTED`` when
    that cannot name one)."""
    name = attr.lstrip("_")[:64]
    return name if NAME.fullmatch(name) else IMPORTED


def check_name(name: str) -> str:
    """``name`` when it can name an imported model (``xai import --name``), else a one-line error."""
    if not (isinstance(name, str) and NAME.fullmatch(name)):
        raise XaiError(f"--name must be 1 to 64 letters, digits, '_', '.', '+' or '-', starting with "
                       f"a letter or digit; not {name!r}")
    return name


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
    # one module per file and version: a copy elsewhere is a module of its own (its classes'
    # source is that file)
    key = f"{path}\0{file_digest(path)}".encode()
    name = f"xai_imported_{hashlib.sha256(key).hexdigest()[:12]}"
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


def code_identity(built: Any, net: nn.Module, path: Path) -> dict[str, str]:
    """sha256 of the source of ``built`` (the class or builder function imported) and of every
    class of ``net``'s modules and their bases outside torch, by name (``module.Name`` for those
    of another file than ``path``); a class without source (compiled) counts by its name."""
    found: dict[str, Any] = {}
    for cls in (built, *(base for module in net.modules() for base in type(module).__mro__)):
        owner = getattr(cls, "__module__", "") or ""
        if owner == "builtins" or owner == "torch" or owner.startswith("torch."):
            continue
        try:
            own = Path(inspect.getsourcefile(cls) or "").resolve() == path
        except TypeError:
            own = False
        found.setdefault(cls.__qualname__ if own else f"{owner}.{cls.__qualname__}", cls)
    identity = {}
    for key, obj in found.items():
        try:
            text = inspect.getsource(obj)
        except (OSError, TypeError):
            text = ""
        identity[key] = hashlib.sha256(text.encode()).hexdigest()
    return identity


def identity_change(recorded: dict, now: dict, path: Path) -> str | None:
    """What differs between the ``code_identity`` recorded at import and the one now, or None."""
    changed = sorted(k for k in recorded.keys() & now.keys() if recorded[k] != now[k])
    gone, new = sorted(recorded.keys() - now.keys()), sorted(now.keys() - recorded.keys())
    parts = [f"{', '.join(changed)} changed" if changed else "",
             f"{', '.join(gone)} no longer used" if gone else "",
             f"{', '.join(new)} now used" if new else ""]
    text = "; ".join(p for p in parts if p)
    return f"the model's code in {path} is not what was imported ({text})" if text else None


def weights_digest(state: dict) -> str:
    """sha256 of a state dict: its names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel()
                      else b"")
    return digest.hexdigest()


def _only_yours(path: Path) -> str | None:
    """Why a file is not this user's alone (owned by another user, or writable by others), or
    None; where there are no user ids (Windows), None."""
    if not hasattr(os, "getuid"):
        return None
    info = path.stat()
    if info.st_uid != os.getuid():
        return "it belongs to another user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "other users may write it"
    return None


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
    path outside every run folder that this user imported (or, ``chosen``, the file being imported
    now), byte for byte as then or still theirs alone, and its model code is what was imported
    (``code_identity``; entries from before it, without ``source``, need the same bytes)."""
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
    source = spec.get("source")
    digest = file_digest(path)
    if source is None and digest != spec["sha256"]:
        raise XaiError(f"{path} changed since the model was imported (its sha256 differs); "
                       f"xai only runs the code you imported: run xai import again")
    versions = _book().get(str(path))
    if not chosen and (versions is None or (source is None and digest not in versions)):
        raise XaiError(f"the model code {path} of this run was not imported by you on this "
                       f"machine (no record in {imported_code_book()}); xai runs only code you "
                       f"imported: if you trust it, run xai import --module {path}:{spec['attr']} "
                       f"again")
    if not chosen and versions is not None and digest not in versions:
        reason = _only_yours(path)
        if reason is not None:
            raise XaiError(f"{path} changed since you imported it and {reason}: xai runs an "
                           f"edited file only while it is yours alone; if you trust it, run xai "
                           f"import --force again")
    cls = network_class(path, spec["attr"], spec.get("module"))
    try:
        net = cls(**params)
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise XaiError(f"{spec['attr']}(**params) failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise XaiError(f"{spec['attr']}(**params) returned a {type(net).__name__}, not a "
                       f"torch.nn.Module")
    change = None if source is None else identity_change(source, code_identity(cls, net, path),
                                                         path)
    if change:
        raise XaiError(f"{change}: the run's weights belong to the code imported; restore it, or "
                       f"import the model again (xai import --force)")
    return net

