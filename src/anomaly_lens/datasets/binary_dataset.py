"""A file's raw bytes, on any fsspec filesystem, optionally versioned."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    Version,
    VersionNotFoundError,
    get_filepath_str,
    get_protocol_and_path,
)


class BinaryDataset(AbstractVersionedDataset[bytes, bytes]):
    """Loads and saves a file as bytes, so nodes decide how to decode it.

    Used under ``partitions.PartitionedDataset`` for raw images (a file that fails to
    decode becomes a quarantine row in the node instead of an error inside the catalog),
    and, ``versioned: true``, for exported files such as the ONNX model.
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        fs_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    @property
    def filepath(self) -> str:
        """Where the file lives, as the catalog resolved it (unversioned path)."""
        return get_filepath_str(self._filepath, self._protocol)

    def load(self) -> bytes:
        with self._fs.open(get_filepath_str(self._get_load_path(), self._protocol), "rb") as file:
            return file.read()

    def save(self, data: bytes) -> None:
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
        with self._fs.open(path, "wb") as file:
            file.write(data)

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
