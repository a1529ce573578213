"""The project's versioned datasets say "missing" only when no version was saved: any other
failure (a permission error, an unreachable store) is raised, never read as "missing"."""

from __future__ import annotations

import pytest
from kedro.io.core import DatasetError, Version

from anomaly_lens.datasets import BinaryDataset, TorchModelDataset


@pytest.mark.parametrize("kind", [BinaryDataset, TorchModelDataset])
def test_exists_is_false_only_without_a_version(kind, tmp_path, monkeypatch):
    dataset = kind(filepath=str(tmp_path / "artefact"), version=Version(None, None))
    assert dataset.exists() is False  # nothing saved yet

    def refused(self):
        raise PermissionError("permission denied: artefact")

    monkeypatch.setattr(kind, "_get_load_path", refused)
    with pytest.raises(DatasetError, match="permission denied"):
        dataset.exists()
