"""The report's views of text explanations: each text coloured by token or word (drawn in the
browser from the embedded tokens and float16 attributions, as ``explorer.py`` embeds series), the
words that carry each class over the explained texts, and the attention of a model (head view and
model view, from each query's strongest links)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from xai_plots.text_units import class_words, groups, tokens_of, word_text
from xaicore.plugin import Explanation

from .explorer import KIND_SUFFIX, in_page_order, packed, pickers, target_kind, view_of
from .page import esc

#: Keys each query keeps in the attention view (its strongest), per layer and head.
TOP_LINKS = 8
#: Texts whose attention is embedded (the first explained ones): each costs layers x heads x
#: tokens x TOP_LINKS x 4 bytes before base64.
MAX_ATTENTION_TEXTS = 8
#: Words listed per class in the dataset view.
TOP_WORDS = 15

CSS = """
.tok { padding:1px 3px; margin:1px; border-radius:3px; display:inline-block; line-height:1.35; }
.tok.special { color:#9aa1ad; background:#f0f1f4; font-size:85%; }
#text-heatmap { font-size:15px; margin:10px 0; }
.words-grid { display:flex; flex-wrap:wrap; gap:18px; }
.att-controls { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin:8px 0; }
.att-head { border:1px solid var(--line); max-height:640px; overflow:auto; }
.att-model { display:grid; gap:4px; overflow:auto; max-height:640px; }
.att-model canvas { border:1px solid var(--line); cursor:pointer; }
.att-model canvas.on { outline:2px solid var(--accent); }
.att-model span { font-size:11px; color:var(--muted); align-self:center; text-align:right; }
"""


def text_data(explanations: list[Explanation]) -> dict[str, Any]:
    """What the page draws: each explained text once (tokens, the word each token is shown in,
    the words' text) and per explanation its attributions and predictions, each text at its own
    length; the attention of the first ``MAX_ATTENTION_TEXTS`` texts when an explanation holds it."""
    texts: dict[str, Any] = {}
    views = []
    for e in in_page_order(explanations):
        view = view_of(e)
        for i, sid in enumerate(view["samples"]):
            tokens, values, word_ids = tokens_of(e, i)
            data, scale = packed(values)
            view["attr"].append(data)
            view["scale"].append(scale)
            if str(sid) not in texts:
                texts[str(sid)] = text_entry(tokens, word_ids)
        views.append(view)
    return {"classes": [str(c) for c in explanations[0].class_names], "texts": texts,
            "views": views, "attention": attention_data(explanations)}


def text_entry(tokens: list[str], word_ids: np.ndarray) -> dict[str, Any]:
    """A text's tokens, the index of the word (or special token) each is shown in by words, and
    the shown words' text and whether each is special."""
    unit_of = [0] * len(tokens)
    words, special = [], []
    for u, group in enumerate(groups(word_ids)):
        for t in group:
            unit_of[t] = u
        is_special = bool(word_ids[group[0]] < 0)
        words.append(tokens[group[0]] if is_special else word_text([tokens[t] for t in group]))
        special.append(is_special)
    return {"tokens": tokens, "unit": unit_of, "words": words, "special": special}


def layered_attention(explanation: Explanation) -> np.ndarray | None:
    """``[sample, layer, head, query, key]``: ``extras["attention"]``, or the attention
    explainer's ``attention_layer0``, ``attention_layer1``, ... stacked when they have one shape."""
    given = explanation.extras.get("attention")
    if given is not None and np.asarray(given).ndim == 5:
        return np.asarray(given)
    layers = [explanation.extras.get(f"attention_layer{i}")
              for i in range(int(explanation.extras.get("n_layers", 0) or 0))]
    if not layers or any(not isinstance(a, np.ndarray) or a.ndim != 4 for a in layers) \
            or len({a.shape for a in layers}) != 1:
        return None
    return np.stack(layers, axis=1)


def attention_holder(explanations: list[Explanation]) -> Explanation | None:
    """The first explanation with attention per layer and head (``layered_attention``)."""
    return next((e for e in explanations if layered_attention(e) is not None), None)


def attention_data(explanations: list[Explanation]) -> dict[str, Any]:
    """Per text id: each query's ``TOP_LINKS`` strongest keys (uint16) and weights (float16 of the
    weights over their largest), ``[layer, head, query, link]``, from ``attention_holder``."""
    holder = attention_holder(explanations)
    if holder is None:
        return {}
    out = {}
    attention = layered_attention(holder)
    assert attention is not None
    for i in range(min(holder.n_samples, MAX_ATTENTION_TEXTS)):
        length = int(holder.lengths[i])
        maps = np.nan_to_num(np.asarray(attention[i, :, :, :length, :length], dtype=np.float32))
        index, weight = top_links(maps, TOP_LINKS)
        data, scale = packed(weight)
        layers, heads = maps.shape[:2]
        out[str(int(holder.sample_ids[i]))] = {
            "method": holder.method, "layers": layers, "heads": heads, "length": length,
            "links": index.shape[-1], "weight": data, "scale": scale,
            "index": base64.b64encode(index.astype("<u2").tobytes()).decode("ascii")}
    return out


def top_links(maps: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest keys of every query of ``maps`` ``[..., query, key]`` (all when there
    are fewer), strongest first, and their weights."""
    k = min(k, maps.shape[-1])
    index = np.argpartition(-maps, k - 1, axis=-1)[..., :k]
    weight = np.take_along_axis(maps, index, axis=-1)
    order = np.argsort(-weight, axis=-1, kind="stable")
    return np.take_along_axis(index, order, axis=-1), np.take_along_axis(weight, order, axis=-1)


def text_section(explanations: list[Explanation]) -> str:
    """Method, sample and token/word pickers, the coloured text, and the embedded data."""
    data = text_data(explanations)
    tabs, buttons = pickers(data["views"], "text-", compare=False)
    modes = "".join(f'<button type="button" data-text-mode="{m}">{m}</button>'
                    for m in ("tokens", "words"))
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (f"<style>{CSS}</style>"
            f'<div class="toolbars"><div class="toolbar"><span class="label">Method</span>{tabs}</div>'
            f'<div class="toolbar"><span class="label">Text</span>'
            f'<button type="button" id="text-prev" title="previous text (left arrow)">&larr;</button>'
            f'{buttons}<button type="button" id="text-next" title="next text (right arrow)">&rarr;'
            f'</button></div><div class="toolbar"><span class="label">Show</span>{modes}</div>'
            '<p id="text-status"></p></div><div id="text-heatmap"></div>'
            '<div id="text-legend" class="colour-legend"></div>'
            '<p class="note">A signed method (one with values below 0): red for evidence for the '
            "explained class, blue against it; an unsigned one (attention, |gradient|): white at 0 "
            "to red. The strongest token (or word) of each text in full colour; hover for values. "
            "Special tokens are grey. By words, a word's attribution is the sum of its tokens'. "
            "Misclassified texts have a red outline.</p>"
            + (attention_section() if data["attention"] else "")
            + f'<script type="application/json" id="xai-text-data">{payload}</script>')


def words_section(explanations: list[Explanation]) -> str:
    """Per explanation (shown with the method picked above), each class's words by summed
    attribution over the texts explained for it, with their counts."""
    blocks = []
    for e in in_page_order(explanations):
        tables = []
        for c, words in class_words(e, TOP_WORDS).items():
            rows = "".join(f'<tr><td>{esc(w.word)}</td><td class="num">{w.total:.4g}</td>'
                           f'<td class="num">{w.count}</td></tr>' for w in words)
            texts = int((e.targets == c).sum())
            tables.append(f"<div><h4>{esc(e.class_names[c])} ({texts} texts)</h4>"
                          '<div class="table-wrap"><table><thead><tr><th>word</th>'
                          "<th>summed attribution</th><th>count</th></tr></thead>"
                          f"<tbody>{rows}</tbody></table></div></div>")
        key = e.method + KIND_SUFFIX[target_kind(e)]
        blocks.append(f'<div data-words-key="{esc(key)}"><div class="words-grid">{"".join(tables)}'
                      "</div></div>")
    return ('<p class="note">For each explained class, the words with the largest attribution '
            "summed over every occurrence in the texts explained for it (the method picked "
            "above), and how often they occur there.</p>" + "".join(blocks))


def attention_section() -> str:
    """The head view (lines from each token to the keys it attends to most) and the model view
    (every layer and head as a small query x key map), drawn on demand."""
    return ('<h3 id="attention">Attention</h3><p class="note">The attention of the text shown above: '
            f"its {TOP_LINKS} strongest links per token, for each layer and head. Hover a token on "
            "the left for its links only; click a map of the model view to show that layer and "
            f"head. The attention of the first {MAX_ATTENTION_TEXTS} texts is embedded.</p>"
            '<button type="button" id="attention-open">Show the attention of this text</button>'
            '<div id="attention-view" hidden><div class="att-controls"><label>Layer '
            '<select id="attention-layer"></select></label><span class="label">Heads</span>'
            '<span id="attention-heads"></span><span id="attention-status" class="note"></span>'
            '</div><div class="grid"><div class="att-head"><canvas id="attention-canvas">'
            '</canvas></div><div><h4>Model view</h4><div id="attention-model" class="att-model">'
            "</div></div></div></div>")
