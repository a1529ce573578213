"""A user's data, read through any dataset and never written to."""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError


class ReadOnlyDatasetError(DatasetError):
    """Raised when anything tries to save to a user's data."""


class ReadOnlyDataset(AbstractDataset[Any, Any]):
    """Loads through the wrapped dataset; ``save`` always raises.

    Every catalog entry that points at a user's folder or file is one of these, so no
    pipeline, notebook or plugin can write into the user's data, whatever is run::

        raw_images:
          type: anomaly_lens.datasets.ReadOnlyDataset
          dataset:
            type: partitions.PartitionedDataset
            path: ${runtime_params:raw_dir}
            dataset: anomaly_lens.datasets.BinaryDataset

    ``optional: true`` loads None where the wrapped dataset does not exist.

    The catalog entry's name is filled in by ``anomaly_lens.hooks`` so that the error
    names it; the wrapped dataset's description names the place.
    """

    def __init__(
        self,
        dataset: dict[str, Any] | str,
        optional: bool = False,
        metadata: dict[str, Any] | None = None,
    ):
        config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        self._dataset = AbstractDataset.from_config("read-only source", config)
        self._optional = optional
        self.entry_name: str | None = None
        self.metadata = metadata

    def load(self) -> Any:
        """The wrapped dataset's data; None for an ``optional`` one that does not exist
        (e.g. the labels of a folder of new images)."""
        if self._optional and not self._dataset.exists():
            return None
        return self._dataset.load()

    def save(self, data: Any) -> None:
        entry = f"'{self.entry_name}'" if self.entry_name else "this entry"
        raise ReadOnlyDatasetError(
            f"Catalog entry {entry} is read-only: it is your own data "
            f"({self._dataset}), which the project never writes to. Outputs go to "
            "data/<layer>/<dataset>; generated demo data has its own entries (demo_*)."
        )

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _describe(self) -> dict[str, Any]:
        return {"read_only": True, "dataset": self._dataset._describe()}  # noqa: SLF001
