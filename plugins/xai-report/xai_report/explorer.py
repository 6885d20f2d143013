"""The report's explanation explorer: every saved explanation's arrays embedded once, compactly
(float16 after scaling each sample to its largest magnitude: about 3 significant digits, which the
eye cannot tell from the original), and drawn in the browser by Plotly's JavaScript bundled
inline from the ``plotly`` Python package: zoom, hover values, method / sample switching, all
methods side by side, and each method's importance over time and features. A map the explainer
copies to every feature (``Explanation.time_only``: Grad-CAM, attention) is embedded and drawn as
its one row over time, with no per-feature bars."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from xai_plots.colours import is_signed
from xaicore.plugin import Explanation

from .page import esc

#: The figure folder key of an explanation: its method, plus the explained class kind.
KIND_SUFFIX = {"predicted": "", "true": "-true", "chosen": "-chosen"}


def packed(values: np.ndarray) -> tuple[str, float]:
    """``values`` as base64 of little-endian float16 after dividing by their largest magnitude,
    and that scale (0 for all zeros)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    scaled = values / scale if scale > 0 else np.zeros_like(values)
    return base64.b64encode(scaled.astype("<f2").tobytes()).decode("ascii"), scale


def target_kind(e: Explanation) -> str:
    if np.array_equal(e.targets, e.predictions):
        return "predicted"
    if (e.labels >= 0).all() and np.array_equal(e.targets, e.labels):
        return "true"
    return "chosen"


def view_of(e: Explanation) -> dict[str, Any]:
    """One explanation's entry of the page, its per-sample ``attr`` and ``scale`` to be filled;
    ``signed``: drawn on the diverging scale (``xai_plots.colours``), else on the sequential one."""
    kind = target_kind(e)
    return {"key": e.method + KIND_SUFFIX[kind], "method": e.method, "kind": kind,
            "signed": is_signed(e),
            "samples": [int(s) for s in e.sample_ids], "attr": [], "scale": [],
            "shared": bool(e.time_only and e.attributions.shape[2] > 1),
            "prediction": e.predictions.tolist(), "target": e.targets.tolist(),
            "label": e.labels.tolist(),
            "probability": [float(e.probabilities[i, p]) for i, p in enumerate(e.predictions)]}


def in_page_order(explanations: list[Explanation]) -> list[Explanation]:
    """The explanations of the predicted class first, then by method."""
    return sorted(explanations, key=lambda e: (target_kind(e) != "predicted", e.method))


def explorer_data(explanations: list[Explanation]) -> dict[str, Any]:
    """What the page draws: the series of every explained sample once, and per explanation its
    attributions and predictions; each sample at its own length (no padding)."""
    first = explanations[0]
    series: dict[str, Any] = {}
    views = []
    for e in in_page_order(explanations):
        view = view_of(e)
        for i, sid in enumerate(view["samples"]):
            length = int(e.lengths[i])
            data, scale = packed(e.attributions[i, :length, :1] if view["shared"]
                                 else e.attributions[i, :length])
            view["attr"].append(data)
            view["scale"].append(scale)
            if str(sid) not in series:
                x, x_scale = packed(e.inputs[i, :length])
                series[str(sid)] = {"data": x, "scale": x_scale}
        views.append(view)
    return {"classes": [str(c) for c in first.class_names],
            "features": [str(f) for f in first.feature_names],
            "length": int(first.attributions.shape[1]), "series": series, "views": views}


def pickers(views: list[dict], prefix: str = "", compare: bool = True) -> tuple[str, str]:
    """The method tabs (with "all methods" when ``compare`` and there are several) and the
    sample buttons (misclassified ones marked) of a view's toolbar, as ``data-{prefix}key`` and
    ``data-{prefix}sample`` buttons."""
    keys = [(v["key"], v["method"] + ("" if v["kind"] == "predicted" else f" ({v['kind']} class)"))
            for v in views]
    samples = sorted({s for v in views for s in v["samples"]})
    wrong = {s for v in views for s, p, t in zip(v["samples"], v["prediction"], v["label"])
             if t >= 0 and p != t}
    tabs = "".join(f'<button type="button" data-{prefix}key="{esc(k)}">{esc(label)}</button>'
                   for k, label in keys)
    if compare and len(keys) > 1:
        tabs += f'<button type="button" data-{prefix}key="compare">all methods</button>'
    marked = ' class="wrong" title="misclassified"'
    buttons = "".join(f'<button type="button" data-{prefix}sample="{s}"'
                      f'{marked if s in wrong else ""}>{s}</button>' for s in samples)
    return tabs, buttons


def explorer_section(explanations: list[Explanation]) -> str:
    """The toolbar, the two plot areas and the embedded data."""
    data = explorer_data(explanations)
    tabs, buttons = pickers(data["views"])
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (f'<div class="toolbars"><div class="toolbar"><span class="label">Method</span>{tabs}'
            f'</div><div class="toolbar"><span class="label">Sample</span>'
            f'<button type="button" id="prev" title="previous sample (left arrow)">&larr;</button>'
            f'{buttons}<button type="button" id="next" title="next sample (right arrow)">&rarr;'
            f'</button></div><p id="view-status"></p></div>'
            '<div id="plot" class="plot"></div><div id="colour-legend" class="colour-legend"></div>'
            '<p class="note">Drag to zoom, double-click to reset, hover for values. A signed '
            "method (one with values below 0) is drawn on a diverging scale centred on 0, red for "
            "the explained class and blue against it; an unsigned one (Grad-CAM, attention, "
            "|gradient|) from white at 0 to red; each map up to its own largest |value|. "
            "Misclassified samples have a red outline.</p>"
            '<h3 id="global-title">Over all explained samples</h3><div id="global" class="plot">'
            '</div><p class="note">Each sample\'s |attribution| as shares of its total (summed '
            "over features), averaged over the explained samples; the dotted line is the share "
            "of a map spread evenly over time (1/length), and the axis starts at 0, so a "
            "near-uniform map reads as flat.</p>"
            f'<script type="application/json" id="xai-data">{payload}</script>')


SCRIPT = r"""
(function () {
  var holder = document.getElementById('xai-data');
  if (!holder || !window.Plotly || !window.xaiColours) { return; }
  var D = JSON.parse(holder.textContent);
  var F = D.features.length, T = D.length;
  function unpack(b64, scale) {
    var bin = atob(b64), n = bin.length / 2, out = new Float64Array(n);
    for (var i = 0; i < n; i++) {
      var h = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
      var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      var v = e === 0 ? s * Math.pow(2, -14) * (f / 1024)
            : e === 31 ? (f ? NaN : s * Infinity) : s * Math.pow(2, e - 15) * (1 + f / 1024);
      out[i] = v * scale;
    }
    return out;
  }
  function column(flat, f, w) { w = w || F; var c = []; for (var t = 0; t < flat.length / w; t++) { c.push(flat[t * w + f]); } return c; }
  function rows(flat, w) { w = w || F; var z = []; for (var f = 0; f < w; f++) { z.push(column(flat, f, w)); } return z; }
  function width(v) { return v.shared ? 1 : F; }  // columns embedded per time step
  function rowNames(v) { return v.shared ? ['every feature'] : D.features; }
  var views = {}; D.views.forEach(function (v) { views[v.key] = v; });
  function series(sid) { var s = D.series[sid]; return unpack(s.data, s.scale); }
  var X = window.xaiColours;
  function scaleOf(v, a) {  // each map up to its own largest |value|
    var m = 0;
    a.forEach(function (x) { if (isFinite(x)) { m = Math.max(m, Math.abs(x)); } });
    return {signed: v.signed, bound: Math.max(m, 1e-30)};
  }
  function fmt(x) { return Number(x.toPrecision(3)).toString(); }
  function range(c) { return c.signed ? '\u00b1' + fmt(c.bound) : '0 to ' + fmt(c.bound); }
  function escText(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
  var steps = []; for (var t = 0; t < T; t++) { steps.push(t); }
  function seriesTraces(x) {
    var traces = [];
    for (var f = 0; f < F; f++) {
      traces.push({x: steps.slice(0, x.length / F), y: column(x, f), type: 'scatter', mode: 'lines', name: D.features[f],
                   xaxis: 'x', yaxis: 'y', line: {width: 1.6},
                   hovertemplate: D.features[f] + ' t=%{x}: %{y:.4g}<extra></extra>'});
    }
    return traces;
  }
  function strip(a, axis, v, c, bar) {
    return {z: rows(a, width(v)), x: steps.slice(0, a.length / width(v)), y: rowNames(v), type: 'heatmap', xaxis: 'x', yaxis: axis,
            colorscale: X.plotly(c.signed), zmin: c.signed ? -c.bound : 0, zmax: c.bound,
            showscale: !!bar, colorbar: bar, name: v.method,
            hovertemplate: escText(v.method) + ' %{y} t=%{x}: %{z:.4g}<extra></extra>'};
  }
  function legend(drawn) {  // what the colours mean, for each kind of scale drawn
    var box = document.getElementById('colour-legend'); box.textContent = '';
    if (!drawn.length) { return; }
    var target = 'class ' + D.classes[drawn[0].v.target[drawn[0].i]];
    [true, false].forEach(function (signed) {
      if (!drawn.some(function (d) { return d.c.signed === signed; })) { return; }
      var item = document.createElement('span');
      item.className = signed ? 'legend-signed' : 'legend-positive';
      item.appendChild(document.createTextNode(signed ? '\u2212max' : '0'));
      item.appendChild(X.swatch(signed));
      item.appendChild(document.createTextNode('max \u00b7 ' + X.legend(signed, target)));
      box.appendChild(item);
    });
  }
  function caption(v, i) {
    var p = v.prediction[i], t = v.label[i], text = 'sample ' + v.samples[i] + ': predicted ' +
      D.classes[p] + ' (' + v.probability[i].toFixed(2) + ')';
    if (t >= 0) { text += ', true ' + D.classes[t] + (t === p ? '' : ' (misclassified)'); }
    if (v.target[i] !== p) { text += ', explaining ' + D.classes[v.target[i]]; }
    return text;
  }
  var tabs = Array.prototype.slice.call(document.querySelectorAll('button[data-key]'));
  var buttons = Array.prototype.slice.call(document.querySelectorAll('button[data-sample]'));
  if (!tabs.length || !buttons.length) { return; }
  var state = {key: tabs[0].getAttribute('data-key'), sample: buttons[0].getAttribute('data-sample')};
  var config = {responsive: true, displaylogo: false, scrollZoom: false};
  // the sample view's heights in pixels: the series, then per method a label line and its strip,
  // a row per feature tall enough for its tick label (many features: thinner rows, and Plotly
  // labels as many of them as fit)
  var LABELLED = 24, SERIES = 200, LABEL = 22, GAP = 14, MARGIN = {l: 70, r: 30, t: 24, b: 46};
  var ROW = F === 1 ? 44 : F <= LABELLED ? 18 : Math.max(4, Math.floor(18 * LABELLED / F));
  function drawSample() {
    var x = series(state.sample), traces = seriesTraces(x), status = '';
    var shown = state.key === 'compare' ? D.views.filter(function (v) { return v.kind === 'predicted'; })
                                        : [views[state.key]];
    var drawn = shown.map(function (v) { return {v: v, i: v.samples.indexOf(Number(state.sample))}; })
                     .filter(function (d) { return d.i >= 0; });
    var n = drawn.length, below = 0;
    for (var k = n - 1; k >= 0; k--) {  // each strip's height (one row for a shared map) and bottom, last strip lowest
      var d = drawn[k], w = width(d.v);
      d.height = n === 1 ? Math.max(ROW * w, 80) : Math.max(ROW * w, 18);
      d.bottom = below; below += LABEL + d.height;
    }
    var plotHeight = SERIES + below + (n ? GAP : 0);
    function at(px) { return px / plotHeight; }  // a height from the plot's bottom, as a fraction
    var layout = {height: plotHeight + MARGIN.t + MARGIN.b, margin: MARGIN, hovermode: 'closest',
      showlegend: F > 1 && F <= 8, legend: {x: 1.02, xanchor: 'left', y: 1, yanchor: 'top'},
      xaxis: {title: {text: 'time step'}, anchor: 'y' + (n ? n + 1 : ''), automargin: true},
      yaxis: {domain: [n ? at(below + GAP) : 0, 1], title: {text: 'value'}, automargin: true},
      annotations: []};
    drawn.forEach(function (d, k) {
      var a = unpack(d.v.attr[d.i], d.v.scale[d.i]), c = scaleOf(d.v, a), axis = 'y' + (k + 2);
      var bottom = d.bottom, height = d.height, top = bottom + height, names = rowNames(d.v);
      d.c = c;
      var bar = n === 1 ? {title: {text: 'attribution', side: 'right'}, len: at(height), lenmode: 'fraction',
                           y: at(bottom), yanchor: 'bottom', thickness: 14, nticks: 4} : null;
      traces.push(strip(a, axis, d.v, c, bar));
      layout['yaxis' + (k + 2)] = F === 1 ? {domain: [at(bottom), at(top)], showticklabels: false, ticks: ''}
        : names.length <= LABELLED ? {domain: [at(bottom), at(top)], automargin: true, tickmode: 'array', tickvals: names,
                                      ticktext: names, tickfont: {size: 11}}
        : {domain: [at(bottom), at(top)], automargin: true, tickfont: {size: 11}};
      layout.annotations.push({text: '<b>' + escText(d.v.method) + '</b>  ' + (c.signed ? 'signed ' : 'unsigned ') + range(c),
                               xref: 'paper', yref: 'paper', x: 0, y: at(top) + at(3), xanchor: 'left', yanchor: 'bottom',
                               showarrow: false, font: {size: 12}});
    });
    if (drawn.length) { status = caption(drawn[0].v, drawn[0].i); }
    else { status = 'this method did not explain sample ' + state.sample; }
    if (n > 1) { status += ' \u00b7 each method coloured on its own scale (hover for values)'; }
    Plotly.react('plot', traces, layout, config);
    legend(drawn);
    var label = state.key === 'compare' ? 'all methods' : tabs.filter(function (b) { return b.getAttribute('data-key') === state.key; })[0].textContent;
    document.getElementById('view-status').textContent = 'Method: ' + label + ' \u00b7 ' + status;
  }
  function drawGlobal() {
    var shown = state.key === 'compare' ? D.views.filter(function (v) { return v.kind === 'predicted'; }) : [views[state.key]];
    var traces = [], even = new Float64Array(T), first = shown[0], bars = F > 1 && shown.some(function (v) { return !v.shared; });
    first.samples.forEach(function (sid, i) {  // the share of a map spread evenly over its steps
      var length = atob(first.attr[i]).length / 2 / width(first);
      for (var t = 0; t < length; t++) { even[t] += 1 / length / first.samples.length; }
    });
    shown.forEach(function (v) {
      var time = new Float64Array(T), feat = new Float64Array(F), w = width(v);
      v.samples.forEach(function (sid, i) {
        var a = unpack(v.attr[i], v.scale[i]), total = 0;
        for (var j = 0; j < a.length; j++) { total += Math.abs(a[j]); }
        total = total || 1;
        for (var t = 0; t < a.length / w; t++) { for (var f = 0; f < w; f++) {
          var m = Math.abs(a[t * w + f]) / total / v.samples.length; time[t] += m; feat[f] += m; } }
      });
      traces.push({x: steps, y: Array.from(time), type: 'scatter', mode: 'lines', name: v.method,
                   hovertemplate: escText(v.method) + ' t=%{x}: %{y:.3g}<extra></extra>'});
      if (bars && !v.shared) { traces.push({x: D.features, y: Array.from(feat), type: 'bar', name: v.method + ' (features)',
                                xaxis: 'x2', yaxis: 'y2', hovertemplate: escText(v.method) + ' %{x}: %{y:.3g}<extra></extra>'}); }
    });
    var level = even[0], flat = Array.prototype.every.call(even, function (u) { return u === level; });
    var name = flat ? 'uniform 1/' + Math.round(1 / level) : 'uniform (1/length of each series)';
    traces.push({x: steps, y: Array.from(even), type: 'scatter', mode: 'lines', name: name, showlegend: false,
                 line: {color: '#6b7280', width: 1.2, dash: 'dot'}, hovertemplate: name + ': %{y:.3g}<extra></extra>'});
    var layout = {height: 300, margin: {l: 70, r: 30, t: 20, b: 40}, hovermode: 'closest',
                  xaxis: {title: {text: 'time step'}, domain: bars ? [0, 0.68] : [0, 1], automargin: true},
                  yaxis: {title: {text: 'share of |attribution|'}, rangemode: 'tozero', automargin: true,
                          ticklabelstandoff: 6},
                  annotations: [{text: name, x: T - 1, y: even[T - 1] || level, xref: 'x', yref: 'y',
                                 xanchor: 'right', yanchor: 'bottom', showarrow: false,
                                 font: {size: 11, color: '#4b5563'}, bgcolor: 'rgba(255,255,255,0.8)'}]};
    if (bars) { layout.xaxis2 = {domain: [0.75, 1], anchor: 'y2', automargin: true};
                 layout.yaxis2 = {anchor: 'x2', rangemode: 'tozero', automargin: true, ticklabelstandoff: 6}; }
    Plotly.react('global', traces, layout, config);
  }
  function show() {
    tabs.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-key') === state.key)); });
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-sample') === state.sample)); });
    drawSample(); drawGlobal();
  }
  function step(delta) {
    var ids = buttons.map(function (b) { return b.getAttribute('data-sample'); });
    state.sample = ids[(ids.indexOf(state.sample) + delta + ids.length) % ids.length]; show();
  }
  tabs.forEach(function (b) { b.addEventListener('click', function () { state.key = b.getAttribute('data-key'); show(); }); });
  buttons.forEach(function (b) { b.addEventListener('click', function () { state.sample = b.getAttribute('data-sample'); show(); }); });
  document.getElementById('prev').addEventListener('click', function () { step(-1); });
  document.getElementById('next').addEventListener('click', function () { step(1); });
  document.addEventListener('keydown', function (ev) {
    if (ev.target && ev.target.tagName === 'INPUT') { return; }
    if (ev.key === 'ArrowLeft') { step(-1); } else if (ev.key === 'ArrowRight') { step(1); }
  });
  window.xaiReport = {state: state, show: show, unpack: unpack, data: D};
  show();
})();
"""
