"""What a run directory holds, read for the report: model card, explanations, stores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from xaicore.application import CHECKPOINT, StoredExplanation, is_store, load_checkpoint, stale_reason
from xaicore.plugin import Explanation, XaiError


@dataclass
class RunFiles:
    """The parts of a run directory that the report shows; absent parts are None or empty."""

    run_dir: Path
    checkpoint: dict
    metrics: dict = field(default_factory=dict)
    explanations: list[Explanation] = field(default_factory=list)
    stores: list[StoredExplanation] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # results of another model: why


def read_run(run_dir: Path) -> RunFiles:
    """Read a run directory; an XaiError when it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XaiError(f"no run directory at {run_dir}")
    if not (run_dir / CHECKPOINT).is_file():
        raise XaiError(f"{run_dir} is not a run directory: it has no {CHECKPOINT} (write one with "
                       "xai train --out DIR)")
    run = RunFiles(run_dir, load_checkpoint(run_dir / CHECKPOINT))
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        try:
            run.metrics = json.loads(metrics_path.read_text())
        except json.JSONDecodeError as exc:
            raise XaiError(f"{metrics_path} is not valid JSON: {exc}") from None
        if not isinstance(run.metrics, dict):
            raise XaiError(f"{metrics_path} must hold a JSON object of metrics, not a "
                           f"{type(run.metrics).__name__}; train the run again to rewrite it")
    for path in sorted((run_dir / "explanations").glob("*.npz")):
        try:
            e = Explanation.load(path)
        except XaiError as exc:
            run.unreadable[path.name] = str(exc)
            continue
        if not left_out(run, path, e.model_digest):
            run.explanations.append(e)
    explanations = run_dir / "explanations"
    for path in sorted([*explanations.glob("*.zarr"), *explanations.glob("*/*.zarr")]):
        if not is_store(path):
            continue
        try:
            store = StoredExplanation(path)
        except XaiError as exc:
            run.unreadable[str(path.relative_to(run_dir))] = str(exc)
            continue
        if not left_out(run, path, store.model_digest):
            run.stores.append(store)
    return run


def left_out(run: RunFiles, path: Path, digest: str) -> bool:
    """Whether the result at ``path`` is left out of the report as another model's (noted)."""
    reason = stale_reason(digest, run.run_dir)
    if reason:
        run.left_out[path.name] = f"{reason}; explain again with xai explain --force"
    return reason is not None
