"""The JavaScript of the report's text views (``text_view.py``): plain DOM and canvas, no library."""

TEXT_SCRIPT = r"""
(function () {
  var holder = document.getElementById('xai-text-data');
  if (!holder || !window.xaiColours) { return; }
  var D = JSON.parse(holder.textContent), X = window.xaiColours;
  function half(h) {
    var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    return e === 0 ? s * Math.pow(2, -14) * (f / 1024)
         : e === 31 ? (f ? NaN : s * Infinity) : s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function unpack(b64, scale) {
    var bin = atob(b64), n = bin.length / 2, out = new Float64Array(n);
    for (var i = 0; i < n; i++) { out[i] = half(bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8)) * scale; }
    return out;
  }
  function unpackU16(b64) {
    var bin = atob(b64), n = bin.length / 2, out = new Uint16Array(n);
    for (var i = 0; i < n; i++) { out[i] = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8); }
    return out;
  }
  function fmt(v) { return (v >= 0 ? '+' : '') + Number(v.toPrecision(4)); }
  var views = {}; D.views.forEach(function (v) { views[v.key] = v; });
  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }
  var tabs = all('button[data-text-key]'), buttons = all('button[data-text-sample]'), modes = all('button[data-text-mode]');
  if (!tabs.length || !buttons.length) { return; }
  var state = {key: tabs[0].getAttribute('data-text-key'), sample: buttons[0].getAttribute('data-text-sample'), mode: 'tokens'};

  function shownUnits(t, a, mode) {
    if (mode === 'tokens') {
      return t.tokens.map(function (tok, k) { return {text: tok, value: a[k], special: t.special[t.unit[k]], pieces: []}; });
    }
    var out = t.words.map(function (w, u) { return {text: w, value: 0, special: t.special[u], pieces: []}; });
    t.tokens.forEach(function (tok, k) { var u = out[t.unit[k]]; u.value += a[k]; u.pieces.push(tok); });
    return out;
  }
  function caption(v, i) {
    var p = v.prediction[i], t = v.label[i], text = 'text ' + v.samples[i] + ': predicted ' +
      D.classes[p] + ' (' + v.probability[i].toFixed(2) + ')';
    if (t >= 0) { text += ', true ' + D.classes[t] + (t === p ? '' : ' (misclassified)'); }
    if (v.target[i] !== p) { text += ', explaining ' + D.classes[v.target[i]]; }
    return text;
  }
  function legend(v, i, scale) {  // what the colours mean, with the text's scale
    var box = document.getElementById('text-legend'), item = document.createElement('span');
    box.textContent = '';
    if (i < 0) { return; }
    item.className = v.signed ? 'legend-signed' : 'legend-positive';
    item.appendChild(document.createTextNode(v.signed ? '\u2212' + fmtScale(scale) : '0'));
    item.appendChild(X.swatch(v.signed));
    item.appendChild(document.createTextNode(fmtScale(scale) + ': ' + X.legend(v.signed, 'class ' + D.classes[v.target[i]])));
    box.appendChild(item);
  }
  function fmtScale(x) { return Number(x.toPrecision(3)).toString(); }
  function drawText() {
    var v = views[state.key], i = v.samples.indexOf(Number(state.sample));
    var box = document.getElementById('text-heatmap'), label = tabs.filter(function (b) {
      return b.getAttribute('data-text-key') === state.key; })[0].textContent;
    box.textContent = '';
    var status = 'Method: ' + label + ' \u00b7 by ' + state.mode + ' \u00b7 ';
    if (i < 0) {
      document.getElementById('text-status').textContent = status + 'this method did not explain text ' + state.sample;
      legend(v, i, 0);
      return;
    }
    var shown = shownUnits(D.texts[state.sample], unpack(v.attr[i], v.scale[i]), state.mode), scale = 0;
    shown.forEach(function (u) { if (!u.special && isFinite(u.value)) { scale = Math.max(scale, Math.abs(u.value)); } });
    scale = Math.max(scale, 1e-30);
    var frag = document.createDocumentFragment();
    shown.forEach(function (u) {
      var s = document.createElement('span'), hover = u.text + ': ' + fmt(u.value);
      s.className = 'tok' + (u.special ? ' special' : '');
      s.textContent = u.text;
      if (u.pieces.length > 1) { hover += ' (tokens ' + u.pieces.join(' ') + ')'; }
      if (u.special) { hover += ' (special token)'; } else {
        var rgb = X.rgb(u.value, scale, v.signed);
        s.style.background = X.css(rgb);
        if (X.ink(rgb)) { s.style.color = X.ink(rgb); }
      }
      s.title = hover;
      s.setAttribute('data-value', String(u.value));
      frag.appendChild(s);
    });
    box.appendChild(frag);
    legend(v, i, scale);
    document.getElementById('text-status').textContent = status + caption(v, i);
  }

  var HEAD_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
                     '#bcbd22', '#17becf', '#393b79', '#637939'];
  var LEVELS = 10, MARGIN_ROWS = 8;
  var att = {open: false, layer: 0, heads: null, hover: -1, cache: {}, ms: 0};
  var canvas = document.getElementById('attention-canvas');
  function attentionOf(sid) {
    var a = D.attention[sid];
    if (!a) { return null; }
    if (!att.cache[sid]) {
      att.cache[sid] = {layers: a.layers, heads: a.heads, length: a.length, links: a.links,
                        index: unpackU16(a.index), weight: unpack(a.weight, a.scale)};
    }
    return att.cache[sid];
  }
  function label(tok) { return tok.length > 22 ? tok.slice(0, 21) + '\u2026' : tok; }
  function drawHeads(A) {
    // only the rows in (or near) the scrolled window are drawn, again on scroll: a long text
    // costs no more than a short one
    var T = A.length, K = A.links, H = A.heads, row = Math.max(4, Math.min(16, Math.floor(30000 / T)));
    var W = 640, side = 210, tokens = D.texts[state.sample].tokens, ctx = canvas.getContext('2d');
    var box = canvas.parentNode, height = T * row + 8, seen = Math.max(box.clientHeight, 640);
    if (canvas.width !== W || canvas.height !== height) { canvas.width = W; canvas.height = height; }
    else { ctx.clearRect(0, 0, W, height); }
    var from = Math.max(0, Math.floor((box.scrollTop - 4) / row) - MARGIN_ROWS);
    var to = Math.min(T, Math.ceil((box.scrollTop + seen) / row) + MARGIN_ROWS);
    function y(t) { return 4 + (t + 0.5) * row; }
    ctx.font = Math.min(12, row - 2) + 'px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    for (var t = from; t < to; t++) {
      ctx.fillStyle = t === att.hover ? '#000' : '#333';
      ctx.textAlign = 'right'; ctx.fillText(label(tokens[t]), side - 6, y(t));
      ctx.textAlign = 'left'; ctx.fillText(label(tokens[t]), W - side + 6, y(t));
    }
    ctx.lineWidth = att.hover >= 0 ? 2 : 1;
    var first = att.hover >= 0 ? att.hover : from, last = att.hover >= 0 ? att.hover + 1 : to;
    att.heads.forEach(function (h) {
      // one path per head and opacity level: a few strokes instead of one per link
      var base = (att.layer * H + h) * T * K, paths = [];
      for (var level = 0; level < LEVELS; level++) { paths.push(new Path2D()); }
      for (var q = first; q < last; q++) {
        for (var j = 0; j < K; j++) {
          var w = A.weight[base + q * K + j];
          if (!(w > 0.01)) { continue; }
          var path = paths[Math.min(LEVELS - 1, Math.floor(w * LEVELS))];
          path.moveTo(side, y(q)); path.lineTo(W - side, y(A.index[base + q * K + j]));
        }
      }
      ctx.strokeStyle = HEAD_COLORS[h % HEAD_COLORS.length];
      paths.forEach(function (path, level) {
        ctx.globalAlpha = (level + 1) / LEVELS * (att.hover >= 0 ? 1 : 0.6); ctx.stroke(path);
      });
    });
    ctx.globalAlpha = 1;
    canvas.setAttribute('data-row', String(row));
    canvas.setAttribute('data-side', String(side));
    canvas.setAttribute('data-rows', from + ':' + to);
  }
  function drawModel(A) {
    var box = document.getElementById('attention-model'), T = A.length, K = A.links, H = A.heads, S = 64;
    var nb = Math.min(S, T);
    box.textContent = '';
    box.style.gridTemplateColumns = '28px repeat(' + H + ', ' + S + 'px)';
    for (var l = 0; l < A.layers; l++) {
      var name = document.createElement('span'); name.textContent = 'L' + l; box.appendChild(name);
      for (var h = 0; h < H; h++) {
        var m = new Float64Array(nb * nb), base = (l * H + h) * T * K, top = 0;
        for (var q = 0; q < T; q++) {
          var qb = Math.floor(q * nb / T);
          for (var j = 0; j < K; j++) {
            var c = qb * nb + Math.floor(A.index[base + q * K + j] * nb / T);
            m[c] += A.weight[base + q * K + j]; if (m[c] > top) { top = m[c]; }
          }
        }
        var cv = document.createElement('canvas'); cv.width = S; cv.height = S;
        cv.title = 'layer ' + l + ', head ' + h; cv.setAttribute('data-layer', l); cv.setAttribute('data-head', h);
        if (l === att.layer && att.heads.indexOf(h) >= 0) { cv.className = 'on'; }
        var ctx = cv.getContext('2d'), img = ctx.createImageData(S, S);
        for (var py = 0; py < S; py++) { for (var px = 0; px < S; px++) {
          var v = top > 0 ? m[Math.floor(py * nb / S) * nb + Math.floor(px * nb / S)] / top : 0, o = 4 * (py * S + px);
          var rgb = X.rgb(v, 1, false);
          img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
        } }
        ctx.putImageData(img, 0, 0);
        box.appendChild(cv);
      }
    }
  }
  function drawControls(A) {
    var select = document.getElementById('attention-layer'), heads = document.getElementById('attention-heads');
    if (select.options.length !== A.layers) {
      select.textContent = '';
      for (var l = 0; l < A.layers; l++) { var o = document.createElement('option'); o.value = l; o.textContent = String(l); select.appendChild(o); }
    }
    select.value = String(att.layer);
    heads.textContent = '';
    for (var h = 0; h < A.heads; h++) {
      var b = document.createElement('button'); b.type = 'button'; b.textContent = String(h);
      b.setAttribute('data-head', h); b.setAttribute('aria-pressed', String(att.heads.indexOf(h) >= 0));
      b.style.borderColor = HEAD_COLORS[h % HEAD_COLORS.length];
      heads.appendChild(b);
    }
  }
  function drawAttention() {
    if (!att.open) { return; }
    var started = performance.now(), A = attentionOf(state.sample), status = document.getElementById('attention-status');
    if (!A) {
      canvas.width = 0; canvas.height = 0; document.getElementById('attention-model').textContent = '';
      status.textContent = 'no attention is embedded for text ' + state.sample;
      return;
    }
    if (att.layer >= A.layers) { att.layer = 0; }
    if (!att.heads || att.heads.some(function (h) { return h >= A.heads; })) {
      att.heads = []; for (var h = 0; h < A.heads; h++) { att.heads.push(h); }
    }
    drawControls(A); drawHeads(A); drawModel(A);
    status.textContent = 'text ' + state.sample + ': ' + A.length + ' tokens, ' + A.layers + ' layers x ' + A.heads + ' heads';
    att.ms = performance.now() - started;
  }
  var opener = document.getElementById('attention-open');
  if (opener) {
    opener.addEventListener('click', function () {
      att.open = !att.open;
      document.getElementById('attention-view').hidden = !att.open;
      opener.textContent = att.open ? 'Hide the attention' : 'Show the attention of this text';
      drawAttention();
    });
    document.getElementById('attention-layer').addEventListener('change', function () { att.layer = Number(this.value); drawAttention(); });
    document.getElementById('attention-heads').addEventListener('click', function (ev) {
      var h = ev.target.getAttribute && ev.target.getAttribute('data-head');
      if (h === null || h === undefined) { return; }
      h = Number(h); var k = att.heads.indexOf(h);
      if (k >= 0) { att.heads.splice(k, 1); } else { att.heads.push(h); }
      drawAttention();
    });
    document.getElementById('attention-model').addEventListener('click', function (ev) {
      if (ev.target.tagName !== 'CANVAS') { return; }
      att.layer = Number(ev.target.getAttribute('data-layer')); att.heads = [Number(ev.target.getAttribute('data-head'))];
      drawAttention();
    });
    canvas.addEventListener('mousemove', function (ev) {
      var A = attentionOf(state.sample), box = canvas.getBoundingClientRect();
      if (!A) { return; }
      var row = Number(canvas.getAttribute('data-row')), x = ev.clientX - box.left, t = Math.floor((ev.clientY - box.top - 4) / row);
      var hover = x < Number(canvas.getAttribute('data-side')) && t >= 0 && t < A.length ? t : -1;
      if (hover !== att.hover) { att.hover = hover; drawHeads(A); }
    });
    var pending = false;
    canvas.parentNode.addEventListener('scroll', function () {
      if (pending) { return; }
      pending = true;
      requestAnimationFrame(function () { pending = false; var A = attentionOf(state.sample); if (A && att.open) { drawHeads(A); } });
    });
    canvas.addEventListener('mouseleave', function () { var A = attentionOf(state.sample); if (A && att.hover >= 0) { att.hover = -1; drawHeads(A); } });
  }

  function show() {
    tabs.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-text-key') === state.key)); });
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-text-sample') === state.sample)); });
    modes.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-text-mode') === state.mode)); });
    all('[data-words-key]').forEach(function (d) { d.hidden = d.getAttribute('data-words-key') !== state.key; });
    att.hover = -1;
    drawText(); drawAttention();
  }
  function step(delta) {
    var ids = buttons.map(function (b) { return b.getAttribute('data-text-sample'); });
    state.sample = ids[(ids.indexOf(state.sample) + delta + ids.length) % ids.length]; show();
  }
  tabs.forEach(function (b) { b.addEventListener('click', function () { state.key = b.getAttribute('data-text-key'); show(); }); });
  buttons.forEach(function (b) { b.addEventListener('click', function () { state.sample = b.getAttribute('data-text-sample'); show(); }); });
  modes.forEach(function (b) { b.addEventListener('click', function () { state.mode = b.getAttribute('data-text-mode'); show(); }); });
  document.getElementById('text-prev').addEventListener('click', function () { step(-1); });
  document.getElementById('text-next').addEventListener('click', function () { step(1); });
  document.addEventListener('keydown', function (ev) {
    if (ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT')) { return; }
    if (ev.key === 'ArrowLeft') { step(-1); } else if (ev.key === 'ArrowRight') { step(1); }
  });
  window.xaiText = {state: state, show: show, unpack: unpack, attention: att, data: D};
  show();
})();
"""
