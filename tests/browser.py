"""The real browser of the report tests: Debian's chromium, driven by playwright."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def browser_page(requests: list[str], errors: list[str]) -> Iterator[Any]:
    """A 1280 x 900 page of a fresh headless chromium (the test is skipped where it is not
    installed) that records every request's URL and every console or page error."""
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
        finally:
            browser.close()


#: The SVG text labels the page shows under the elements of a CSS selector (a Plotly chart's ticks,
#: titles, legend entries, annotations): their text and bounding box in CSS pixels.
LABELS_JS = """(selector) => {
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    for (const el of root.querySelectorAll('text')) {
      const style = getComputedStyle(el), box = el.getBoundingClientRect();
      if (!el.textContent.trim() || !box.width || !box.height || style.visibility === 'hidden'
          || Number(style.opacity) === 0) { continue; }
      out.push({text: el.textContent, left: box.left, top: box.top, right: box.right,
                bottom: box.bottom});
    }
  }
  return out;
}"""


def overlapping_labels(page: Any, selector: str, slack: float = 1.0) -> list[tuple[str, str]]:
    """The pairs of labels under ``selector`` (e.g. a Plotly chart's div) whose bounding boxes,
    each shrunk by ``slack`` pixels a side, intersect."""
    boxes = page.evaluate(LABELS_JS, selector)
    pairs = []
    for k, a in enumerate(boxes):
        for b in boxes[k + 1:]:
            if (min(a["right"], b["right"]) - max(a["left"], b["left"]) > 2 * slack
                    and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 2 * slack):
                pairs.append((a["text"], b["text"]))
    return pairs


def label_count(page: Any, selector: str) -> int:
    """How many labels ``overlapping_labels`` compares under ``selector``."""
    return len(page.evaluate(LABELS_JS, selector))
