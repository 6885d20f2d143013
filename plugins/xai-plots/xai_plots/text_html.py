"""Texts coloured by their attribution as self-contained HTML fragments (inline CSS, escaped text),
in the colours of ``colours.py`` on a scale up to the text's largest |value|: a signed method's
red for evidence for the explained class, blue against, an unsigned one's white to red; the value
on hover; special tokens grey."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

from xaicore.plugin import Explanation, XaiError

from .colours import Scale, colours, css, ink, is_signed, legend
from .compare_labels import model_names
from .text_units import MODES, Unit, scale_of, units

SPAN = "padding:1px 3px;margin:1px;border-radius:3px;display:inline-block;line-height:1.35"
SPECIAL = "color:#9aa1ad;background:#f0f1f4;font-size:85%"
BOX = ("font:14px/1.6 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;"
       "max-width:100%;word-wrap:break-word")


def token_color(value: float, scale: Scale) -> str:
    """The CSS background of an attribution ``value`` on ``scale``."""
    return css(colours(np.array(value), scale))


def unit_html(unit: Unit, scale: Scale) -> str:
    """One token or word as a span, its attribution in the ``title``."""
    shown = escape(unit.text, quote=True)
    hover = f"{unit.text}: {unit.value:+.4g}"
    if unit.pieces:
        hover += f" (tokens {' '.join(unit.pieces)})"
    if unit.special:
        return f'<span style="{SPAN};{SPECIAL}" title="{escape(hover + " (special token)")}">{shown}</span>'
    colour = colours(np.array(unit.value), scale)
    over = ink(colour)
    return (f'<span style="{SPAN};background:{css(colour)}{";color:" + over if over else ""}" '
            f'title="{escape(hover)}">{shown}</span>')


def caption(e: Explanation, i: int, model: str = "") -> str:
    """"[model · ]method · sample 3: predicted positive (0.97), true negative" with class names."""
    pred, true, target = int(e.predictions[i]), int(e.labels[i]), int(e.targets[i])
    text = (f"{model + ' · ' if model else ''}{e.method} · sample {int(e.sample_ids[i])}: "
            f"predicted {e.class_names[pred]} ({float(e.probabilities[i, pred]):.2f})")
    if true >= 0:
        text += f", true {e.class_names[true]}" + ("" if true == pred else " (misclassified)")
    if target != pred:
        text += f", explaining {e.class_names[target]}"
    return text


def legend_html(scale: Scale, target: str) -> str:
    """What the colours mean, with the text's scale."""
    swatch = "display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px"
    ends = ((-1.0, 1.0) if scale.signed else (0.0, 1.0))
    swatches = "".join(f'<span style="{swatch};background:{token_color(end * scale.bound, scale)};'
                       f'border:1px solid #d9dee8"></span> ' for end in ends)
    return (f'<div class="xai-legend" style="font-size:12px;color:#5d6678;margin-top:4px">'
            f"{swatches}{escape(legend(scale.signed, target))}; full colour = |attribution| "
            f"{scale.bound:.4g}; hover for values</div>")


def heatmap_html(e: Explanation, i: int, mode: str = "tokens", model: str = "") -> str:
    """Sample position ``i`` of ``e`` as a coloured text, with its caption (led by ``model``, the
    name of its model, when given) and legend."""
    shown = units(e, i, mode)
    scale = Scale(is_signed(e), max(scale_of(shown), 1e-30))
    body = "".join(unit_html(u, scale) for u in shown)
    target = f"class {e.class_names[int(e.targets[i])]}"
    return (f'<div class="xai-text" data-mode="{mode}" style="{BOX}">'
            f'<div style="font-weight:600;margin-bottom:4px">{escape(caption(e, i, model))}</div>'
            f"<div>{body}</div>{legend_html(scale, target)}</div>")


def texts_page(e: Explanation, samples: Sequence[int]) -> str:
    """A whole HTML document of the samples at ``samples``: each text by tokens, by words below."""
    parts = [f'<div style="margin:14px 0;padding-bottom:10px;border-bottom:1px solid #d9dee8">'
             f"{heatmap_html(e, i, 'tokens')}<details><summary>by words</summary>"
             f"{heatmap_html(e, i, 'words')}</details></div>" for i in samples]
    title = escape(f"{e.method}: attribution of each token")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title></head><body style=\"margin:20px\"><h1 style=\"font:600 20px "
            f"system-ui,sans-serif\">{title}</h1>{''.join(parts)}</body></html>\n")


class TextView:
    """Coloured texts for notebooks: Jupyter shows ``_repr_html_``."""

    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html


def text_figure(explanations: Sequence[Explanation], sample: int, kind: str) -> TextView:
    """``Explanation.plot`` of a text: ``tokens`` (and ``auto``), ``words``, or ``compare`` (every
    explanation's tokens of the same sample, one below the other)."""
    first = explanations[0]
    if kind == "compare":
        sid = int(first.sample_ids[sample])
        models = model_names(explanations)
        parts = [heatmap_html(first, sample, model=models[0])]
        for e, model in zip(explanations[1:], models[1:]):
            where = np.flatnonzero(e.sample_ids == sid)
            if not where.size:
                raise XaiError(f"{e.method} did not explain sample {sid}")
            parts.append(heatmap_html(e, int(where[0]), model=model))
        return TextView("<hr style='border:0;border-top:1px solid #d9dee8'>".join(parts))
    mode = "tokens" if kind == "auto" else kind
    if mode not in MODES:
        raise XaiError(f"a text explanation is drawn as kind tokens, words or compare, not {kind!r}")
    return TextView(heatmap_html(first, sample, mode))
