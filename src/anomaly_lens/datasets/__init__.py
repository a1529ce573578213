"""Kedro datasets the catalog needs beyond kedro-datasets."""

from anomaly_lens.datasets.binary_dataset import BinaryDataset

__all__ = ["BinaryDataset"]
