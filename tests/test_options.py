"""One options mechanism: declared once, one validator for Python values and CLI strings."""

import json
import re

import numpy as np
import pytest

from xaicore.errors import XaiError
from xaicore.plugins import registry
from xaicore.plugins.loading import BUILTIN_DISTRIBUTIONS
from xaicore.plugins.options import Option, Series, declared, defaults_of, infer, resolve, validate

SPEC = [Option("n_steps", int, 50, min=1, max=10_000, help="steps"),
        Option("abs", bool, True),
        Option("dropout", float, 0.1, min=0.0, max=1.0),
        Option("rule", str, "a", choices=("a", "b")),
        Option("batch", int, None, min=1)]


def test_defaults_overlaid_and_cli_strings_converted():
    assert validate("m", SPEC, {}) == {"n_steps": 50, "abs": True, "dropout": 0.1, "rule": "a",
                                       "batch": None}
    out = validate("m", SPEC, {"n_steps": "32", "abs": "no", "dropout": 0, "batch": "null"})
    assert out["n_steps"] == 32 and out["abs"] is False and out["dropout"] == 0.0
    assert isinstance(out["dropout"], float) and out["batch"] is None


@pytest.mark.parametrize("values, message", [
    ({"n_step": 3}, "m has no option 'n_step' (did you mean n_steps?)"),
    ({"n_steps": 2.7}, "m: option 'n_steps' must be an integer, not 2.7"),
    ({"n_steps": "abc"}, "m: option 'n_steps' must be an integer, not 'abc'"),
    ({"n_steps": None}, "m: option 'n_steps' must be an integer, not null"),
    ({"n_steps": [1, 2]}, "must be an integer, not [1, 2]"),
    ({"n_steps": True}, "must be an integer, not True"),
    ({"n_steps": 0}, "m: option 'n_steps' must be in [1, 10000], not 0"),
    ({"dropout": 2}, "m: option 'dropout' must be in [0, 1], not 2.0"),
    ({"dropout": float("nan")}, "must be a finite number, not nan"),
    ({"abs": "maybe"}, "m: option 'abs' must be true or false, not 'maybe'"),
    ({"abs": 1}, "must be true or false, not 1"),
    ({"rule": "c"}, "m: unknown rule 'c'; it must be one of a, b"),
])
def test_bad_values_are_one_line_errors(values, message):
    with pytest.raises(XaiError) as info:
        validate("m", SPEC, values)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_options_inferred_from_a_defaults_dict_are_typed():
    spec = infer({"window": 10, "baseline": 0.0, "layer": None})
    assert validate("occ", spec, {"window": "4", "layer": "cnn.3"}) == \
        {"window": 4, "baseline": 0.0, "layer": "cnn.3"}
    with pytest.raises(XaiError, match="'window' must be an integer, not 2.5"):
        validate("occ", spec, {"window": 2.5})


def test_builtin_explainers_declare_ranges_and_refuse_bad_values():
    ig = registry.get_explainer("integrated-gradients")
    n_steps = next(o for o in ig.options if o.name == "n_steps")
    assert (n_steps.type, n_steps.default, n_steps.min, n_steps.max) == (int, "auto", 1, 10_000)
    assert ig.defaults["n_steps"] == "auto" and ig.defaults["baseline"] == "zero"
    with pytest.raises(XaiError, match="integrated-gradients: option 'n_steps' must be an integer"
                                       " or 'auto', not 2.7"):
        ig.resolve_options({"n_steps": 2.7})
    with pytest.raises(XaiError, match="must be an integer or 'auto', not 'fast'"):
        ig.resolve_options({"n_steps": "fast"})
    assert ig.resolve_options({"n_steps": "auto"})["n_steps"] == "auto"
    assert ig.resolve_options({"n_steps": "64"})["n_steps"] == 64
    saliency = registry.get_explainer("saliency")
    assert saliency.resolve_options({"abs": json.loads('"no"')}) == {"abs": False}
    assert "n_steps (int or auto, default 'auto' in [1, 10000]): integration steps" \
        in n_steps.describe()


def test_xai_list_options_prints_declarations():
    from click.testing import CliRunner

    from xaicore.cli import cli

    result = CliRunner().invoke(cli, ["list", "--options", "integrated-gradients"])
    assert result.exit_code == 0, result.output
    assert "  n_steps (int or auto, default 'auto' in [1, 10000]): integration steps along the " \
        "path, or auto" in result.output
    assert "seed (int, default 0 in [0, 4294967295])" in result.output
    result = CliRunner().invoke(cli, ["list", "--options", "gradcamm"])
    assert result.exit_code == 1
    assert "no installed component is called 'gradcamm'. Did you mean gradcam" in result.output


def test_background_is_declared_not_sniffed():
    needing = {name for name in registry.names("explainers")
               if "background" in getattr(registry.get_explainer(name), "requires", ())}
    assert {"integrated-gradients", "deeplift", "gradient-shap", "shap", "window-occlusion"} <= needing
    assert "saliency" not in needing and "gradcam" not in needing


def test_list_options_check_each_item_and_copy_the_default():
    spec = [Option("sizes", list, [8, 5], "kernel sizes", min=1, max=9)]
    assert validate("m", spec, {"sizes": (3, 4)}) == {"sizes": [3, 4]}
    with pytest.raises(XaiError, match=r"option 'sizes' must be in \[1, 9\], not \[3, 0\]"):
        validate("m", spec, {"sizes": [3, 0]})
    with pytest.raises(XaiError, match="must be a list of integers"):
        validate("m", spec, {"sizes": [3, True]})
    validate("m", spec, {})["sizes"].append(1)
    assert spec[0].default == [8, 5]


def test_unknown_names_use_the_callers_noun():
    with pytest.raises(XaiError, match="m has no parameter 'x'; its parameters are: a"):
        validate("m", [Option("a", int, 1)], {"x": 1}, noun="parameter")


COMPONENTS = [(kind, name) for kind in registry.KINDS for name in registry.names(kind)]


def bad_values(option: Option) -> list:
    """Values ``option`` must refuse: of the wrong type, out of its range, not one of its choices."""
    wrong_type = {int: ["abc", 2.5], float: ["abc", float("nan")], bool: ["maybe", 1],
                  str: [3], list: ["abc", [True]], object: [],
                  Series: ["abc", [["a"]], [[[[[0.0]]]]], [[0.0], [0.0, 1.0]], "missing.npy"]}[option.type]
    out = list(wrong_type)
    if option.choices is not None:
        out.append("not-one-of-them")
    if option.min is not None:
        out.append([option.min - 1] if option.type is list else option.min - 1)
    if option.max is not None:
        out.append([option.max + 1] if option.type is list else option.max + 1)
    if not option.accepts_none:
        out.append(None)
    return out


@pytest.mark.parametrize("kind, name", COMPONENTS)
def test_every_component_declares_valid_defaults_and_refuses_bad_values(kind, name):
    component = registry.get(kind, name)
    spec = declared(component)
    owner = f"{registry.SINGULAR[kind]} {name}"
    assert all(isinstance(o, Option) for o in spec), spec
    if registry.get_entry(kind, name).distribution in BUILTIN_DISTRIBUTIONS:
        assert all(o.help for o in spec), [o.name for o in spec if not o.help]
    # the defaults pass the validator, given or not, unchanged
    assert resolve(owner, component, {}) == defaults_of(spec)
    for option in spec:
        assert resolve(owner, component, {option.name: option.default})[option.name] == \
            option.default
        for value in bad_values(option):
            with pytest.raises(XaiError) as info:
                resolve(owner, component, {option.name: value})
            message = str(info.value)
            assert option.name in message and "\n" not in message, (value, message)
    with pytest.raises(XaiError, match=re.escape(f"{owner} has no option 'no_such_option'")):
        resolve(owner, component, {"no_such_option": 1})


def test_a_series_option_takes_a_keyword_an_array_or_a_npy_file(tmp_path):
    option = Option("baseline", Series, "zero", help="reference", keywords=("zero", "mean"))
    assert option.describe() == "baseline (array or zero or mean, default 'zero'): reference"
    assert option.convert("m", " mean ") == "mean"
    series = np.arange(6, dtype=np.int64).reshape(3, 2)
    np.save(tmp_path / "b.npy", series)
    for given in (series, series.tolist(), str(tmp_path / "b.npy")):
        value = option.convert("m", given)
        assert value.dtype == np.float32 and value.shape == (3, 2)
        assert (value == series).all()  # small integers are exact in float32
    (tmp_path / "bad.npy").write_text("not an array")
    with pytest.raises(XaiError, match="m: option 'baseline': .*bad.npy' is not a readable .npy"):
        option.convert("m", str(tmp_path / "bad.npy"))
    with pytest.raises(XaiError, match="m: unknown baseline 'ones'; it must be one of zero, mean, "
                                       "an array"):
        option.convert("m", "ones")


def test_a_renderer_checks_the_options_it_declares_and_passes_its_context_on():
    plots = registry.get_renderer("global-plots")
    assert resolve("renderer global-plots", plots, {"top_k": "5", "run_dir": "RUN"},
                   given_only=True) == {"top_k": 5, "run_dir": "RUN"}
    with pytest.raises(XaiError, match="option 'top_k' must be in"):
        resolve("renderer global-plots", plots, {"top_k": 0}, given_only=True)


def test_a_dataset_loader_checks_its_options_when_called_from_python():
    loader = registry.get_dataset("synthetic-small")
    assert [o.name for o in loader.options][:2] == ["n_train", "n_test"]
    with pytest.raises(XaiError, match="synthetic dataset: option 'n_train' must be in"):
        loader("synthetic-small", n_train=1)


@pytest.mark.parametrize("flag", [["--workers", "4"], ["--address", "auto"]])
def test_the_local_engine_refuses_the_options_of_other_engines(tmp_path, flag):
    from click.testing import CliRunner

    from xaicore.cli import cli

    result = CliRunner().invoke(cli, ["explain", "--run", str(tmp_path), "--engine", "local", *flag])
    assert result.exit_code == 1
    name = flag[0].lstrip("-")
    assert result.output == f"Error: engine local has no option '{name}'; the engines that have " \
                            f"it: ray\n"


def test_xai_list_options_lists_every_component_of_every_kind():
    from click.testing import CliRunner

    from xaicore.cli import cli

    result = CliRunner().invoke(cli, ["list", "--options", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {(r["kind"], r["name"]) for r in rows} == \
        {(registry.SINGULAR[kind], name) for kind, name in COMPONENTS}
    ray = next(r for r in rows if r["name"] == "ray")
    assert [o["name"] for o in ray["options"]] == ["workers", "gpus_per_worker", "address"]
    text = CliRunner().invoke(cli, ["list", "--options"]).output
    assert "engine local:\n  (no options)\n" in text
    assert "metric insertion:\n" in text and "  order (str, default 'signed' one of signed, abs)" in text
