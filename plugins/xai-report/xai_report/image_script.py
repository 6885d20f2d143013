"""The JavaScript of the report's image views (``image_view.py``): plain DOM and canvas, no library."""

IMAGE_SCRIPT = r"""
(function () {
  var holder = document.getElementById('xai-image-data');
  if (!holder || !window.xaiColours) { return; }
  var D = JSON.parse(holder.textContent), H = D.height, W = D.width, K = D.factor;
  var X = window.xaiColours, w = Math.ceil(W / K), L = X.levels;
  var views = {}; D.views.forEach(function (v) { views[v.key] = v; });
  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }
  var tabs = all('button[data-image-key]'), buttons = all('button[data-image-sample]');
  if (!tabs.length || !buttons.length) { return; }
  var slider = document.getElementById('image-opacity');
  var state = {key: tabs[0].getAttribute('data-image-key'), sample: buttons[0].getAttribute('data-image-sample'),
               opacity: Number(slider.value) / 100, drawn: '', current: null};
  var decoded = {};
  function levels(uri) {  // the RGBA bytes of an embedded PNG
    if (!decoded[uri]) {
      decoded[uri] = new Promise(function (resolve, reject) {
        var im = new Image();
        im.onload = function () {
          var c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
          var g = c.getContext('2d'); g.drawImage(im, 0, 0);
          resolve(g.getImageData(0, 0, c.width, c.height).data);
        };
        im.onerror = function () { reject(new Error('an embedded image could not be decoded')); };
        im.src = uri;
      });
    }
    return decoded[uri];
  }
  function table(isSigned) { return X.table(isSigned); }
  function weight(q, isSigned) { return isSigned ? Math.abs(q - L.signed) / L.signed : q / L.positive; }
  function grey(px, k) {
    return D.channels === 3 ? 0.299 * px[4 * k] + 0.587 * px[4 * k + 1] + 0.114 * px[4 * k + 2] : px[4 * k];
  }
  function level(map, k) { return map[4 * (Math.floor(Math.floor(k / W) / K) * w + Math.floor((k % W) / K))]; }
  function paint(canvas, colour) {
    canvas.width = W; canvas.height = H;
    var g = canvas.getContext('2d'), out = g.createImageData(W, H), d = out.data;
    for (var k = 0; k < W * H; k++) { var c = colour(k); d[4 * k] = c[0]; d[4 * k + 1] = c[1]; d[4 * k + 2] = c[2]; d[4 * k + 3] = 255; }
    g.putImageData(out, 0, 0);
  }
  function drawImage(canvas, px) { paint(canvas, function (k) { return [px[4 * k], px[4 * k + 1], px[4 * k + 2]]; }); }
  function drawHeat(canvas, map, isSigned) { var t = table(isSigned); paint(canvas, function (k) { return t[level(map, k)]; }); }
  function drawOverlay(canvas, px, map, isSigned) {
    var t = table(isSigned);
    paint(canvas, function (k) {
      var q = level(map, k), a = state.opacity * weight(q, isSigned), g = grey(px, k) * (1 - a), c = t[q];
      return [Math.round(g + c[0] * a), Math.round(g + c[1] * a), Math.round(g + c[2] * a)];
    });
  }
  function fmt(x) { return Number(x.toPrecision(3)).toString(); }
  function range(v, i) { return v.signed ? fmt(-v.scale[i]) + ' to ' + fmt(v.scale[i]) : '0 to ' + fmt(v.scale[i]); }
  function legend(shown) {
    var box = document.getElementById('image-legend'); box.textContent = '';
    [true, false].forEach(function (isSigned) {
      var those = shown.filter(function (s) { return s.v.signed === isSigned; });
      if (!those.length) { return; }
      var one = shown.length === 1 ? those[0] : null, item = document.createElement('span');
      var high = one ? fmt(one.v.scale[one.i]) : 'max', low = isSigned ? (one ? fmt(-one.v.scale[one.i]) : '\u2212max') : '0';
      var target = 'class ' + D.classes[those[0].v.target[those[0].i]];
      item.className = isSigned ? 'legend-signed' : 'legend-positive';
      item.appendChild(document.createTextNode((isSigned ? 'diverging, centred on 0: ' : 'sequential: ') + low));
      item.appendChild(X.swatch(isSigned));
      item.appendChild(document.createTextNode(high + ' (' + X.legend(isSigned, target) + ')'));
      box.appendChild(item);
    });
  }
  function caption(v, i) {
    var p = v.prediction[i], t = v.label[i], text = 'image ' + v.samples[i] + ': predicted ' +
      D.classes[p] + ' (' + v.probability[i].toFixed(2) + ')';
    if (t >= 0) { text += ', true ' + D.classes[t] + (t === p ? '' : ' (misclassified)'); }
    if (v.target[i] !== p) { text += ', explaining ' + D.classes[v.target[i]]; }
    return text;
  }
  function figure(canvas, text) {
    var f = document.createElement('figure'), c = document.createElement('figcaption');
    c.textContent = text; f.appendChild(canvas); f.appendChild(c); return f;
  }
  function draw() {
    var key = state.key, sample = state.sample, opacity = state.opacity, sid = Number(sample);
    state.current = null;
    var shown = (key === 'compare' ? D.views.filter(function (v) { return v.kind === 'predicted'; }) : [views[key]])
      .map(function (v) { return {v: v, i: v.samples.indexOf(sid)}; }).filter(function (s) { return s.i >= 0; });
    var label = tabs.filter(function (b) { return b.getAttribute('data-image-key') === key; })[0].textContent;
    var status = 'Method: ' + label + ' \u00b7 ';
    var single = document.getElementById('image-view'), compare = document.getElementById('image-compare');
    single.hidden = key === 'compare'; compare.hidden = key !== 'compare';
    if (!shown.length) {
      document.getElementById('image-status').textContent = status + 'this method did not explain image ' + sample;
      all('#image-view canvas').forEach(function (c) { c.width = 0; c.height = 0; });
      compare.textContent = ''; legend([]);
      state.drawn = key + '|' + sample + '|' + opacity;
      return Promise.resolve();
    }
    var wrong = shown[0].v.label[shown[0].i] >= 0 && shown[0].v.label[shown[0].i] !== shown[0].v.prediction[shown[0].i];
    single.classList.toggle('wrong', wrong); compare.classList.toggle('wrong', wrong);
    status += caption(shown[0].v, shown[0].i) + ' \u00b7 opacity ' + Math.round(100 * opacity) + '%';
    if (shown.length > 1) { status += ' \u00b7 each method on its own scale'; }
    var maps = shown.map(function (s) { return levels(s.v.attr[s.i]); });
    return Promise.all([levels(D.images[sample])].concat(maps)).then(function (got) {
      if (key !== state.key || sample !== state.sample || opacity !== state.opacity) { return; }
      var px = got[0];
      if (key === 'compare') {
        compare.textContent = '';
        var input = document.createElement('canvas'); drawImage(input, px);
        input.setAttribute('data-method', '');
        compare.appendChild(figure(input, 'image'));
        shown.forEach(function (s, k) {
          var c = document.createElement('canvas'); drawOverlay(c, px, got[k + 1], s.v.signed);
          c.setAttribute('data-method', s.v.key); c.title = s.v.method + ': ' + range(s.v, s.i);
          compare.appendChild(figure(c, s.v.method + ' (' + (s.v.signed ? 'diverging' : 'sequential') + ', ' + range(s.v, s.i) + ')'));
        });
      } else {
        var s = shown[0];
        state.current = {v: s.v, i: s.i, map: got[1], px: px};
        drawImage(document.getElementById('image-input'), px);
        drawHeat(document.getElementById('image-heat'), got[1], s.v.signed);
        drawOverlay(document.getElementById('image-overlay'), px, got[1], s.v.signed);
        document.getElementById('image-overlay-caption').textContent = 'attribution over the image (grey), ' + range(s.v, s.i);
      }
      legend(shown);
      document.getElementById('image-status').textContent = status;
      state.drawn = key + '|' + sample + '|' + opacity;
    });
  }
  function value(q, v, i) {  // the attribution a level stands for
    return v.signed ? (q - L.signed) / L.signed * v.scale[i] : q / L.positive * v.scale[i];
  }
  function hover(ev) {
    var c = state.current, box = ev.target.getBoundingClientRect(), out = document.getElementById('image-hover');
    if (!c || !box.width) { return; }
    var x = Math.floor((ev.clientX - box.left) / box.width * W), y = Math.floor((ev.clientY - box.top) / box.height * H);
    if (x < 0 || y < 0 || x >= W || y >= H) { out.textContent = ''; return; }
    var q = level(c.map, y * W + x), g = D.range[0] + c.px[4 * (y * W + x)] / 255 * (D.range[1] - D.range[0]);
    out.textContent = 'row ' + y + ', column ' + x + ': attribution ' + Number(value(q, c.v, c.i).toPrecision(4)) +
      (D.channels === 1 ? ', pixel ' + Number(g.toPrecision(4)) : '') + (K > 1 ? ' (mean of its ' + K + 'x' + K + ' block)' : '');
  }
  ['image-heat', 'image-overlay'].forEach(function (id) {
    document.getElementById(id).addEventListener('mousemove', hover);
    document.getElementById(id).addEventListener('mouseleave', function () { document.getElementById('image-hover').textContent = ''; });
  });
  function show() {
    tabs.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-image-key') === state.key)); });
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-image-sample') === state.sample)); });
    all('[data-class-key]').forEach(function (d) {
      var key = state.key === 'compare' ? D.views[0].key : state.key;
      d.hidden = d.getAttribute('data-class-key') !== key;
    });
    document.getElementById('image-opacity-value').textContent = Math.round(100 * state.opacity) + '%';
    return draw().catch(function (err) { document.getElementById('image-status').textContent = String(err); throw err; });
  }
  function step(delta) {
    var ids = buttons.map(function (b) { return b.getAttribute('data-image-sample'); });
    state.sample = ids[(ids.indexOf(state.sample) + delta + ids.length) % ids.length]; show();
  }
  tabs.forEach(function (b) { b.addEventListener('click', function () { state.key = b.getAttribute('data-image-key'); show(); }); });
  buttons.forEach(function (b) { b.addEventListener('click', function () { state.sample = b.getAttribute('data-image-sample'); show(); }); });
  slider.addEventListener('input', function () { state.opacity = Number(slider.value) / 100; show(); });
  document.getElementById('image-prev').addEventListener('click', function () { step(-1); });
  document.getElementById('image-next').addEventListener('click', function () { step(1); });
  document.addEventListener('keydown', function (ev) {
    if (ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT')) { return; }
    if (ev.key === 'ArrowLeft') { step(-1); } else if (ev.key === 'ArrowRight') { step(1); }
  });
  window.xaiImage = {state: state, show: show, data: D};
  show();
})();
"""
