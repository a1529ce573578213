"""A file's raw bytes, on any fsspec filesystem."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, get_filepath_str, get_protocol_and_path


class BinaryDataset(AbstractDataset[bytes, bytes]):
    """Loads and saves a file as bytes, so nodes decide how to decode it.

    Used under ``partitions.PartitionedDataset`` for raw images: a file that fails to
    decode becomes a quarantine row in the node instead of an error inside the catalog.
    """

    def __init__(
        self,
        filepath: str,
        fs_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self.metadata = metadata

    @property
    def filepath(self) -> str:
        """Where the file lives, as the catalog resolved it."""
        return get_filepath_str(self._filepath, self._protocol)

    def load(self) -> bytes:
        with self._fs.open(get_filepath_str(self._filepath, self._protocol), "rb") as file:
            return file.read()

    def save(self, data: bytes) -> None:
        path = get_filepath_str(self._filepath, self._protocol)
        self._fs.makedirs(str(self._filepath.parent), exist_ok=True)
        with self._fs.open(path, "wb") as file:
            file.write(data)

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, self._protocol))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol}
