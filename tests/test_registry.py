"""The registry: lazy entries, temporary plugins, clashing names, failing hooks, strict mode."""

import subprocess
import sys
import textwrap

import pytest

from xaicore.errors import PluginError, UnknownNameError
from xaicore.plugins import loading as plugins
from xaicore.plugins import registry
from xaicore.plugins.hookspecs import hookimpl


class TinyExplainer:
    name = "tiny"
    description = "test explainer"


@pytest.fixture
def temp_plugin():
    """Register plugin objects for one test and unregister them after (the datasette pattern)."""
    registered = []

    def add(obj, name):
        plugins.pm.register(obj, name=name)
        registered.append(name)
        return obj

    yield add
    for name in registered:
        plugins.pm.unregister(name=name)


def test_builtins_come_from_their_distributions():
    by_name = {e.name: e for e in registry.entries("explainers")}
    assert by_name["integrated-gradients"].distribution == "xai-captum"
    assert by_name["gradcam"].distribution == "xai-gradcam"
    assert by_name["gradcam"].version == "0.1.0"
    assert {e.distribution for e in registry.entries("models")} == {"xai-image", "xai-models", "xai-text"}
    assert {e.name: e.distribution for e in registry.entries("modalities")} == {
        "images": "xai-image", "series": "xai-series", "tokens": "xai-text"}
    assert "GunPoint" in registry.names("datasets")


def test_temporary_plugin_is_listed_lazily_and_removed_after(temp_plugin):
    class Plugin:
        @hookimpl
        def register_explainers(self, register):
            register("tiny", TinyExplainer, description="in-process")
            register("lazy-tiny", "xai_lazy_module_for_test:Thing", description="lazy")

    temp_plugin(Plugin(), "tmp-plugin")
    assert "tiny" in registry.names("explainers")
    explainer = registry.get_explainer("tiny")
    assert isinstance(explainer, TinyExplainer)
    # the lazy entry is not imported by listing; using it imports it, and a failure is reported
    assert "xai_lazy_module_for_test" not in sys.modules
    with pytest.raises(PluginError, match="failed to import xai_lazy_module_for_test"):
        registry.get_explainer("lazy-tiny")
    plugins.pm.unregister(name="tmp-plugin")
    assert "tiny" not in registry.names("explainers")
    plugins.pm.register(Plugin(), name="tmp-plugin")  # so the fixture can unregister it


def test_a_name_is_owned_whatever_its_case(temp_plugin):
    """A plugin's dataset ``gunpoint`` beside the built-in ``GunPoint`` would win for
    ``--dataset gunpoint``: it is rejected like any clash, naming the owner's spelling."""
    class Lookalike:
        @hookimpl
        def register_datasets(self, register):
            register("gunpoint", lambda: None, description="look-alike")

    temp_plugin(Lookalike(), "lookalike-plugin")
    found = [e for e in registry.entries("datasets") if e.name.casefold() == "gunpoint"]
    assert [(e.name, e.status) for e in found] == [("GunPoint", "ok"), ("gunpoint", "failed")]
    assert "already registered by xai-aeon as 'GunPoint'" in found[1].error
    assert "gunpoint" not in registry.names("datasets")


def test_clashing_name_is_rejected_not_replaced(temp_plugin):
    class Clash:
        @hookimpl
        def register_explainers(self, register):
            register("saliency", TinyExplainer, description="clash")

    temp_plugin(Clash(), "clash-plugin")
    saliency = [e for e in registry.entries("explainers") if e.name == "saliency"]
    assert [e.status for e in saliency] == ["ok", "failed"]
    assert saliency[0].distribution == "xai-captum"
    assert "already registered by xai-captum" in saliency[1].error


def test_failing_hook_is_recorded_and_others_still_work(temp_plugin, monkeypatch):
    class Failing:
        @hookimpl
        def register_renderers(self, register):
            raise RuntimeError("renderer index unreachable")

    temp_plugin(Failing(), "failing-plugin")
    failed = [f for f in registry.failures() if f.plugin == "failing-plugin"]
    assert len(failed) == 1 and "renderer index unreachable" in failed[0].error
    assert "html-report" in registry.names("renderers")
    monkeypatch.setenv("XAI_STRICT_PLUGINS", "1")
    registry._cache = None
    with pytest.raises(PluginError, match="renderer index unreachable"):
        registry.current()


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean integrated-gradients"):
        registry.get_explainer("integrated-gradient")
    with pytest.raises(UnknownNameError, match="Installed: .*saliency"):
        registry.get_explainer("anchors")  # not a registered explainer
    with pytest.raises(UnknownNameError, match="GunPoint"):
        registry.get_dataset("GunPoin")


def test_listing_imports_no_registered_module():
    """Listing (in a fresh interpreter) imports none of the modules the entries point to."""
    code = textwrap.dedent("""
        import sys
        from xaicore.plugins import registry
        registry.as_json()
        lazy = {e.target.partition(":")[0] for e in registry.entries() if isinstance(e.target, str)}
        print(sorted(lazy & set(sys.modules)))
        print(len(lazy))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    imported, count = result.stdout.split("\n")[:2]
    assert imported == "[]" and int(count) >= 10


def test_a_plugin_adds_a_command_and_a_failing_command_hook_fails_its_plugin(temp_plugin):
    import click
    from click.testing import CliRunner

    from xaicore.cli import XaiGroup

    @click.command("hello")
    def hello() -> None:
        click.echo("hello from a plugin")

    class Adds:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command(hello)

    class Raises:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no commands today")

    temp_plugin(Adds(), "tmp-adds")
    temp_plugin(Raises(), "tmp-raises")
    group = XaiGroup("xai")  # a fresh group, so the hooks run now
    before = len(plugins.failures)
    try:
        result = CliRunner().invoke(group, ["hello"])
        assert result.exit_code == 0 and result.output == "hello from a plugin\n"
        failure = plugins.failures[-1]
        assert failure.plugin == "tmp-raises"
        assert "register_commands raised RuntimeError: no commands today" in failure.error
    finally:
        del plugins.failures[before:]


class WritingRenderer:
    name = "stage-writer"
    description = "writes one file"
    stage = "explanations"

    def render(self, explanations, out_dir, **options):
        path = out_dir / "written.txt"
        path.write_text(str(len(explanations)))
        return [path]


class FailingRenderer:
    name = "stage-failer"
    description = "always raises"
    stage = "explanations"

    def render(self, explanations, out_dir, **options):
        raise ValueError("no ink")


class OnDemandRenderer(WritingRenderer):
    name = "stage-on-demand"
    stage = None


class StagePlugin:
    @hookimpl
    def register_renderers(self, register):
        for cls in (WritingRenderer, FailingRenderer, OnDemandRenderer):
            register(cls.name, cls, description=cls.description)


def test_renderers_run_by_declared_stage_and_failures_are_warnings(temp_plugin, tmp_path,
                                                                   monkeypatch):
    from xaicore.plugins.stages import render_stage, renderers_for

    temp_plugin(StagePlugin(), "stage-test-plugin")
    names = renderers_for("explanations")
    assert {"stage-writer", "stage-failer"} <= set(names) and "stage-on-demand" not in names
    assert {"sample-plots", "global-plots"} <= set(names)
    assert set(renderers_for("run")) >= {"training-curves", "confusion-matrix"}
    assert "html-report" not in renderers_for("run") + names
    from xaicore.plugins import stages

    ours = [n for n in names if n.startswith("stage-")]  # run only the temporary renderers here
    monkeypatch.setattr(stages, "renderers_for", lambda stage: ours)
    written, warnings = render_stage("explanations", [1, 2], tmp_path)
    assert written == {"stage-writer": [tmp_path / "written.txt"]}
    assert (tmp_path / "written.txt").read_text() == "2"
    assert warnings == ["renderer stage-failer: plugin stage-test-plugin (distribution unknown) "
                        "failed in render: ValueError: no ink"]


def test_get_explainer_takes_wrapped_names_like_explain_does():
    from xaicore.errors import XaiError

    wrapped = registry.get_explainer("tsr:saliency")
    assert wrapped.name == "tsr:saliency"
    with pytest.raises(XaiError, match="does not wrap other explainers"):
        registry.get_explainer("saliency:gradcam")
