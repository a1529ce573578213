"""Nodes of the ``ingestion`` pipeline."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.data import layouts
from anomaly_lens.ml.data.imaging import PIXEL_SCALING, ImageProblem, SizeLimits
from anomaly_lens.ml.data.inspection import (
    Checks,
    Inspection,
    MaskRule,
    image_geometry,
    inspect_records,
)
from anomaly_lens.parameters import IngestionParams, parse_block

logger = logging.getLogger(__name__)

QUALITY_METRICS = ("sharpness", "brightness", "contrast", "resolution")


class DataQualityError(ValueError):
    """Raised with ``on_error: fail`` when any raw row would go to quarantine."""


def _refusing(path: str, real: str) -> Callable[[], bytes]:
    def load() -> bytes:
        raise ImageProblem("outside_raw_dir", f"{path} is a link to {real}, outside the raw folder")

    return load


def _inside_raw_folder(partitions: Any) -> Any:
    """The partitions, with the loader of every file whose real path leaves the folder
    (a symbolic link to elsewhere) replaced by one that refuses to read it."""
    if not isinstance(partitions, Mapping):
        return partitions  # a table (RLE or manifest CSV), not a folder of files
    guarded = dict(partitions)
    for pid, load in partitions.items():
        path = _file_path(load)
        if path is None or pid not in path:
            continue
        root = os.path.realpath(path[: path.rindex(pid)])
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            guarded[pid] = _refusing(path, real)
    return guarded


def collect_records(
    raw_images: Mapping[str, Callable[[], bytes]], raw_annotations: Any, params: dict
) -> list[layouts.RawRecord]:
    """Read the raw layer with the adapter named by ``ingestion.layout``.

    Files reached through links that leave the raw folder are not read (quarantined as
    ``outside_raw_dir``) unless ``follow_links_outside_raw_dir`` is true.
    """
    settings = parse_block(IngestionParams, params)
    if not settings.follow_links_outside_raw_dir:
        raw_images, raw_annotations = map(_inside_raw_folder, (raw_images, raw_annotations))
    return layouts.read_layout(settings.layout, raw_images, raw_annotations, settings)


def _file_path(load: Callable[[], bytes] | None) -> str | None:
    """The file behind a partition's loader (a bound ``load`` of a file dataset)."""
    dataset = getattr(load, "__self__", None)
    return getattr(dataset, "filepath", None)


def inspect_raw_records(
    records: list[layouts.RawRecord], params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Decode, check and measure every record; split good rows from quarantined ones.

    With ``on_error: fail`` the node raises after looking at every record, naming each
    reason, and nothing is written.
    """
    settings = parse_block(IngestionParams, params)
    rule = MaskRule(settings.mask_threshold, settings.strict_binary_masks)
    checks = Checks(
        SizeLimits(settings.max_image_pixels, settings.min_image_side),
        settings.duplicate_label_conflict,
    )
    result: Inspection = inspect_records(records, settings.classes, rule, checks)
    paths = {r.partition_id: _file_path(r.load) or r.partition_id for r in records}
    for table in (result.manifest, result.quarantine):
        if "partition_id" in table.columns:
            table.insert(2, "path", table["partition_id"].map(paths))
    quarantine = result.quarantine
    if len(quarantine):
        counts = quarantine["reason"].value_counts().to_dict()
        if settings.on_error == "fail":
            examples = quarantine.head(10).to_string(index=False)
            raise DataQualityError(
                f"{len(quarantine)} raw rows failed checks {counts} and on_error is 'fail'. "
                f"First rows:\n{examples}"
            )
        logger.warning("Quarantined %d raw rows: %s", len(quarantine), counts)
    if result.manifest.empty:
        raise DataQualityError("No usable image in the raw layer: check the catalog paths")
    logger.info("Manifest: %d images, classes %s", len(result.manifest), result.classes)
    return result.manifest, result.masks, result.source_boxes, quarantine, result.classes


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def _quality_quantiles(manifest: pd.DataFrame) -> dict:
    """Per quality metric and view: the 0, 5, 50, 95 and 100 % quantiles."""
    levels = (0, 0.05, 0.5, 0.95, 1)
    quantiles = manifest.groupby("view")[list(QUALITY_METRICS)].quantile(list(levels))
    return {
        metric: {
            str(view): {f"q{int(q * 100)}": float(quantiles.loc[(view, q), metric]) for q in levels}
            for view in manifest["view"].unique()
        }
        for metric in QUALITY_METRICS
    }


def summarise_quality(
    manifest: pd.DataFrame, quarantine: pd.DataFrame, classes: list[str], params: dict
) -> dict:
    """Counts per reason, class and view, and quality-metric quantiles per view."""
    labels = manifest[["view", "labels"]].explode("labels").dropna(subset=["labels"])
    by_class_view = labels.groupby(["labels", "view"]).size()
    without_mask = manifest.apply(
        lambda row: sum(not row.get(f"has_mask_{c}", False) for c in row["labels"]), axis=1
    )
    report = {
        "n_images": int(len(manifest)),
        "n_quarantined": int(len(quarantine)),
        "classes": classes,
        "classes_from": "parameters" if parse_block(IngestionParams, params).classes else "data",
        "quarantine_by_reason": _counts(quarantine["reason"]),
        "images_by_view": _counts(manifest["view"]),
        "normal_images": int((manifest["labels"].map(len) == 0).sum()),
        "labels_by_class": _counts(labels["labels"]),
        "labels_by_class_and_view": {
            str(c): {str(v): int(n) for v, n in group.droplevel(0).items()}
            for c, group in by_class_view.groupby(level=0)
        },
        "mask_sources": _counts(manifest["mask_source"]),
        # Pillow's mode of each file, and how deeper pixels were brought to 0-255.
        "images_by_mode": _counts(manifest["mode"]),
        "pixel_scaling": PIXEL_SCALING,
        # Labels kept for classification whose image has no mask pixels for that class.
        "labelled_images_without_mask": int((without_mask > 0).sum()),
        "quality_quantiles_by_view": _quality_quantiles(manifest),
        "geometry": image_geometry(manifest),
    }
    if "class_folder" in manifest.columns:
        report["images_by_class_folder"] = _counts(manifest["class_folder"])
    return report


def plot_quality(manifest: pd.DataFrame, quarantine: pd.DataFrame) -> Figure:
    """Quality-metric distributions per view, labels per class, quarantine reasons."""
    fig = Figure(figsize=(15, 8), layout="tight")
    axes = fig.subplots(2, 3)
    for ax, metric in zip(axes.flat, QUALITY_METRICS, strict=False):
        for view, group in manifest.groupby("view"):
            ax.hist(group[metric], bins=30, alpha=0.5, label=str(view))
        ax.set_title(metric)
        ax.legend(fontsize="small")
    labels = manifest["labels"].explode().dropna().value_counts().sort_index()
    axes.flat[4].bar(labels.index.astype(str), labels.values)
    axes.flat[4].set_title("images per label")
    axes.flat[4].tick_params(axis="x", rotation=45)
    reasons = quarantine["reason"].value_counts()
    axes.flat[5].barh(reasons.index.astype(str), reasons.values)
    axes.flat[5].set_title(f"quarantined: {len(quarantine)}")
    return fig
