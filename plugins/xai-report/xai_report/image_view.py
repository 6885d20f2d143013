"""The report's views of image explanations: each sample's image, its attribution map and their
overlay (drawn on canvases in the browser from embedded 8-bit PNGs, with an opacity slider), every
method's overlay of one sample side by side, and the explained images per class."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xai_plots.colours import Scale, quantised
from xai_plots.image_units import (
    SATURATED,
    display_range,
    grey_of,
    heatmap_of,
    image_levels,
    image_of,
    image_size,
    overlay_levels,
    png_bytes,
    pooled,
    scale_of,
)
from xaicore.plugin import Explanation, XaiError

from .explorer import in_page_order, pickers, view_of
from .page import esc

#: Largest side of an embedded attribution map: larger maps are averaged over square blocks.
MAX_MAP_SIDE = 128
#: Opacity of the overlay when the page opens (the slider changes it).
OPACITY = 0.7
#: Example images per class in the dataset view.
EXAMPLES = 6
#: Largest side of an image of the view per class (a thumbnail; larger ones are block means).
THUMBNAIL_SIDE = 64

CSS = """
.img-row { display:flex; flex-wrap:wrap; gap:14px; align-items:flex-start; margin:10px 0; }
.img-row[hidden] { display:none; }
.img-row figure { margin:0; }
.img-row canvas, .img-class img { image-rendering:pixelated; border:1px solid var(--line);
  background:#000; display:block; }
.img-row.single canvas { width:256px; height:auto; }
.img-row.compare canvas { width:168px; height:auto; }
.img-row.wrong canvas { outline:3px solid #c0392b; outline-offset:1px; }
.img-row.single figcaption { max-width:256px; }
.img-row.compare figcaption { max-width:168px; }
.img-legend { display:flex; flex-wrap:wrap; gap:18px; align-items:center; font-size:13px;
  color:var(--muted); }
.img-legend canvas { width:200px; height:12px; image-rendering:pixelated; border:1px solid var(--line);
  vertical-align:middle; margin:0 6px; }
#image-opacity { vertical-align:middle; }
.img-class { display:flex; flex-wrap:wrap; gap:8px; align-items:flex-end; padding:6px 0;
  border-bottom:1px solid var(--line); }
.img-class h4 { margin:0 8px 0 0; min-width:110px; font-size:14px; align-self:center; }
.img-class img { width:72px; height:auto; }
.img-class figure { margin:0; }
.img-class figcaption { font-size:11px; }
.img-class img.wrong { outline:2px solid #c0392b; }
"""


def data_uri(levels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(levels)).decode("ascii")


def pool_factor(height: int, width: int) -> int:
    """The block side that brings the longer side of a map to at most ``MAX_MAP_SIDE``."""
    return max(1, -(-max(height, width) // MAX_MAP_SIDE))


def image_data(explanations: list[Explanation]) -> dict[str, Any]:
    """What the page draws: every explained image once (8-bit over one grey-level range for all
    of them, RGB or grey) and per explanation, per sample, its attribution map quantised to 8 bits
    on its own scale (``xai_plots.image_units.quantised``, PNG), the scale's bound, whether the
    method is signed, and the predictions."""
    first = explanations[0]
    height, width = image_size(first)
    factor = pool_factor(height, width)
    ordered = in_page_order(explanations)
    low, high = display_range([e.inputs for e in ordered])
    images: dict[str, str] = {}
    views = []
    for e in ordered:
        view = view_of(e)
        for i, sid in enumerate(view["samples"]):
            values = pooled(heatmap_of(e, i), factor)
            scale = scale_of(values, view["signed"])
            view["attr"].append(data_uri(quantised(values, scale)))
            view["scale"].append(scale.bound)
            if str(sid) not in images:
                images[str(sid)] = data_uri(image_levels(image_of(e, i), low, high))
        views.append(view)
    return {"classes": [str(c) for c in first.class_names], "height": height, "width": width,
            "channels": int(first.inputs.shape[2]), "factor": factor, "range": [low, high],
            "images": images, "views": views, "opacity": OPACITY}


def image_section(explanations: list[Explanation]) -> str:
    """Method, sample and opacity controls, the image / map / overlay canvases, the side-by-side
    grid of every method ("all methods"), the colour legend and the embedded data."""
    data = image_data(explanations)
    tabs, buttons = pickers(data["views"], "image-")
    percent = round(100 * OPACITY)
    pooled_note = (f" Maps of images larger than {MAX_MAP_SIDE} pixels a side are embedded as the "
                   f"means of {data['factor']}x{data['factor']} pixel blocks."
                   if data["factor"] > 1 else "")
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (f"<style>{CSS}</style>"
            f'<div class="toolbars"><div class="toolbar"><span class="label">Method</span>{tabs}</div>'
            f'<div class="toolbar"><span class="label">Image</span>'
            f'<button type="button" id="image-prev" title="previous image (left arrow)">&larr;</button>'
            f'{buttons}<button type="button" id="image-next" title="next image (right arrow)">&rarr;'
            f'</button></div><div class="toolbar"><label class="label" for="image-opacity">Opacity'
            f'</label><input type="range" id="image-opacity" min="0" max="100" step="5" '
            f'value="{percent}"><span id="image-opacity-value">{percent}%</span></div>'
            '<p id="image-status"></p></div>'
            '<div id="image-view" class="img-row single">'
            '<figure><canvas id="image-input"></canvas><figcaption>image</figcaption></figure>'
            '<figure><canvas id="image-heat"></canvas><figcaption>attribution</figcaption></figure>'
            '<figure><canvas id="image-overlay"></canvas><figcaption id="image-overlay-caption">'
            "attribution over the image (grey)</figcaption></figure></div>"
            '<p id="image-hover" class="note"></p>'
            '<div id="image-compare" class="img-row compare" hidden></div>'
            '<div class="img-legend" id="image-legend"></div>'
            '<p class="note">Each map on its own scale: methods with signed attributions on a '
            "diverging scale centred on 0 (red for the explained class, blue against it), the "
            "others on a sequential one from 0 (white) to red; the largest "
            f"{SATURATED:.0%} of each map's |attribution| saturate its scale. Over the image, "
            "a pixel's colour is as opaque as its |attribution| is large (times the opacity "
            "slider), so unattributed pixels show the image; hover a map for its values. Maps are "
            "embedded quantised to 8 bits "
            f"(255 levels on the scale of each map) and images to 8-bit grey levels.{pooled_note} "
            "Misclassified images have a red outline.</p>"
            f'<script type="application/json" id="xai-image-data">{payload}</script>')


@dataclass
class ClassImages:
    """What the view per class shows of one class: how many images it has, their mean, a few of
    them (sample id, image ``[H, W, C]``, and for a misclassified one what it was taken for, e.g.
    "predicted 8", else None) and
    the mean |attribution| map of each method over its explained images (view key: map, count)."""

    name: str
    count: int
    mean: np.ndarray
    examples: list[tuple[int, np.ndarray, str | None]]
    maps: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)


def test_split_classes(run_dir: Path, explanations: list[Explanation]) -> list[ClassImages] | None:
    """Every class of the run's test split (the explained samples' ids are its positions): its
    size, mean image and first ``EXAMPLES`` images, with each method's mean |attribution| over
    the explained ones; None when the run's data cannot be read here."""
    from xaicore.application import load_run_data

    try:
        _, dataset = load_run_data(run_dir)
    except XaiError:
        return None
    X, y = dataset.test.X, dataset.test.y
    first = explanations[0]
    if X.shape[1:] != first.inputs.shape[1:] or len(dataset.class_names) != len(first.class_names):
        return None
    height, width = image_size(first)
    predicted = {int(s): str(first.class_names[p]) for e in explanations
                 for s, p in zip(e.sample_ids, e.predictions)}
    out = []
    for c, name in enumerate(first.class_names):
        members = np.flatnonzero(y == c)
        if not members.size:
            continue
        images = X[members].reshape(len(members), height, width, -1)
        out.append(ClassImages(str(name), len(members), images.mean(axis=0),
                               [(int(k), images[j], wrong(predicted.get(int(k)), str(name)))
                                for j, k in enumerate(members[:EXAMPLES])]))
    add_maps(out, explanations, lambda e, i: int(e.labels[i]))
    return out


def explained_classes(explanations: list[Explanation]) -> list[ClassImages]:
    """The classes of the explained images (true class; the predicted one where it is unknown):
    each class's explained images once, their mean, the first ``EXAMPLES`` and each method's
    mean |attribution|."""
    def label_of(e: Explanation, i: int) -> int:
        return int(e.labels[i]) if e.labels[i] >= 0 else int(e.predictions[i])

    names = explanations[0].class_names
    seen: dict[int, tuple[int, np.ndarray, str]] = {}
    for e in explanations:
        for i, sid in enumerate(int(s) for s in e.sample_ids):
            seen.setdefault(sid, (label_of(e, i), image_of(e, i), str(names[e.predictions[i]])))
    out = []
    for c in sorted({label for label, _, _ in seen.values()}):
        members = [(sid, image, p) for sid, (label, image, p) in sorted(seen.items()) if label == c]
        out.append(ClassImages(str(names[c]), len(members),
                               np.mean([image for _, image, _ in members], axis=0),
                               [(sid, image, wrong(p, str(names[c])))
                                for sid, image, p in members[:EXAMPLES]]))
    add_maps(out, explanations, label_of)
    return out


def wrong(predicted: str | None, true: str) -> str | None:
    """What a misclassified image was taken for ("predicted 8"), None when it was not (or when
    it is not known)."""
    return None if predicted is None or predicted == true else f"predicted {predicted}"


def store_classes(store: Any, frame: Any) -> str:
    """The class rows of a streamed result (a ``StoredExplanation`` of images and its per-sample
    table): per explained class, its mean image and mean |attribution| over every sample
    streamed (the store's summaries) and its first ``EXAMPLES`` images (read alone)."""
    summary = store.class_summary()
    targets = frame["target"].to_numpy()
    classes = []
    for c, name in enumerate(store.class_names):
        count = int(summary["count"][c])
        if count <= 0:
            continue
        chosen = store.select(np.flatnonzero(targets == c)[:EXAMPLES])
        height, width = image_size(chosen)
        examples = [(int(chosen.sample_ids[k]), image_of(chosen, k),
                     f"true {store.class_names[chosen.labels[k]]}"
                     if 0 <= chosen.labels[k] != chosen.predictions[k] else None)
                    for k in range(chosen.n_samples)]
        magnitude = summary["attribution_abs_mean"][c].reshape(height, width, -1)
        same = magnitude.shape[2] == 1 or bool((magnitude == magnitude[..., :1]).all())
        classes.append(ClassImages(str(name), count, summary["input_mean"][c].reshape(height, width, -1),
                                   examples, {store.method: (magnitude[..., 0] if same
                                                             else magnitude.sum(axis=2), count)}))
    return ('<p class="note">Per explained class: how many samples were explained for it, their '
            "mean image and mean |attribution| (from the summaries written while streaming) and "
            f"the first {EXAMPLES} of them (a red outline: misclassified).</p>"
            + class_rows(classes, toggled=False))


def add_maps(classes: list[ClassImages], explanations: list[Explanation], label_of) -> None:
    """Each method's mean |attribution| over its explained images of each class."""
    where = {c.name: c for c in classes}
    for e in explanations:
        key = view_of(e)["key"]
        groups: dict[str, list[np.ndarray]] = {}
        for i in range(e.n_samples):
            label = label_of(e, i)
            if label >= 0:
                groups.setdefault(str(e.class_names[label]), []).append(np.abs(heatmap_of(e, i)))
        for name, maps in groups.items():
            if name in where:
                where[name].maps[key] = (np.mean(maps, axis=0), len(maps))


def image_classes_section(explanations: list[Explanation], run_dir: Path) -> str:
    """Per class: how many images it has, their mean image, each method's mean |attribution| over
    its explained images (the method picked above shown) and its first ``EXAMPLES`` images; the
    classes of the run's test split when its data can be read here, else of the explained images."""
    ordered = in_page_order(explanations)
    classes = test_split_classes(run_dir, ordered)
    if classes is None:
        classes = explained_classes(ordered)
        where = ("the explained images of each class (true class; the predicted one where it is "
                 "unknown; the run's data cannot be read here)")
    else:
        where = "each class of the test split"
    return (f'<p class="note">Per class, {where}: how many images it has, their mean image, the '
            "mean |attribution| of the method picked above over its explained images (on one "
            f"scale per method, all classes alike) and its first {EXAMPLES} images (by sample id; "
            "a red outline: misclassified).</p>" + class_rows(classes, toggled=True))


def class_rows(classes: list[ClassImages], toggled: bool) -> str:
    """One row per class: its mean image, each method's mean |attribution| over it (``toggled``:
    marked to follow the method picked in the explanations' view) and its example images, every
    image on one grey-level range, at most ``THUMBNAIL_SIDE`` pixels a side."""
    low, high = display_range([c.mean for c in classes] + [im for c in classes
                                                            for _, im, _ in c.examples])
    height, width = classes[0].mean.shape[:2] if classes else (1, 1)
    factor = max(1, -(-max(height, width) // THUMBNAIL_SIDE))
    bounds: dict[str, float] = {}
    for c in classes:
        for key, (values, _) in c.maps.items():
            bounds[key] = max(bounds.get(key, 1e-30), float(values.max()))
    parts = []
    for c in classes:
        shown = image_levels(pooled(c.mean, factor), low, high)
        cells = [f'<figure><img src="{data_uri(shown)}" alt="mean image of class {esc(c.name)}">'
                 f"<figcaption>mean image</figcaption></figure>"]
        for key in bounds:
            mark = f' data-class-key="{esc(key)}"' if toggled else ""
            if key not in c.maps:
                cells.append(f"<figure{mark}><figcaption>no image of this class explained"
                             "</figcaption></figure>")
                continue
            values, n = c.maps[key]
            levels = quantised(pooled(values, factor), Scale(False, bounds[key]))
            drawn = overlay_levels(grey_of(shown), levels, False, OPACITY)
            cells.append(f'<figure{mark}><img src="{data_uri(drawn)}" alt="mean |attribution| of '
                         f'{esc(key)}"><figcaption>mean |attr| of {n:,}</figcaption></figure>')
        for sid, image, mistake in c.examples:
            note = f", {mistake}" if mistake else ""
            outline = ' class="wrong"' if mistake else ""
            thumbnail = image_levels(pooled(image, factor), low, high)
            cells.append(f'<figure><img{outline} src="{data_uri(thumbnail)}" '
                         f'alt="image {sid}" title="image {sid}{esc(note)}"><figcaption>{sid}'
                         f"{esc(note)}</figcaption></figure>")
        parts.append(f'<div class="img-class" data-class="{esc(c.name)}"><h4>{esc(c.name)}<br>'
                     f"<small>{c.count:,} images</small></h4>{''.join(cells)}</div>")
    return "".join(parts)
