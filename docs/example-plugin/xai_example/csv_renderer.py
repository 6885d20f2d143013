"""Writes each explanation as a long-form CSV table (one row per sample, time step and feature)."""

from __future__ import annotations

from pathlib import Path


class CsvRenderer:
    name = "csv"
    stage = "explanations"  # runs with `xai explain --figures`, `xai figures`
    description = "Attributions as a long-form CSV table"

    def render(self, explanations, out_dir, **options) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for explanation in explanations:
            path = out_dir / f"{explanation.method}.csv"
            explanation.to_dataframe().to_csv(path, index=False)
            paths.append(path)
        return paths
