"""Crafted raw folders for the ingestion tests, read through the real catalog datasets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro_datasets.partitions import PartitionedDataset
from PIL import Image

from anomaly_lens.ml.data import rle
from anomaly_lens.pipelines.ingestion.nodes import collect_records, inspect_raw_records
from tests.conftest import base_parameters


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def textured(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)


def write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def partitions(path: Path, suffix: str = "") -> dict:
    return PartitionedDataset(
        path=str(path), dataset="anomaly_lens.datasets.BinaryDataset", filename_suffix=suffix
    ).load()


@pytest.fixture
def params() -> dict:
    """The ingestion parameters of conf/base (synthetic layout)."""
    return base_parameters()["ingestion"]


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    """Two good samples, co2 and ch4 each, with one RLE-annotated defect."""
    for i, specimen in enumerate(["S0001", "S0002"]):
        for j, view in enumerate(["co2", "ch4"]):
            write(tmp_path / "images" / view / f"{specimen}_c0.png", encode(textured(10 * i + j)))
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:8, 4:8] = True
    annotations = pd.DataFrame(
        [("co2/S0001_c0.png", "plume", rle.encode(mask))],
        columns=["ImageId", "ClassId", "EncodedPixels"],
    )
    annotations.to_csv(tmp_path / "annotations.csv", index=False)
    return tmp_path


def load_synthetic(root: Path) -> tuple[dict, pd.DataFrame]:
    return partitions(root / "images", ".png"), pd.read_csv(root / "annotations.csv")


def ingest(images, annotations, params):
    records = collect_records(images, annotations, params)
    return inspect_raw_records(records, params)


@pytest.fixture
def class_folder_params(params):
    return {
        **params,
        "layout": "class_folders",
        "normal_class": "Free",
        "filename_pattern": r"MT_(?P<class_folder>[^/]+)/Imgs/(?P<view>exp\d+)_num_(?P<num>\d+)",
    }


def load_folders(root):
    return partitions(root, ".jpg"), partitions(root, ".png")


def voc_xml(*objects: tuple[str, int, int, int, int]) -> str:
    body = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    return f"<annotation><size><width>16</width><height>16</height></size>{body}</annotation>"


@pytest.fixture
def voc_params(params):
    return {**params, "layout": "voc", "filename_pattern": r"(?P<stem>.+)"}


def load_voc(root):
    return partitions(root / "JPEGImages"), partitions(root / "Annotations", ".xml")
