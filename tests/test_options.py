"""One options mechanism: declared once, one validator for Python values and CLI strings."""

import json

import pytest

from xaicore.plugins import registry
from xaicore.errors import XaiError
from xaicore.plugins.options import Option, infer, validate

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
    n_steps = next(o for o in ig.option_spec() if o.name == "n_steps")
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
    assert {"integrated-gradients", "deeplift", "gradient-shap", "shap"} <= needing
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


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "cam", "attention", "shap", "synthetic-small", "fcn",
                                  "deletion", "insertion", "randomisation", "aup", "infidelity"])
def test_built_in_components_declare_their_options_with_help(name):
    spec = [o for _, options in registry.options_of(name) for o in options]
    assert all(isinstance(o, Option) and o.help for o in spec), spec
    assert all(o.min is not None or o.choices or o.type in (bool, str, object)
               for o in spec if o.name not in ("additivity_tolerance",)), spec
