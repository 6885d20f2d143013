"""The report's HTML: escaped text, inline images, a little CSS and JS, nothing fetched."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

GENERATOR = "xai-report"

CSS = """
:root { --fg:#1d2330; --muted:#5d6678; --line:#d9dee8; --accent:#2456a6; --bg:#f6f7fa; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#1f2a44; color:#fff; padding:18px 32px; }
header h1 { margin:0; font-size:22px; }
header p { margin:4px 0 0; color:#c8d1e6; }
header nav a { color:#fff; margin-right:18px; font-size:14px; }
main { max-width:1280px; margin:0 auto; padding:8px 32px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 22px;
          margin:18px 0; }
h2 { margin:4px 0 12px; font-size:19px; }
h3 { margin:16px 0 8px; font-size:16px; }
.table-wrap { overflow-x:auto; max-width:100%; }
table { border-collapse:collapse; font-size:14px; margin:6px 0 12px; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left;
         vertical-align:top; }
th { background:#eef1f6; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
th, td.num, td:first-child { white-space:nowrap; }
table.verdicts { width:100%; }
table.verdicts th, table.verdicts td { white-space:normal; }
table.verdicts td:first-child { white-space:nowrap; }
table.verdicts small { color:var(--muted); font-weight:normal; }
td.v-better { background:#e2f3e6; } td.v-worse { background:#fbe3df; }
td.v-useless { color:var(--muted); font-style:italic; }
details summary { cursor:pointer; color:var(--accent); margin:4px 0; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:150px; }
.card b { display:block; font-size:22px; }
.card span { color:var(--muted); font-size:13px; }
.grid { display:flex; flex-wrap:wrap; gap:16px; align-items:flex-start; }
figure { margin:8px 0; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px;
             background:#fff; }
figcaption { color:var(--muted); font-size:13px; }
.grid.half figure { flex:1 1 calc(50% - 16px); min-width:320px; }
.toolbars { position:sticky; top:0; z-index:2; background:#fff;
            border-bottom:1px solid var(--line); padding-bottom:8px; }
.toolbar { padding:8px 0 0; display:flex; flex-wrap:wrap; gap:6px; align-items:center; }
.toolbar .label { color:var(--muted); font-size:13px; margin-right:4px; }
button { font:inherit; font-size:13px; padding:4px 10px; border:1px solid var(--line);
         border-radius:14px; background:#f3f5f9; color:var(--fg); cursor:pointer; }
button[aria-pressed="true"] { background:var(--accent); border-color:var(--accent); color:#fff; }
button.wrong { border-color:#c0392b; }
#view-status { margin:8px 0 0; font-weight:600; }
.note { color:var(--muted); }
pre { background:#f3f5f9; padding:10px; overflow:auto; font-size:13px; }
.plot { width:100%; min-height:200px; }
.colour-legend { display:flex; flex-wrap:wrap; gap:18px; align-items:center; font-size:13px;
                 color:var(--muted); margin:4px 0; }
.colour-legend canvas { width:160px; height:12px; image-rendering:pixelated; vertical-align:middle;
                        border:1px solid var(--line); margin:0 6px; }
"""

def esc(value: Any) -> str:
    """User text for element content and attribute values (quotes escaped too)."""
    return escape(str(value), quote=True)


def image(path: Path, caption: str = "", alt: str = "") -> str:
    """A figure with the PNG (or, by its suffix, SVG) file inline as a base64 data URI."""
    kind = "svg+xml" if path.suffix.lower() == ".svg" else "png"
    return image_data(path.read_bytes(), caption, alt, kind)


def image_data(data: bytes, caption: str = "", alt: str = "", kind: str = "png") -> str:
    """A figure with image bytes (``image/KIND``, PNG by default) inline as a base64 data URI."""
    encoded = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (f'<figure><img src="data:image/{kind};base64,{encoded}" alt="{esc(alt or caption)}" '
            f'loading="eager">{cap}</figure>')


def table(rows: Iterable[tuple[Any, ...]], header: tuple[str, ...] | None = None) -> str:
    """A table of escaped cells; numbers are right-aligned and shown with 4 significant digits."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return (f'<div class="table-wrap"><table>{f"<thead><tr>{head}</tr></thead>" if head else ""}'
            f"<tbody>{body}</tbody></table></div>")


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{esc(value)}</td>"
    if isinstance(value, (int, float)):
        return f'<td class="num">{esc(f"{value:.4g}" if isinstance(value, float) else value)}</td>'
    return f"<td>{esc(value)}</td>"


def document(title: str, subtitle: str, sections: list[tuple[str, str, str]],
             scripts: Sequence[str] = ()) -> str:
    """The whole page: ``sections`` are (anchor id, heading, inner HTML already escaped);
    ``scripts`` are JavaScript sources inlined at the end (nothing is fetched)."""
    nav = "".join(f'<a href="#{esc(anchor)}">{esc(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(f'<section id="{esc(anchor)}"><h2>{esc(heading)}</h2>{inner}</section>'
                   for anchor, heading, inner in sections)
    code = "".join(f"<script>{source}</script>" for source in scripts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta name="generator" content="{GENERATOR}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{nav}</nav></header>"
            f"<main>{body}</main>{code}</body></html>\n")
