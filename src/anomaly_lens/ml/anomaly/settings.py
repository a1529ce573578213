"""The ``anomaly`` block as typed settings: what the library's fitting takes. No Kedro."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from anomaly_lens.ml.anomaly import METHODS
from anomaly_lens.ml.anomaly.evaluation import THRESHOLD_RULES
from anomaly_lens.ml.models.pretrained import WEIGHT_PACKAGES
from anomaly_lens.ml.training.settings import Settings


class AnomalyParams(Settings):
    """The ``anomaly`` block: a detector learnt from the normal train images only."""

    method: Literal[METHODS] = "patchcore"
    backbone: Literal[tuple(WEIGHT_PACKAGES)] = "tf_efficientnet_lite0"
    layers: list[str] = Field(default=["blocks.2", "blocks.4"], min_length=1)
    max_train_images: PositiveInt = 200
    coreset_ratio: float = Field(default=0.01, gt=0.0, le=1.0)
    neighbours: PositiveInt = 9
    padim_features: PositiveInt = 100
    threshold: Literal[THRESHOLD_RULES] = "auto"
    normal_kept: float = Field(default=0.99, gt=0.5, lt=1.0)
    bootstrap_rounds: PositiveInt = 200
    aupro_fpr_limit: float = Field(default=0.3, gt=0.0, le=1.0)
    batch_size: PositiveInt = 32
    seed: int = 42
