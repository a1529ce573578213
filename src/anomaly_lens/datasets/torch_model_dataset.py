"""A trained model as one versioned file: weights plus what rebuilds it."""

from __future__ import annotations

from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import torch
from kedro.io.core import (
    AbstractVersionedDataset,
    Version,
    VersionNotFoundError,
    get_filepath_str,
    get_protocol_and_path,
)

from anomaly_lens.ml.models.bundle import ModelBundle


class TorchModelDataset(AbstractVersionedDataset[ModelBundle, ModelBundle]):
    """Saves a ``ModelBundle`` as the mapping of its fields with ``torch.save``; loads it on
    the CPU with ``weights_only=True`` (no pickled code runs) into a ``ModelBundle``, with
    the defaults of the fields that bundles saved by older versions lack."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(fs_args or {}))
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def load(self) -> ModelBundle:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, "rb") as file:
            return ModelBundle.from_saved(torch.load(file, map_location="cpu", weights_only=True))

    def save(self, data: ModelBundle) -> None:
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
        with self._fs.open(path, "wb") as file:
            torch.save(deepcopy(data.to_saved()), file)

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except VersionNotFoundError:  # no version saved yet; any other error is raised
            return False
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "protocol": self._protocol,
            "version": self._version,
        }
