"""The core's layering (docs/architecture.md, "Layers"): no import points up or closes a cycle."""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "xaicore"
LAZY_TARGET = re.compile(r"^(xaicore(?:\.\w+)+)(?::\w+)?$")


def modules() -> dict[str, Path]:
    """Every core module by dotted name (``xaicore.models.loaded``; a package by its own name)."""
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def documented_layers() -> list[list[str]]:
    """The module patterns of each layer, bottom first, as docs/architecture.md lists them."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for item in re.split(r"\n\d+\. ", "\n" + section)[1:]:
        names = re.findall(r"`([\w.*]+)`", item.split(":", 1)[1].split("(", 1)[0])
        layers.append([f"xaicore.{n}" if n != "xaicore" else n for n in names])
    return layers


def layer_of(name: str, layers: list[list[str]]) -> int | None:
    for number, patterns in enumerate(layers, 1):
        if any(name == p or fnmatch(name, p) for p in patterns):
            return number
    if name.count(".") == 1 and not name.endswith("__init__") and name in PACKAGES:
        return 1  # a folder's __init__ holds only its docstring
    return None


PACKAGES = {name for name, path in modules().items() if path.name == "__init__.py"}


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """The core modules ``name`` imports: (module, line, inside a function)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            named = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            named = [alias.name for alias in node.names]
        else:
            continue
        targets = []
        for candidate in named:  # a module itself, else the module that holds the name
            target = next((candidate.rsplit(".", k)[0] for k in range(candidate.count(".") + 1)
                           if candidate.rsplit(".", k)[0] in known), None)
            if target and target != name and target not in targets:
                targets.append(target)
        found += [(target, node.lineno, id(node) in inner) for target in targets]
    return found


def lazy_targets(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """Core modules named in string constants such as ``"xaicore.explaining.streaming:LocalEngine"``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = LAZY_TARGET.match(node.value)
            if match and match.group(1) in known:
                found.append((match.group(1), node.lineno))
    return found


def test_the_documented_layers_name_real_modules_and_cover_the_core():
    layers = documented_layers()
    assert len(layers) >= 5, layers
    known = modules()
    for patterns in layers:
        for pattern in patterns:
            assert any(fnmatch(name, pattern) or name == pattern for name in known), (
                f"docs/architecture.md lists {pattern}, which is no core module")
    unplaced = [name for name in known if layer_of(name, layers) is None]
    assert not unplaced, f"core modules in no layer of docs/architecture.md: {unplaced}"


def test_no_core_import_points_up():
    layers, known = documented_layers(), modules()
    upward = []
    for name, path in known.items():
        own = layer_of(name, layers) or 0  # an unplaced module fails the test above
        for target, line, _ in imports(name, path, set(known)):
            if (layer_of(target, layers) or 0) > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} "
                              f"(layer {layer_of(target, layers)} above {own})")
        # the public tables load on first use
        if name not in ("xaicore", "xaicore.plugin", "xaicore.application"):
            for target, line in lazy_targets(path, set(known)):
                if (layer_of(target, layers) or 0) > own:
                    upward.append(f"{path.relative_to(ROOT)}:{line} names {target} lazily "
                                  f"(layer {layer_of(target, layers)} above {own})")
    assert not upward, "\n".join(upward)


def test_no_core_import_closes_a_cycle():
    known = modules()
    graph = {name: {t for t, _, _ in imports(name, path, set(known))} for name, path in known.items()}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = trail[trail.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, trail + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_the_public_tables_import_nothing_at_once_but_the_hook_marker_and_the_lazy_loader():
    known = modules()
    for name in ("xaicore", "xaicore.plugin", "xaicore.application"):
        eager = {t for t, _, inner in imports(name, known[name], set(known)) if not inner}
        assert eager <= {"xaicore.plugins.hookspecs", "xaicore.lazy"}, (name, eager)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The AST reading finds module-level and function-level imports, relative ones included."""
    known = {"xaicore.errors", "xaicore.cli", "xaicore.plugins", "xaicore.plugins.registry"}
    probe = tmp_path / "probe.py"
    probe.write_text("from xaicore import cli\n\ndef f():\n    from . import registry\n"
                     "    import xaicore.errors\n")
    found = imports("xaicore.plugins.loading", probe, known)
    assert found == [("xaicore.cli", 1, False), ("xaicore.plugins.registry", 4, True),
                     ("xaicore.errors", 5, True)]
    assert layer_of("xaicore.cli", documented_layers()) > layer_of("xaicore.plugins.loading",
                                                                     documented_layers())
