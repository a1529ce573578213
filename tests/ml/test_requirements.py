"""The served model's environment: the project and its runtime dependencies, as installed."""

from __future__ import annotations

from importlib.metadata import version

import anomaly_lens
from anomaly_lens.ml.serving.requirements import pinned_requirements


def test_the_served_model_requirements_pin_the_project_and_its_runtime_dependencies():
    pinned = pinned_requirements()
    assert pinned[0] == f"anomaly-lens=={anomaly_lens.__version__}"
    names = {line.split("==")[0].split("[")[0] for line in pinned}
    assert {"torch", "timm", "anomalib", "mlflow"} <= names
    assert f"torch=={version('torch')}" in pinned
    assert not {"pytest", "ruff"} & names  # the dev extra is not the model's
