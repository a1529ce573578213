"""Nodes of the ``bbox`` pipeline: boxes from masks (or VOC), report and previews."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from anomaly_lens.ml.data import imaging, rle
from anomaly_lens.ml.data.boxes import find_components
from anomaly_lens.parameters import BboxParams, parse_block

BOX_COLUMNS = [
    "image_id",
    "class",
    "x0",
    "y0",
    "x1",
    "y1",
    "area",
    "pixel_count",
    "weak_mask",
    "source",
]


def build_boxes(
    masks: pd.DataFrame, source_boxes: pd.DataFrame, manifest: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Boxes per object (``x0, y0`` inclusive, ``x1, y1`` exclusive) and specks dropped.

    Pixel masks give one box per connected component (8-connected, fragments within
    ``merge_distance`` joined, components under ``min_area`` pixels dropped and counted).
    Box-only annotations (VOC) keep their boxes, flagged ``weak_mask``.
    """
    settings = parse_block(BboxParams, params)
    sizes = manifest.set_index("image_id")[["height", "width"]]
    rows, specks = [], []
    pixel_masks = masks.loc[~masks["weak_mask"]].rename(columns={"class": "cls"})
    for row in pixel_masks.itertuples(index=False):
        height, width = sizes.loc[row.image_id]
        mask = rle.decode(row.encoded_pixels, int(height), int(width))
        components, dropped = find_components(mask, settings.min_area, settings.merge_distance)
        rows += [
            (row.image_id, row.cls, c.x0, c.y0, c.x1, c.y1, c.area, c.pixel_count, False, "mask")
            for c in components
        ]
        if dropped:
            specks.append((row.image_id, row.cls, dropped))
    for box in source_boxes.rename(columns={"class": "cls"}).itertuples(index=False):
        area = (box.x1 - box.x0) * (box.y1 - box.y0)
        rows.append(
            (box.image_id, box.cls, box.x0, box.y0, box.x1, box.y1, area, area, True, "boxes")
        )
    boxes = pd.DataFrame(rows, columns=BOX_COLUMNS)
    return boxes, pd.DataFrame(specks, columns=["image_id", "class", "specks_dropped"])


def summarise_boxes(boxes: pd.DataFrame, specks: pd.DataFrame, params: dict) -> dict:
    """Boxes per class, specks dropped per class, box-size quantiles."""
    per_class = boxes.groupby("class")
    return {
        **parse_block(BboxParams, params).model_dump(include={"min_area", "merge_distance"}),
        "n_boxes": int(len(boxes)),
        "boxes_by_class": {str(k): int(v) for k, v in per_class.size().items()},
        "weak_boxes_by_class": {str(k): int(v) for k, v in per_class["weak_mask"].sum().items()},
        "images_with_boxes_by_class": {
            str(k): int(v) for k, v in per_class["image_id"].nunique().items()
        },
        "specks_dropped_by_class": {
            str(k): int(v) for k, v in specks.groupby("class")["specks_dropped"].sum().items()
        },
        "box_area_quantiles_by_class": {
            str(cls): {
                f"q{int(q * 100)}": float(v) for q, v in group["area"].quantile([0, 0.5, 1]).items()
            }
            for cls, group in per_class
        },
    }


def plot_box_sizes(boxes: pd.DataFrame) -> Figure:
    """Box width against height per class."""
    fig = Figure(figsize=(6, 5), layout="tight")
    ax = fig.subplots()
    for cls, group in boxes.groupby("class"):
        ax.scatter(
            group["x1"] - group["x0"], group["y1"] - group["y0"], s=8, alpha=0.6, label=str(cls)
        )
    ax.set(xlabel="box width (px)", ylabel="box height (px)", title=f"{len(boxes)} boxes")
    ax.legend(fontsize="small")
    return fig


def render_previews(
    boxes: pd.DataFrame,
    masks: pd.DataFrame,
    manifest: pd.DataFrame,
    raw_images: Mapping[str, Callable[[], bytes]],
    params: dict,
) -> Figure:
    """A few images per class with their boxes and the mask contour drawn over them."""
    per_class = parse_block(BboxParams, params).previews_per_class
    classes = sorted(boxes["class"].unique())
    rows = max(len(classes), 1)
    fig = Figure(figsize=(3 * per_class, 3 * rows), layout="tight")
    axes = fig.subplots(rows, per_class, squeeze=False)
    info = manifest.set_index("image_id")
    for ax in axes.flat:
        ax.axis("off")
    for r, cls in enumerate(classes):
        chosen = sorted(boxes.loc[boxes["class"] == cls, "image_id"].unique())[:per_class]
        for c, image_id in enumerate(chosen):
            ax = axes[r, c]
            pixels = imaging.decode_image(raw_images[info.loc[image_id, "partition_id"]]()).pixels
            ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None)
            encoded = masks.query("image_id == @image_id and `class` == @cls")["encoded_pixels"]
            if len(encoded):
                mask = rle.decode(encoded.iloc[0], *pixels.shape[:2])
                ax.contour(mask.astype(np.uint8), levels=[0.5], colors="yellow", linewidths=0.8)
            for b in boxes.query("image_id == @image_id and `class` == @cls").itertuples():
                ax.add_patch(
                    Rectangle(
                        (b.x0 - 0.5, b.y0 - 0.5),
                        b.x1 - b.x0,
                        b.y1 - b.y0,
                        fill=False,
                        edgecolor="red",
                        linewidth=1,
                    )
                )
            ax.set_title(f"{cls}\n{image_id}", fontsize=7)
    return fig
