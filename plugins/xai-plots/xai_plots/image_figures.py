"""Matplotlib figures of image explanations: the image, its attribution map and their overlay;
every method's overlay of one sample side by side (the chapter's grid); per-class mean maps."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from xaicore.plugin import Explanation, XaiError, figure_size

from .colours import Scale, colours, is_signed, quantised
from .compare_labels import comparison_title, panel_labels
from .drawing import mappable
from .figures import convention, explained, label, sample_title, text
from .image_units import display_range, grey_of, heatmap_of, image_levels, image_of, overlay_levels, scale_of

#: Opacity of the attribution over the image in the figures (the report has a slider).
OPACITY = 0.7
#: Views of an image explanation (``Explanation.plot(kind=...)``).
IMAGE_KINDS = ("overlay", "heatmap", "compare")
PANEL_INCHES = 2.4
MAX_COLUMNS = 6  # panels in a row of the method grid before it wraps


def shown_image(e: Explanation, i: int, low: float, high: float) -> np.ndarray:
    """Sample position ``i``'s image as shown: uint8 RGB or grey ``[H, W]``."""
    levels = image_levels(image_of(e, i), low, high)
    return levels if levels.shape[2] == 3 else levels[..., 0]


def overlay(e: Explanation, i: int, low: float, high: float,
            opacity: float = OPACITY) -> tuple[np.ndarray, Scale]:
    """Sample position ``i``'s attribution over its image in grey (``overlay_levels``), and
    the map's scale."""
    values = heatmap_of(e, i)
    scale = scale_of(values, is_signed(e))
    grey = grey_of(image_levels(image_of(e, i), low, high))
    return overlay_levels(grey, quantised(values, scale), scale.signed, opacity), scale


def colour_bar(fig, ax, scale: Scale, **kwargs) -> None:
    bar = fig.colorbar(mappable(scale), ax=ax, **kwargs)
    bar.ax.tick_params(labelsize=7)


def bare(ax, title: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def image_figure(e: Explanation, i: int, kind: str = "overlay"):
    """One sample: ``overlay`` (the image, its attribution map and the map over the image in grey)
    or ``heatmap`` (the map alone), with the map's colour scale."""
    low, high = display_range([image_of(e, i)])
    values = heatmap_of(e, i)
    scale = scale_of(values, is_signed(e))
    if kind == "heatmap":
        fig, ax = plt.subplots(figsize=(4.2, 3.8), layout="constrained")
        ax.imshow(colours(values, scale), interpolation="nearest")
        bare(ax, "attribution")
        colour_bar(fig, ax, scale, fraction=0.05)
        fig.suptitle(sample_title(e, i), fontsize=10)
        convention(fig, [scale.signed], explained(e, i))
        return fig
    fig, axes = plt.subplots(1, 3, figsize=(3 * PANEL_INCHES + 0.8, PANEL_INCHES + 0.9),
                             layout="constrained")
    axes[0].imshow(shown_image(e, i, low, high), cmap="gray", vmin=0, vmax=255,
                   interpolation="nearest")
    bare(axes[0], "image")
    axes[1].imshow(colours(values, scale), interpolation="nearest")
    bare(axes[1], "attribution")
    axes[2].imshow(overlay(e, i, low, high)[0], interpolation="nearest")
    bare(axes[2], f"overlay ({OPACITY:.0%})")
    colour_bar(fig, axes.tolist(), scale, fraction=0.04, label="attribution")
    fig.suptitle(sample_title(e, i), fontsize=10)
    convention(fig, [scale.signed], explained(e, i))
    return fig


def methods_figure(rows: Sequence[tuple[Explanation, int]]):
    """One sample and every method's attribution over it, side by side (each map on its own scale,
    its colour bar below it)."""
    first, i = rows[0]
    low, high = display_range([image_of(first, i)])
    panels = len(rows) + 1
    columns = min(panels, MAX_COLUMNS)
    lines = -(-panels // columns)
    fig, axes = plt.subplots(lines, columns, squeeze=False, layout="constrained",
                             figsize=figure_size(columns * PANEL_INCHES,
                                                 lines * (PANEL_INCHES + 0.7) + 0.5))
    flat = axes.ravel()
    flat[0].imshow(shown_image(first, i, low, high), cmap="gray", vmin=0, vmax=255,
                   interpolation="nearest")
    bare(flat[0], "image")
    kinds = []
    for ax, (e, j), title in zip(flat[1:], rows, panel_labels(rows, sep="\n")):
        drawn, scale = overlay(e, j, low, high)
        ax.imshow(drawn, interpolation="nearest")
        bare(ax, title)
        colour_bar(fig, ax, scale, orientation="horizontal", fraction=0.06, pad=0.02)
        kinds.append(scale.signed)
    for ax in flat[panels:]:
        ax.set_axis_off()
    fig.suptitle(comparison_title(rows)
                 + text(f"\nattribution over the image at {OPACITY:.0%}, each method on its own "
                        f"scale"), fontsize=10)
    convention(fig, kinds, explained(first, i))
    return fig


def misclassified_figure(pred_e: Explanation, i: int, true_e: Explanation, j: int,
                         top: int = 5):
    """A misclassified image: why the predicted class and why the true class, over the image on
    one scale, and the top classes' probabilities."""
    low, high = display_range([image_of(pred_e, i)])
    maps = [heatmap_of(pred_e, i), heatmap_of(true_e, j)]
    scale = scale_of(np.concatenate([m.ravel() for m in maps]), is_signed(pred_e) or is_signed(true_e))
    grey = grey_of(image_levels(image_of(pred_e, i), low, high))
    fig, axes = plt.subplots(1, 4, figsize=(4 * PANEL_INCHES + 1.0, PANEL_INCHES + 0.9),
                             width_ratios=[1, 1, 1, 0.9], layout="constrained")
    axes[0].imshow(shown_image(pred_e, i, low, high), cmap="gray", vmin=0, vmax=255,
                   interpolation="nearest")
    bare(axes[0], "image")
    for ax, e, k, values, role in ((axes[1], pred_e, i, maps[0], "predicted"),
                                   (axes[2], true_e, j, maps[1], "true")):
        ax.imshow(overlay_levels(grey, quantised(values, scale), scale.signed, OPACITY),
                  interpolation="nearest")
        bare(ax, f"why {label(e.class_names[int(e.targets[k])])} ({role} class)")
    colour_bar(fig, axes[1:3].tolist(), scale, orientation="horizontal", fraction=0.06, pad=0.02)
    convention(fig, [scale.signed], "the class each map explains")
    probs = pred_e.probabilities[i]
    shown = np.argsort(probs)[::-1][:top]
    colours = ["tab:red" if c == pred_e.predictions[i] else
               "tab:green" if c == pred_e.labels[i] else "0.6" for c in shown]
    axes[3].barh(range(len(shown)), probs[shown], color=colours)
    axes[3].set_yticks(range(len(shown)), [label(pred_e.class_names[c]) for c in shown])
    axes[3].invert_yaxis()
    axes[3].set_xlim(0, 1)
    axes[3].set_xlabel("probability", fontsize=8)
    axes[3].set_title("top classes (red: predicted, green: true)", fontsize=8)
    fig.suptitle(sample_title(pred_e, i) + text("\nboth maps on one scale"), fontsize=10)
    return fig


def class_means_figure(e: Explanation, classes: int = 10):
    """Per explained class (the ``classes`` most explained): the mean image and the mean
    |attribution| over the samples explained for it."""
    counts = np.bincount(e.targets, minlength=len(e.class_names))
    shown = [int(c) for c in np.argsort(-counts, kind="stable")[:classes] if counts[c] > 0]
    if not shown:
        raise XaiError(f"the explanation of {e.method!r} holds no samples")
    fig, axes = plt.subplots(2, len(shown), squeeze=False, layout="constrained",
                             figsize=figure_size(1.5 * len(shown) + 1.2, 3.6))
    images = np.stack([image_of(e, k) for k in range(e.n_samples)])
    magnitude = np.stack([np.abs(heatmap_of(e, k)) for k in range(e.n_samples)])
    low, high = display_range([images])
    bound = max(float(np.nanmax([magnitude[e.targets == c].mean(0).max() for c in shown])), 1e-30)
    for k, c in enumerate(shown):
        rows = e.targets == c
        mean_image = image_levels(images[rows].mean(0), low, high)
        axes[0, k].imshow(mean_image if mean_image.shape[2] == 3 else mean_image[..., 0],
                          cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        bare(axes[0, k], f"{label(e.class_names[c])} ({int(rows.sum())})")
        axes[1, k].imshow(colours(magnitude[rows].mean(0), Scale(False, bound)),
                          interpolation="nearest")
        bare(axes[1, k], "")
    axes[0, 0].set_ylabel("mean image", fontsize=8)
    axes[1, 0].set_ylabel("mean |attribution|", fontsize=8)
    colour_bar(fig, axes[1, :].tolist(), Scale(False, bound), fraction=0.03)
    convention(fig, [False], "the class of each column")
    fig.suptitle(text(f"{e.method} · per explained class (how many explained)"), fontsize=10)
    return fig
