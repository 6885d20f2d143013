"""Real plugin packages, pip-installed: the documented example plugin and a deliberately broken one.

They are installed with pip into a temporary directory put on PYTHONPATH, so entry-point discovery is
exactly what a user's ``pip install`` gives, without changing the project's environment.
"""

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tolerances import assert_close

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example-plugin"
BROKEN = ROOT / "tests" / "plugins" / "xai-broken-plugin"
XAI = [sys.executable, "-m", "xaicore.cli"]


def installed(tmp_path_factory, name: str, *packages: Path) -> Path:
    """A new folder ``name`` holding ``packages`` installed by pip (``--target``)."""
    target = tmp_path_factory.mktemp(name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), *map(str, packages)],
                   check=True, capture_output=True, text=True)
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return installed(tmp_path_factory, "site", EXAMPLE, BROKEN)


def run(args, site=None, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XAI_")}
    if site is not None:
        environ["PYTHONPATH"] = str(site)
    environ.update(env)
    return subprocess.run(args, capture_output=True, text=True, env=environ, cwd=ROOT)


def listing(site=None, **env) -> dict:
    result = run(XAI + ["list", "--json"], site, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_example_plugin_is_listed_with_its_distribution(site):
    data = listing(site)
    occlusion = next(e for e in data["explainers"] if e["name"] == "occlusion")
    assert (occlusion["distribution"], occlusion["version"], occlusion["status"]) == \
        ("xai-example-plugin", "0.2.0", "ok")
    assert any(e["name"] == "csv" and e["distribution"] == "xai-example-plugin"
               for e in data["renderers"])
    assert "occlusion" not in {e["name"] for e in listing()["explainers"]}  # only when installed


def test_broken_plugin_is_shown_failed_and_the_rest_works(site):
    data = listing(site)
    status = {(p["plugin"], p["status"]): p for p in data["plugins"]}
    broken = status[("broken", "failed")]
    assert broken["distribution"] == "xai-broken-plugin"
    assert "xai_dependency_that_is_not_installed" in broken["error"]
    assert ("broken", "ok") not in status and ("clashing", "ok") in status
    hook_failure = [p for p in data["plugins"] if p["plugin"] == "clashing" and p["status"] == "failed"]
    assert "dataset index unreachable" in hook_failure[0]["error"]
    saliency = [e for e in data["explainers"] if e["name"] == "saliency"]
    assert [(e["distribution"], e["status"]) for e in saliency] == \
        [("xai-captum", "ok"), ("xai-broken-plugin", "failed")]
    assert all(e["status"] == "ok" for e in data["models"])
    assert "GunPoint" in {e["name"] for e in data["datasets"]}

    table = run(XAI + ["list"], site)
    assert table.returncode == 0
    assert "FAILED PLUGINS" in table.stdout and "xai_dependency_that_is_not_installed" in table.stdout


def test_broken_lazy_entry_fails_when_used_with_a_clear_error(site):
    code = textwrap.dedent("""
        from xaicore.plugins import registry
        from xaicore.errors import PluginError
        try:
            registry.get_explainer("broken-lazy")
        except PluginError as exc:
            print(exc)
        print([e.status for e in registry.entries("explainers") if e.name == "broken-lazy"])
    """)
    result = run([sys.executable, "-c", code], site)
    assert result.returncode == 0, result.stderr
    assert "failed to import xai_broken.missing_module" in result.stdout
    assert "['failed']" in result.stdout


def test_strict_mode_turns_a_broken_plugin_into_an_error(site):
    result = run(XAI + ["list"], site, XAI_STRICT_PLUGINS="1")
    assert result.returncode == 1
    assert "Error: plugin 'broken' (xai-broken-plugin) failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_disabled_plugins_are_not_loaded(site):
    data = listing(site, XAI_DISABLE_PLUGINS="broken, xai-broken-plugin")
    assert not [p for p in data["plugins"] if p["status"] == "failed"]
    assert "occlusion" in {e["name"] for e in data["explainers"]}


def test_example_plugin_explains_from_python(site, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np, torch
        import xaicore
        from xaicore.plugins import registry
        sys.path.insert(0, r"{Path(__file__).parent}")
        from tolerances import assert_close
        torch.manual_seed(0)
        linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 2, 3))
        model = xaicore.wrap_model(linear, class_names=["a", "b", "c"], feature_names=["x", "y"])
        X = np.random.default_rng(0).normal(size=(5, 12, 2)).astype("float32")
        e = xaicore.explain(model, X, method="occlusion", target=1)
        # occluding one cell of a linear model removes exactly weight * input
        w = linear[1].weight.detach().numpy()[1].reshape(12, 2)
        assert_close(e.attributions, X * w)
        paths = registry.get_renderer("csv").render([e], r"{tmp_path}")
        print(len(open(paths[0]).readlines()))
    """)
    result = run([sys.executable, "-c", code], site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(5 * 12 * 2 + 1)


def test_cli_help_and_list_import_no_torch():
    result = run([sys.executable, "-X", "importtime", "-c", "import xaicore.cli"])
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "xaicore.cli" in imported
    assert not {"torch", "numpy", "pandas", "shap", "captum", "matplotlib"} & imported
    code = ("import sys\nfrom xaicore.cli import cli\ncli(['list'], standalone_mode=False)\n"
            "heavy = {'torch', 'numpy', 'captum', 'shap', 'matplotlib', 'aeon'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr


def test_example_plugin_explains_from_the_cli(site, gunpoint_run, tmp_path):
    out = tmp_path / "occ"
    result = run(XAI + ["explain", "--run", str(gunpoint_run), "--method", "occlusion",
                        "--option", "occlusion.window=10", "--samples", "0:3", "--out", str(out),
                        "--no-figures"], site)
    assert result.returncode == 0, result.stderr
    import torch

    from xaicore.explaining.explanation import Explanation
    from xaicore.models.checkpoints import load_run

    e = Explanation.load(out / "occlusion.npz")
    assert e.attributions.shape == (3, 150, 1) and e.options == {"window": 10, "baseline": 0.0}
    # the window 20..29 of sample 0 carries the logit drop of zeroing it, spread over 10 steps
    model = load_run(gunpoint_run, device="cpu")
    x = torch.from_numpy(e.inputs[:1])
    occluded = x.clone()
    occluded[:, 20:30] = 0.0
    with torch.no_grad():
        t = int(e.targets[0])
        logits = model.module(x)[0, t], model.module(occluded)[0, t]
        drop = float(logits[0] - logits[1])
    # a difference of logits: float32 error of their scale
    assert_close(e.attributions[0, 20:30, 0].sum(), drop, scale=max(abs(float(v)) for v in logits))
    # with figures, every renderer of stage "explanations" runs: the example csv one too
    drawn = tmp_path / "drawn"
    result = run(XAI + ["explain", "--run", str(gunpoint_run), "--method", "occlusion",
                        "--samples", "0:2", "--out", str(drawn), "--figures"], site)
    assert result.returncode == 0, result.stderr
    assert "csv: 1 files in" in result.stderr and "warning" not in result.stderr
    table = (drawn / "figures" / "occlusion.csv").read_text().splitlines()
    assert len(table) == 1 + 2 * 150


def test_a_renderer_that_asks_for_the_report_gets_a_section_in_it(site, gunpoint_run, tmp_path):
    """The example's importance renderer sets report = True: its SVG is listed in the figures
    manifest and drawn inline in report.html; the csv renderer (no report) and the built-in
    figures are not listed."""
    import base64
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(gunpoint_run, run_dir)
    result = run(XAI + ["explain", "--run", str(run_dir), "--method", "occlusion",
                        "--samples", "0:2", "--figures"], site)
    assert result.returncode == 0, result.stderr
    figures = run_dir / "explanations" / "figures"
    manifest = json.loads((figures / "figures.json").read_text())
    assert manifest == {"importance": {
        "caption": "Mean absolute attribution over time, one SVG line per explanation",
        "files": ["occlusion_importance.svg"]}}
    result = run(XAI + ["report", "--run", str(run_dir)], site)
    assert result.returncode == 0, result.stderr
    html = (run_dir / "report.html").read_text()
    svg = base64.b64encode((figures / "occlusion_importance.svg").read_bytes()).decode("ascii")
    assert f'data:image/svg+xml;base64,{svg}"' in html
    assert '<section id="figures"' in html and "<h3>importance</h3>" in html
    assert "<h3>csv</h3>" not in html


HIJACK = ROOT / "tests" / "plugins" / "xai-hijack-plugin"


@pytest.fixture(scope="module")
def hijack_site(tmp_path_factory) -> Path:
    return installed(tmp_path_factory, "hijack-site", HIJACK)


def test_builtin_keeps_its_name_against_a_plugin_that_sorts_first(hijack_site):
    data = listing(hijack_site)
    gradcam = [(e["distribution"], e["status"]) for e in data["explainers"] if e["name"] == "gradcam"]
    assert gradcam == [("xai-gradcam", "ok"), ("xai-hijack-plugin", "failed")]
    newcomer = next(e for e in data["explainers"]
                    if e["name"] == "gradcam" and e["distribution"] == "xai-hijack-plugin")
    assert "already registered by xai-gradcam" in newcomer["error"]
    assert "XAI_ALLOW_REPLACE=xai-hijack-plugin" in newcomer["error"]
    fcn = [(e["distribution"], e["status"]) for e in data["models"] if e["name"] == "fcn"]
    assert fcn == [("xai-models", "ok"), ("xai-hijack-plugin", "failed")]
    assert ("xai-hijack-plugin", "ok") in {(e["distribution"], e["status"]) for e in data["explainers"]
                                           if e["name"] == "hijack-only"}
    code = "from xaicore.plugins import registry; print(type(registry.get_explainer('gradcam')).__module__)"
    result = run([sys.executable, "-c", code], hijack_site)
    assert result.stdout.strip().startswith("xai_gradcam"), result.stderr

    table = " ".join(run(XAI + ["list"], hijack_site).stdout.split())
    assert ("FAILED gradcam (xai-hijack-plugin): explainer name 'gradcam' is already registered "
            "by xai-gradcam") in table


def test_strict_mode_blames_the_newcomer(hijack_site):
    result = run(XAI + ["list"], hijack_site, XAI_STRICT_PLUGINS="1",
                 XAI_DISABLE_PLUGINS="aab-misspelled")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("Error: plugin 'aaa' (xai-hijack-plugin) failed: "
                                     "register_commands: command 'train' belongs to xai itself; "
                                     "it was not replaced")
    code = ("from xaicore.plugins import registry\ntry:\n    registry.names('models')\n"
            "except Exception as exc:\n    print(exc)\n")
    result = run([sys.executable, "-c", code], hijack_site, XAI_STRICT_PLUGINS="1",
                 XAI_DISABLE_PLUGINS="aab-misspelled")
    assert result.stdout.strip() == ("plugin 'aaa' (xai-hijack-plugin): model name 'fcn' is "
                                     "already registered by xai-models")
    result = run(XAI + ["list"], hijack_site, XAI_STRICT_PLUGINS="1")
    assert "plugin 'aab-misspelled' (xai-hijack-plugin) failed: unknown hook" in result.stderr


def test_replacing_a_builtin_needs_replaces_and_the_users_consent(hijack_site):
    data = listing(hijack_site, XAI_ALLOW_REPLACE="xai-hijack-plugin")
    gradcam = {e["distribution"]: e for e in data["explainers"] if e["name"] == "gradcam"}
    assert gradcam["xai-hijack-plugin"]["status"] == "ok"
    assert gradcam["xai-gradcam"]["status"] == "failed"
    assert "replaced by xai-hijack-plugin" in gradcam["xai-gradcam"]["error"]
    # fcn was registered without replaces=True: consent alone does not hand it over
    fcn = {e["distribution"]: e["status"] for e in data["models"] if e["name"] == "fcn"}
    assert fcn == {"xai-models": "ok", "xai-hijack-plugin": "failed"}


def test_misspelled_hook_is_a_failed_plugin(hijack_site):
    data = listing(hijack_site)
    failed = {p["plugin"]: p["error"] for p in data["plugins"] if p["status"] == "failed"}
    assert "unknown hook 'register_explainer'" in failed["aab-misspelled"]
    assert "did you mean 'register_explainers'" in failed["aab-misspelled"]
    assert "never-registered" not in {e["name"] for e in data["explainers"]}


def test_list_check_imports_every_lazy_target(site):
    result = run(XAI + ["list", "--check"], site)
    assert result.returncode == 1
    assert "check failed: explainer 'broken-lazy' (xai-broken-plugin)" in result.stderr
    assert "xai_broken.missing_module" in result.stderr
    assert "saliency" not in result.stderr and "gradcam" not in result.stderr  # built-ins import


def test_plugin_commands_show_in_help_without_importing_torch():
    code = ("import sys\nfrom xaicore.cli import cli\n"
            "cli(['--help'], standalone_mode=False)\n"
            "heavy = {'torch', 'numpy', 'pandas', 'captum', 'shap', 'matplotlib'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            "print(sys.modules['xaicore.cli'].cli.commands['evaluate'].callback.__module__)\n"
            "print(sys.modules['xaicore.cli'].cli.commands['report'].callback.__module__)")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert "evaluate  Write RUN/evaluation.csv" in result.stdout
    assert "report    Write RUN/report.html" in result.stdout
    assert result.stdout.splitlines()[-2:] == ["xai_eval.commands", "xai_report.commands"]


def test_core_names_no_plugin_package():
    for path in (ROOT / "xaicore").rglob("*.py"):
        text = path.read_text()
        assert "import xai_" not in text and "from xai_" not in text, path


def test_example_plugin_options_are_declared_and_checked(site, gunpoint_run, tmp_path):
    result = run(XAI + ["list", "--options", "occlusion"], site)
    assert result.returncode == 0, result.stderr
    assert "window (int, default 1 in [1, 100000]): time steps occluded together" in result.stdout
    result = run(XAI + ["explain", "--run", str(gunpoint_run), "--method", "occlusion",
                        "--option", "occlusion.window=2.7", "--samples", "0:2",
                        "--out", str(tmp_path / "o"), "--no-figures"], site)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "occlusion: option 'window' must be an integer, not 2.7" in result.stderr


def core_imports(path: Path) -> list[str]:
    """The xaicore modules a source file imports (``from xaicore.x import ...``, ``import xaicore.x``)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] if node.module != "xaicore" else [
                f"xaicore.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [m for m in modules if m == "xaicore" or m.startswith("xaicore.")]
    return found


def test_plugins_import_only_the_two_public_apis(tmp_path):
    sources = sorted([*(ROOT / "plugins").rglob("*.py"), *EXAMPLE.rglob("*.py")])
    assert len(sources) > 20
    public = {"xaicore.plugin", "xaicore.application"}
    offending = {f"{path.relative_to(ROOT)}: {module}" for path in sources
                 for module in core_imports(path) if module not in public}
    assert not offending, sorted(offending)
    used = {module for path in sources for module in core_imports(path)}
    assert used == public  # the built-in plugins use both tiers
    probe = tmp_path / "probe.py"  # the check sees every form of core import
    probe.write_text("import xaicore.models.loaded\nfrom xaicore import files\n"
                     "def f():\n    from xaicore.errors import XaiError\n")
    assert core_imports(probe) == ["xaicore.models.loaded", "xaicore.files", "xaicore.errors"]


@pytest.mark.parametrize("module", ["xaicore.plugin", "xaicore.application"])
def test_each_api_is_lazy_and_complete(module):
    code = (f"import sys, {module} as p; heavy = {{'torch', 'numpy', 'pandas'}} & set(sys.modules);"
            " [getattr(p, n) for n in p.__all__]; print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    api = importlib.import_module(module)
    with pytest.raises(AttributeError, match="no attribute 'registry'"):
        api.registry  # noqa: B018 - the attribute access is what is tested


def test_each_name_lives_in_one_tier():
    import xaicore.application as application
    import xaicore.plugin as component

    assert len(component.__all__) > 20 and len(application.__all__) > 20
    assert not set(component.__all__) & set(application.__all__)


FAULTY = ROOT / "tests" / "plugins" / "xai-faulty-plugin"


@pytest.fixture(scope="module")
def faulty_site(tmp_path_factory) -> Path:
    return installed(tmp_path_factory, "faulty-site", FAULTY)


def test_plugin_code_that_raises_is_one_line_naming_the_plugin(faulty_site, gunpoint_run,
                                                              tmp_path):
    """Each kind of plugin code that raises (a model's constructor and forward, a model that
    returns a tuple, an explainer and its constructor, an engine, a dataset loader, a command)
    gives one line naming the plugin, its distribution and where it failed; --debug shows the
    traceback; nothing is left half-written."""
    blame = "plugin faulty (distribution xai-faulty-plugin) failed in"
    cases = [
        (["train", "--dataset", "GunPoint", "--model", "faulty-init", "--out", tmp_path / "a",
          "--epochs", "1", "--quiet"], f"{blame} faulty-init.__init__: KeyError: 'hidden'"),
        (["train", "--dataset", "GunPoint", "--model", "faulty-forward", "--out", tmp_path / "b",
          "--epochs", "1", "--quiet"], f"{blame} faulty-forward.forward: ValueError: faulty forward"),
        (["train", "--dataset", "GunPoint", "--model", "tuple-output", "--out", tmp_path / "c",
          "--epochs", "1", "--quiet"], "plugin faulty (distribution xai-faulty-plugin): model "
         "'tuple-output' must return logits [batch, classes] = [2, 2] from forward, not a tuple"),
        (["explain", "--run", gunpoint_run, "--method", "faulty-explainer", "--samples", "0:2",
          "--out", tmp_path / "d"], f"{blame} faulty-explainer.explain: ValueError: faulty "
                                    "attribute"),
        (["explain", "--run", gunpoint_run, "--samples", "all", "--engine", "faulty-engine",
          "--method", "saliency", "--out", tmp_path / "e"],
         f"{blame} engine faulty-engine.run: RuntimeError: faulty engine"),
        (["train", "--dataset", "FaultyData", "--model", "fcn", "--out", tmp_path / "f",
          "--epochs", "1"], f"{blame} the loader of dataset 'FaultyData': OSError: faulty data "
                            "source"),
        (["faulty"], f"{blame} command faulty: RuntimeError: the faulty command broke"),
        (["explain", "--run", gunpoint_run, "--method", "faulty-init-explainer", "--samples",
          "0:2", "--out", tmp_path / "g"], f"{blame} faulty-init-explainer.__init__: "
                                           "RuntimeError: faulty explainer constructor"),
        (["list", "--options", "faulty-init-explainer"], f"{blame} faulty-init-explainer.__init__: "
                                                         "RuntimeError: faulty explainer constructor"),
    ]
    for args, message in cases:
        result = run(XAI + [str(a) for a in args], faulty_site)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.strip() == f"Error: {message}", (args, result.stderr)
    for name in "abcf":
        assert not (tmp_path / name).exists()  # training wrote nothing
    assert not list((tmp_path / "e").glob("*.zarr"))  # the engine wrote no store
    result = run(XAI + ["--debug", "faulty"], faulty_site)
    assert "Traceback" in result.stderr and "the faulty command broke" in result.stderr
    for args in (["evaluate", "--help"], ["report", "--help"]):  # click's own exits pass through
        result = run(XAI + args, faulty_site)
        assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr


def test_a_failing_model_is_blamed_not_the_explainer_that_called_it():
    import torch

    import xaicore
    from xaicore.errors import PluginCodeError

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 2, 3)

        def forward(self, x):
            if x.shape[0] > 1:
                raise ValueError("no batches above one")
            return self.conv(x.transpose(1, 2)).mean(2)

    model = xaicore.wrap_model(Broken(), class_names=["a", "b"], n_features=1, name="broken")
    with pytest.raises(PluginCodeError, match=r"^model 'broken' failed in broken.forward: "
                                              r"ValueError: no batches above one$"):
        xaicore.explain(model, np.zeros((3, 20, 1), np.float32), method="saliency")
    import copy

    twin = copy.deepcopy(model.network)  # a copy calls its own weights, still guarded
    torch.nn.init.zeros_(twin.conv.weight)
    torch.nn.init.zeros_(twin.conv.bias)
    x = torch.ones(1, 20, 1)
    with torch.no_grad():
        assert float(twin(x).abs().sum()) == 0 and float(model.network(x).abs().sum()) > 0
    with pytest.raises(PluginCodeError):
        twin(torch.ones(2, 20, 1))


def test_a_plugin_cannot_take_a_core_command(hijack_site):
    """The hijack plugin adds a command named ``train``: xai's own stays, the attempt shows as
    a failure of that plugin in ``xai list``, its own other command works, and under
    XAI_STRICT_PLUGINS=1 the attempt is an error, never a silent success."""
    result = run(XAI + ["train", "--help"], hijack_site)
    assert result.returncode == 0 and "Train a model and write a run directory" in result.stdout
    result = run(XAI + ["hijack-hello"], hijack_site)
    assert result.returncode == 0 and "hello from the hijack plugin" in result.stdout
    failed = [p for p in listing(hijack_site)["plugins"]
              if p["distribution"] == "xai-hijack-plugin" and p["status"] == "failed"]
    assert any("command 'train' belongs to xai itself; it was not replaced" in p["error"]
               for p in failed), failed
    text = " ".join(run(XAI + ["list"], hijack_site).stdout.split())
    assert "command 'train' belongs to xai itself" in text
    strict = run(XAI + ["train", "--help"], hijack_site, XAI_STRICT_PLUGINS="1",
                 XAI_DISABLE_PLUGINS="aab-misspelled")
    assert strict.returncode == 1 and "hijacked" not in strict.stdout
    assert "command 'train' belongs to xai itself" in strict.stderr
    assert "Traceback" not in strict.stderr
    allowed = run(XAI + ["train"], hijack_site, XAI_ALLOW_REPLACE="xai-hijack-plugin")
    assert allowed.returncode == 0 and allowed.stdout.strip() == "hijacked", allowed.stderr
    plugins = json.loads(run(XAI + ["plugins", "--json"], hijack_site,
                             XAI_ALLOW_REPLACE="xai-hijack-plugin").stdout)
    hijack = next(p for p in plugins if p["distribution"] == "xai-hijack-plugin")
    assert "train" in hijack["commands"]


SLOW = ROOT / "tests" / "plugins" / "xai-slow-plugin"


@pytest.fixture(scope="module")
def slow_site(tmp_path_factory) -> Path:
    return installed(tmp_path_factory, "slow-site", SLOW)


def test_a_hook_over_its_time_budget_is_named_and_the_command_goes_on(slow_site):
    """The slow plugin's register_models sleeps 0.5 s: over a 0.2 s budget it is named with its
    time on stderr, and the command still runs; within the default budget nothing is said."""
    warning = re.compile(r"^warning: plugin slow \(distribution xai-slow-plugin\): "
                         r"register_models took (\d+\.\d) s, over the 0\.2 s budget "
                         r"\(XAI_HOOK_BUDGET_S\)$", re.M)
    result = run(XAI + ["list", "--json"], slow_site, XAI_HOOK_BUDGET_S="0.2")
    assert result.returncode == 0, result.stderr
    found = warning.findall(result.stderr)
    assert len(found) == 1 and float(found[0]) >= 0.5, result.stderr
    assert "slow-net" in {e["name"] for e in json.loads(result.stdout)["models"]}
    code = "from xaicore.plugins import registry; print(registry.names('models'))"
    result = run([sys.executable, "-c", code], slow_site, XAI_HOOK_BUDGET_S="0.2")
    assert result.returncode == 0 and "'slow-net'" in result.stdout, result.stderr
    assert len(warning.findall(result.stderr)) == 1, result.stderr
    quiet = run(XAI + ["list", "--json"], slow_site)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
    bad = run(XAI + ["list"], slow_site, XAI_HOOK_BUDGET_S="soon")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "Error: XAI_HOOK_BUDGET_S must be a positive number of seconds, not 'soon'")


def test_evaluate_reports_a_failing_explainer_and_scores_the_others(faulty_site, gunpoint_run,
                                                                    tmp_path):
    """The faulty plugin's explainer raises in attribute: xai evaluate (in two worker processes)
    names that plugin in one warning line, scores saliency and the random baseline, records the
    failure for the report and exits 0; with no other method to score it is an error."""
    import shutil

    from xai_report.report import evaluation_section

    run_dir = tmp_path / "run"
    shutil.copytree(gunpoint_run, run_dir)
    blame = ("plugin faulty (distribution xai-faulty-plugin) failed in faulty-explainer.explain: "
             "ValueError: faulty attribute")
    args = XAI + ["evaluate", "--run", str(run_dir), "--method", "saliency", "--method",
                  "faulty-explainer", "--metric", "deletion", "--samples", "6", "--bootstrap",
                  "100", "--workers", "2"]
    result = run(args, faulty_site)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "faulty" in line]
    assert lines == [f"warning: {blame}; method faulty-explainer is not scored"], result.stderr
    assert "xai-eval" not in result.stderr and "Traceback" not in result.stderr
    table = (run_dir / "evaluation.csv").read_text().splitlines()
    assert sorted(row.split(",")[1] for row in table[1:]) == ["random", "saliency"]
    settings = json.loads((run_dir / "evaluation" / "settings.json").read_text())
    assert settings["failed_methods"] == {"faulty-explainer": blame}
    assert f"faulty-explainer was not scored: {blame}" in evaluation_section(run_dir)

    alone = tmp_path / "alone"
    shutil.copytree(gunpoint_run, alone)
    result = run(XAI + ["evaluate", "--run", str(alone), "--method", "faulty-explainer",
                        "--metric", "deletion", "--samples", "6", "--workers", "1"], faulty_site)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: no method could be scored: {blame}"
    assert not (alone / "evaluation.csv").exists()


def test_list_text_shows_every_failed_row_below_a_table_it_does_not_widen(hijack_site):
    """The hijack plugin's GunPoint dataset is refused and sorts after the working datasets: its
    row shows even where the datasets are folded, its status cell stays short, and the reason is
    printed below the table, wrapped to the width."""
    result = run(XAI + ["list"], hijack_site, COLUMNS="100")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("\nDATASETS\n")[1].split("\n\n")[0].splitlines()
    header, rule, *rows = section
    assert any(r.startswith("... ") and r.endswith("more (xai list --json)") for r in rows)
    failed = [r for r in rows if r.startswith("GunPoint ") and "xai-hijack-plugin" in r]
    assert len(failed) == 1 and failed[0].split()[:4] == ["GunPoint", "xai-hijack-plugin",
                                                          "0.0.1", "FAILED,"]
    status_width = len(rule.split()[3])
    assert status_width == len("FAILED, see below")
    assert "already registered" not in "\n".join([header, rule, *failed])
    notes = [line for line in section if line.startswith("  FAILED ")]
    assert notes == ["  FAILED GunPoint (xai-hijack-plugin): dataset name 'GunPoint' is already "
                     "registered by xai-aeon"]
    below = result.stdout.split("\nFAILED PLUGINS\n")[1].splitlines()
    assert below and all(len(line) <= 100 for line in below), below
    assert "command 'train' belongs to xai itself" in " ".join(" ".join(below).split())


def plugins_json(site, **env) -> dict:
    result = run(XAI + ["plugins", "--json"], site, **env)
    assert result.returncode == 0, result.stderr
    return {d["distribution"]: d for d in json.loads(result.stdout)}


def test_xai_plugins_lists_every_distribution_with_its_status_hooks_and_names(site, hijack_site):
    found = plugins_json(site)
    assert {"xaicore", "xai-eval", "xai-captum", "xai-example-plugin",
            "xai-broken-plugin"} <= set(found)
    example = found["xai-example-plugin"]
    assert (example["version"], example["status"], example["errors"]) == ("0.2.0", "ok", [])
    assert example["registered"] == {"explainers": ["occlusion"], "renderers": ["csv", "importance"]}
    assert found["xai-eval"]["commands"] == ["evaluate"]
    assert "register_commands" in found["xai-eval"]["hooks"]
    assert found["xaicore"]["registered"] == {"engines": ["local"]}
    broken = found["xai-broken-plugin"]
    assert (broken["version"], broken["status"]) == ("6.6.6", "failed")
    assert broken["entry_points"] == ["broken", "clashing"]
    assert broken["hooks"] == ["register_datasets", "register_explainers"]
    assert broken["registered"] == {"explainers": ["broken-lazy"]}
    assert [e.split(":")[0] for e in broken["errors"]] == ["broken", "clashing", "explainer 'saliency'"]
    assert "xai_dependency_that_is_not_installed" in broken["errors"][0]
    assert "dataset index unreachable" in broken["errors"][1]
    assert "already registered by xai-captum" in broken["errors"][2]

    off = plugins_json(site, XAI_DISABLE_PLUGINS="xai-broken-plugin")["xai-broken-plugin"]
    assert (off["status"], off["disabled"], off["errors"]) == ("disabled", ["broken", "clashing"], [])

    hijack = plugins_json(hijack_site)["xai-hijack-plugin"]
    assert hijack["status"] == "failed" and hijack["commands"] == ["hijack-hello"]
    assert any("command 'train' belongs to xai itself" in e for e in hijack["errors"])

    text = run(XAI + ["plugins"], site)
    assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
    lines = text.stdout.splitlines()
    assert "xai-broken-plugin 6.6.6  FAILED" in lines and "xai-example-plugin 0.2.0  ok" in lines
    flat = " ".join(text.stdout.split())
    assert "failed: broken: ModuleNotFoundError: No module named " \
           "'xai_dependency_that_is_not_installed'" in flat
    assert "explainers: occlusion renderers: csv, importance" in flat
