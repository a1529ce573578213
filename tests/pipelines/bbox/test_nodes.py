import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.data import imaging, rle, synthetic
from anomaly_lens.ml.data.boxes import box_iou
from anomaly_lens.pipelines.bbox.nodes import (
    build_boxes,
    plot_box_sizes,
    render_previews,
    summarise_boxes,
)

PARAMS = {"min_area": 10, "merge_distance": 0, "previews_per_class": 2}
SOURCE_BOX_COLUMNS = ["image_id", "class", "x0", "y0", "x1", "y1"]


def masks_table(rows):
    return pd.DataFrame(rows, columns=["image_id", "class", "encoded_pixels", "area", "weak_mask"])


def test_mask_components_become_boxes_and_specks_are_counted():
    mask = np.zeros((10, 12), dtype=bool)
    mask[1:4, 2:6] = True
    mask[8, 10] = True  # a one-pixel speck
    manifest = pd.DataFrame({"image_id": ["a"], "height": [10], "width": [12]})
    masks = masks_table([("a", "scratch", rle.encode(mask), int(mask.sum()), False)])
    boxes, specks = build_boxes(masks, pd.DataFrame(columns=SOURCE_BOX_COLUMNS), manifest, PARAMS)
    assert boxes[
        ["class", "x0", "y0", "x1", "y1", "area", "pixel_count", "weak_mask"]
    ].values.tolist() == [["scratch", 2, 1, 6, 4, 12, 12, False]]
    assert specks.values.tolist() == [["a", "scratch", 1]]
    report = summarise_boxes(boxes, specks, PARAMS)
    assert report["boxes_by_class"] == {"scratch": 1}
    assert report["specks_dropped_by_class"] == {"scratch": 1}
    assert isinstance(plot_box_sizes(boxes), Figure)


def test_voc_boxes_are_kept_as_weak_boxes():
    manifest = pd.DataFrame({"image_id": ["v"], "height": [16], "width": [16]})
    weak = masks_table([("v", "dent", rle.encode(np.ones((16, 16), bool)), 256, True)])
    source = pd.DataFrame(
        [("v", "dent", 0, 0, 4, 4), ("v", "dent", 2, 2, 6, 6)], columns=SOURCE_BOX_COLUMNS
    )
    boxes, _ = build_boxes(weak, source, manifest, PARAMS)
    # Overlapping boxes stay two objects (no connected components over box masks).
    assert len(boxes) == 2 and boxes["weak_mask"].all() and set(boxes["source"]) == {"boxes"}


def test_every_synthetic_object_gets_a_box_with_iou_at_least_0_9():
    data = synthetic.generate(synthetic.SyntheticConfig())
    size = data.metadata["image_size"]
    masks = masks_table(
        [
            (r.ImageId.removesuffix(".png"), r.ClassId, r.EncodedPixels, 0, False)
            for r in data.annotations.itertuples()
        ]
    )
    manifest = pd.DataFrame({"image_id": masks["image_id"].unique(), "height": size, "width": size})
    boxes, _ = build_boxes(masks, pd.DataFrame(columns=SOURCE_BOX_COLUMNS), manifest, PARAMS)
    by_key = {k: g for k, g in boxes.groupby(["image_id", "class"])}
    objects = data.objects[data.objects["pixel_count"] >= PARAMS["min_area"]]
    ious = []
    for obj in objects.itertuples():
        found = by_key[(obj.ImageId.removesuffix(".png"), obj.ClassId)]
        ious.append(
            max(
                box_iou((obj.x0, obj.y0, obj.x1, obj.y1), (b.x0, b.y0, b.x1, b.y1))
                for b in found.itertuples()
            )
        )
    assert len(ious) == len(objects) > 500
    assert min(ious) >= 0.9


def test_previews_draw_the_image_boxes_and_contour():
    pixels = np.random.default_rng(0).integers(0, 255, (12, 12), dtype=np.uint8)
    mask = np.zeros((12, 12), dtype=bool)
    mask[3:6, 3:6] = True
    manifest = pd.DataFrame(
        {"image_id": ["a"], "partition_id": ["co2/a"], "height": [12], "width": [12]}
    )
    masks = masks_table([("a", "plume", rle.encode(mask), 9, False)])
    boxes, _ = build_boxes(
        masks, pd.DataFrame(columns=SOURCE_BOX_COLUMNS), manifest, {**PARAMS, "min_area": 1}
    )
    fig = render_previews(
        boxes, masks, manifest, {"co2/a": lambda: imaging.encode_png(pixels)}, PARAMS
    )
    ax = fig.axes[0]
    assert len(ax.images) == 1 and len(ax.patches) == 1 and ax.get_title().startswith("plume")
