"""The documentation cannot drift from the code: every public name of the two plugin APIs is in
docs/plugins.md with its real signature, every hook too, and every ``xai`` command (plugins'
included) has its section in docs/usage.md's command reference naming each of its options."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest

import xaicore.application as application
import xaicore.plugin as component
from xaicore.cli import cli
from xaicore.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_MD = (ROOT / "docs" / "plugins.md").read_text()
USAGE_MD = (ROOT / "docs" / "usage.md").read_text()


def signature_text(name: str, obj: object) -> str:
    """``name(params)`` with parameter names and defaults and no annotations (a class: its
    constructor); ``name`` alone for a value that is neither a function nor a class, or a class
    whose constructor has no readable signature (an exception's)."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return name
    try:
        signature = inspect.signature(obj)
    except ValueError:
        return name
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return name + str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def test_signature_text_renders_names_and_defaults_without_annotations():
    def f(a: int, b: str = "x", *args: int, c: float = 1.0, **kw: object) -> None: ...

    class C:
        def __init__(self, path: Path, mode: str = "r") -> None: ...

    assert signature_text("f", f) == "f(a, b='x', *args, c=1.0, **kw)"
    assert signature_text("C", C) == "C(path, mode='r')"
    assert signature_text("LIMIT", 3) == "LIMIT"


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a markdown heading line) up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2:]
    end = re.search(rf"^{level} ", rest, re.M)
    return rest[:end.start()] if end else rest


@pytest.mark.parametrize(("module", "heading"), [
    (component, "### Reference: `xaicore.plugin`"),
    (application, "### Reference: `xaicore.application`"),
])
def test_every_exported_name_is_documented_with_its_signature(module, heading):
    documented = section(PLUGINS_MD, heading)
    missing = [signature_text(name, getattr(module, name)) for name in module.__all__
               if f"`{signature_text(name, getattr(module, name))}`" not in documented]
    assert not missing, f"not in docs/plugins.md under {heading!r} as written: {missing}"


def test_every_hook_is_documented_with_its_signature():
    hooks = [(name, f) for name, f in vars(hookspecs).items()
             if inspect.isfunction(f) and name.startswith("register_")]
    assert len(hooks) == 8
    missing = [signature_text(name, f) for name, f in hooks
               if f"`{signature_text(name, f)}`" not in PLUGINS_MD]
    assert not missing, f"hooks not in docs/plugins.md: {missing}"


def commands() -> dict[str, click.Command]:
    """Every command of ``xai``: the core's and the built-in plugins' (all loaded)."""
    ctx = click.Context(cli)
    found = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def test_every_command_and_option_is_in_the_usage_reference():
    found = commands()
    assert {"train", "explain", "evaluate", "report", "figures", "plugins", "import"} <= set(found)
    reference = section(USAGE_MD, "## Command reference")
    missing = []
    for name, command in found.items():
        heading = f"### `xai {name}`"
        if f"\n{heading}\n" not in reference:
            missing.append(heading)
            continue
        text = section(reference, heading)
        flags = [flag for param in command.params for flag in (*param.opts, *param.secondary_opts)
                 if flag.startswith("--")]
        missing += [f"xai {name} {flag}" for flag in flags
                    if not re.search(rf"`{re.escape(flag)}(?![\w-])", text)]
    assert not missing, f"not in docs/usage.md's command reference: {missing}"


def test_the_checks_see_a_missing_name_and_a_wrong_signature():
    def explain_batch(model, options, job, start, stop=None): ...

    text = "`explain_batch(model, options, job, start, stop)`"
    assert f"`{signature_text('explain_batch', explain_batch)}`" not in text
    assert section("# A\n## B\nb `x`\n## C\nc\n", "## B") == "b `x`\n"
    assert not re.search(rf"`{re.escape('--out')}(?![\w-])", "`--output` FILE")
