"""The one colour convention of every view of an attribution map: the report's series, texts and
images, the notebook's figures and the files of ``xai figures``.

A signed map (some value below 0) is drawn on one diverging scale centred on 0: red for the
explained class, blue against it, white at 0. An unsigned map (Grad-CAM, attention, saliency's
|gradient|: no value below 0) is drawn on one sequential scale from white at 0 to red at its
largest value. No explainer declares whether its values have a sign, so the values decide, for a
whole explanation at once (``is_signed``): every sample of a method is drawn on one kind of scale.

A value becomes one of a fixed number of levels of its scale (``quantised``) and each level one
colour (``colour_table``, matplotlib's colour maps sampled once). The figures draw those colours;
the report's JavaScript gets the same tables and the same rule (``colour_script``), and Plotly a
stepped colour scale of the same levels (``plotly_colorscale``), so a value has one colour
everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

#: The colour maps, each cut short of its darkest end (``SPANS``), which would not show over the
#: black and the white parts of an image and would hide a text written over it.
DIVERGING = "RdBu_r"
SEQUENTIAL = "Reds"
SPANS = {DIVERGING: (0.08, 0.92), SEQUENTIAL: (0.0, 0.85)}
#: Levels of a signed map: -127..127 around 0 (stored 0..254, 127 is exactly 0).
SIGNED_LEVELS = 127
#: Levels of an unsigned map: 0..255 from 0 to the bound of its scale.
POSITIVE_LEVELS = 255
#: A colour whose luma (ITU-R BT.601, 0..255) is below this gets white text over it.
WHITE_INK_BELOW = 150
#: What the colours mean, with the explained class for ``{target}``.
LEGENDS = {True: "red: for {target}, blue: against it, white: 0",
           False: "unsigned: white at 0 to red at the largest value, for {target}"}


def is_signed(explanation: Any) -> bool:
    """Whether a method's maps are signed: any attribution below 0 in any sample."""
    return bool((np.nan_to_num(np.asarray(explanation.attributions)) < 0).any())


@dataclass(frozen=True)
class Scale:
    """A map's colour scale: diverging over ``[-bound, bound]`` or sequential over ``[0, bound]``."""

    signed: bool
    bound: float

    @property
    def low(self) -> float:
        return -self.bound if self.signed else 0.0

    def colormap(self):
        """The matplotlib colour map of the scale's levels (``colour_table``), for colour bars."""
        from matplotlib.colors import ListedColormap

        return ListedColormap(colour_table(self.signed) / 255.0)

    def norm(self):
        """The matplotlib normalisation of the scale, for colour bars."""
        from matplotlib.colors import Normalize

        return Normalize(self.low, self.bound)


def scale_for(values: np.ndarray, signed: bool) -> Scale:
    """The scale of one map of a series or a text: its largest finite |value| (1e-30 for none)."""
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return Scale(signed, max(float(finite.max()) if finite.size else 0.0, 1e-30))


def quantised(values: np.ndarray, scale: Scale) -> np.ndarray:
    """``values`` as uint8 levels of ``scale``: signed 0..254 (127 is 0), unsigned 0..255;
    beyond the bound the end level, NaN as 0."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64)) / scale.bound
    if scale.signed:
        return (np.rint(np.clip(v, -1, 1) * SIGNED_LEVELS) + SIGNED_LEVELS).astype(np.uint8)
    return np.rint(np.clip(v, 0, 1) * POSITIVE_LEVELS).astype(np.uint8)


@lru_cache(maxsize=2)
def _table(signed: bool) -> np.ndarray:
    from matplotlib import colormaps

    n = 2 * SIGNED_LEVELS + 1 if signed else POSITIVE_LEVELS + 1
    name = DIVERGING if signed else SEQUENTIAL
    rgba = colormaps[name](np.linspace(*SPANS[name], n))
    table = np.rint(rgba[:, :3] * 255).astype(np.uint8)
    table.setflags(write=False)
    return table


def colour_table(signed: bool) -> np.ndarray:
    """uint8 RGB of every level ``[levels, 3]`` (255 signed, 256 unsigned): the scale's
    matplotlib colour map over its span."""
    return _table(bool(signed))


def colours(values: np.ndarray, scale: Scale) -> np.ndarray:
    """uint8 RGB ``[..., 3]`` of ``values`` on ``scale``."""
    return colour_table(scale.signed)[quantised(values, scale)]


def css(rgb: Any) -> str:
    """``rgb`` (three 0..255 levels) as a CSS colour."""
    r, g, b = (int(c) for c in rgb)
    return f"rgb({r},{g},{b})"


def ink(rgb: Any) -> str:
    """The colour of text written over ``rgb``: white over a dark colour, else the page's."""
    r, g, b = (float(c) for c in rgb)
    return "#fff" if 0.299 * r + 0.587 * g + 0.114 * b < WHITE_INK_BELOW else ""


def legend(signed: bool, target: str) -> str:
    """What a map's colours mean, for explained class ``target``."""
    return LEGENDS[bool(signed)].format(target=target)


def plotly_colorscale(signed: bool) -> list[list[Any]]:
    """A stepped Plotly colour scale over ``[zmin, zmax] = [scale.low, scale.bound]`` giving each
    value the colour of its level (``quantised``): every level's colour from one edge of its
    interval to the other."""
    table = colour_table(signed)
    n = SIGNED_LEVELS if signed else POSITIVE_LEVELS
    out: list[list[Any]] = []
    for k, (r, g, b) in enumerate(table.tolist()):
        u = k - n if signed else k  # the level's value, in units of bound / n
        low, high = ((u - 0.5) / n, (u + 0.5) / n)
        if signed:
            low, high = (low + 1) / 2, (high + 1) / 2
        colour = f"rgb({r},{g},{b})"
        out += [[max(low, 0.0), colour], [min(high, 1.0), colour]]
    return out


def colour_data() -> dict[str, Any]:
    """What the report's pages need to colour values as ``quantised`` and ``colour_table`` do."""
    return {"signed": colour_table(True).tolist(), "positive": colour_table(False).tolist(),
            "levels": {"signed": SIGNED_LEVELS, "positive": POSITIVE_LEVELS},
            "plotly": {"signed": plotly_colorscale(True), "positive": plotly_colorscale(False)},
            "white_below": WHITE_INK_BELOW, "legends": {"signed": LEGENDS[True],
                                                        "positive": LEGENDS[False]}}


SCRIPT = r"""
(function () {
  var C = window.XAI_COLOURS;
  function rint(x) {  // numpy's rint: halves to the even neighbour
    var r = Math.round(x);
    if (r - x === 0.5 && r % 2 !== 0) { r -= 1; }
    return r;
  }
  function level(x, bound, signed) {
    var v = x !== x ? 0 : x / bound;
    if (signed) { return rint(Math.min(Math.max(v, -1), 1) * C.levels.signed) + C.levels.signed; }
    return rint(Math.min(Math.max(v, 0), 1) * C.levels.positive);
  }
  function table(signed) { return signed ? C.signed : C.positive; }
  function rgb(x, bound, signed) { return table(signed)[level(x, bound, signed)]; }
  function css(c) { return 'rgb(' + c.join(',') + ')'; }
  function ink(c) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < C.white_below ? '#fff' : ''; }
  function legend(signed, target) {
    return C.legends[signed ? 'signed' : 'positive'].replace('{target}', target);
  }
  function swatch(signed) {  // the scale's levels, low to high, as a canvas one pixel high
    var t = table(signed), c = document.createElement('canvas'); c.width = t.length; c.height = 1;
    var g = c.getContext('2d'), out = g.createImageData(t.length, 1);
    t.forEach(function (v, k) {
      out.data.set([v[0], v[1], v[2], 255], 4 * k);
    });
    g.putImageData(out, 0, 0); c.setAttribute('data-scale', signed ? 'diverging' : 'sequential');
    return c;
  }
  function plotly(signed) { return C.plotly[signed ? 'signed' : 'positive']; }
  window.xaiColours = {level: level, rgb: rgb, css: css, ink: ink, legend: legend, swatch: swatch,
                       table: table, plotly: plotly, levels: C.levels};
})();
"""


def colour_script() -> str:
    """The report's shared colour functions (``window.xaiColours``) with the tables inlined."""
    data = json.dumps(colour_data(), separators=(",", ":")).replace("<", "\\u003c")
    return f"window.XAI_COLOURS = {data};{SCRIPT}"
