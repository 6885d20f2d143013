"""How a run's own report reaches the comparison reports that include it: each comparison records
itself in ``RUN/comparisons.json``, and the run's report links every recorded one that exists."""

from __future__ import annotations

import json
import os
from pathlib import Path

from xaicore.application import stale_reason
from xaicore.plugin import write_text

from .page import esc

RECORD = "comparisons.json"


def recorded(run_dir: Path) -> list[dict]:
    """The comparison reports recorded in the run (``{"report": path, "runs": [label, ...]}``);
    an unreadable record counts as none."""
    try:
        data = json.loads((Path(run_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = data.get("reports") if isinstance(data, dict) else None
    return [e for e in entries or [] if isinstance(e, dict) and isinstance(e.get("report"), str)
            and isinstance(e.get("runs"), list)]


def record(run_dir: Path, report: Path, labels: list[str], model_digest: str) -> Path:
    """Add (or renew) the comparison report at ``report`` in the run's record, with the digest of
    the run's model it compared."""
    where = str(Path(report).resolve())
    entries = [e for e in recorded(run_dir) if e["report"] != where]
    entries.append({"report": where, "runs": [str(label) for label in labels],
                    "model_digest": model_digest})
    return write_text(Path(run_dir) / RECORD, json.dumps({"reports": entries}, indent=1) + "\n")


def links_section(run_dir: Path, report: Path) -> str:
    """Links from the report at ``report`` to every recorded comparison report that exists and
    compared the run's model as it is now, by relative path (a report is shared with the folders
    around it); a note for one of an earlier model; "" when there is none."""
    items = []
    for entry in recorded(run_dir):
        target = Path(entry["report"])
        if target.is_file() and stale_reason(str(entry.get("model_digest", "")), run_dir):
            items.append(f"<li>{esc(target.name)} is not linked: it compared an earlier model of "
                         "this run; compare again with xai report --run A --run B --force</li>")
        elif target.is_file():
            items.append(f'<li><a href="{esc(relative(target, report))}">{esc(target.name)}</a>: '
                         f'{esc(" vs ".join(map(str, entry["runs"])))}</li>')
    if not items:
        return ""
    return ("<p>This run's model is compared with others, on the same test samples, in:</p>"
            f'<ul class="comparisons">{"".join(items)}</ul>')


def relative(target: Path, page: Path) -> str:
    """The link from the page at ``page`` to ``target``: its path relative to the page's folder."""
    return Path(os.path.relpath(Path(target).resolve(), Path(page).resolve().parent)).as_posix()
