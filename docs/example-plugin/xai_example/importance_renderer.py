"""Draws each explanation's mean absolute attribution over time as an SVG line, listed for the
html report (``report = True``). Plain SVG text: no plotting library is needed."""

from __future__ import annotations

from pathlib import Path

from xaicore.plugin import write_text

WIDTH, HEIGHT = 480, 160


class ImportanceRenderer:
    name = "importance"
    stage = "explanations"  # runs with `xai explain --figures` and `xai figures`
    report = True  # its PNG and SVG files get a section in `xai report`'s page
    description = "Mean absolute attribution over time, one SVG line per explanation"

    def render(self, explanations, out_dir, **options) -> list[Path]:
        paths = []
        for explanation in explanations:
            curve = abs(explanation.attributions).mean(axis=(0, 2))
            top = float(curve.max()) or 1.0
            step = WIDTH / max(len(curve) - 1, 1)
            points = " ".join(f"{i * step:.1f},{HEIGHT - HEIGHT * float(v) / top:.1f}"
                              for i, v in enumerate(curve))
            svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
                   f'<polyline fill="none" stroke="black" points="{points}"/></svg>\n')
            paths.append(write_text(Path(out_dir) / f"{explanation.method}_importance.svg", svg))
        return paths
