"""An artefact that later steps use where it exists: loads None until it is first saved."""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset


class OptionalDataset(AbstractDataset[Any, Any]):
    """Saves through the wrapped dataset; ``load`` gives None where nothing was saved yet.

    The served model reads the model's calibrator and OOD detector through these: in
    ``kedro run`` it runs after ``calibration`` and ``ood`` (it reads their outputs), and
    with ``--pipelines=train`` alone it finds the newest ones or none::

        calibrator:
          type: anomaly_lens.datasets.OptionalDataset
          dataset:
            type: json.JSONDataset
            filepath: data/06_models/calibrator.json
            versioned: true
    """

    def __init__(self, dataset: dict[str, Any], metadata: dict[str, Any] | None = None):
        self._dataset = AbstractDataset.from_config("optional artefact", dict(dataset))
        self.metadata = metadata

    def load(self) -> Any:
        return self._dataset.load() if self._dataset.exists() else None

    def save(self, data: Any) -> None:
        self._dataset.save(data)

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _describe(self) -> dict[str, Any]:
        return {"optional": True, "dataset": self._dataset._describe()}  # noqa: SLF001
