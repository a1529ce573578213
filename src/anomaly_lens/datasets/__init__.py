"""Kedro datasets the catalog needs beyond kedro-datasets."""

from anomaly_lens.datasets.binary_dataset import BinaryDataset
from anomaly_lens.datasets.optional_dataset import OptionalDataset
from anomaly_lens.datasets.read_only_dataset import ReadOnlyDataset, ReadOnlyDatasetError
from anomaly_lens.datasets.torch_model_dataset import TorchModelDataset

__all__ = [
    "BinaryDataset",
    "OptionalDataset",
    "ReadOnlyDataset",
    "ReadOnlyDatasetError",
    "TorchModelDataset",
]
