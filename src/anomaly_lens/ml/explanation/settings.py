"""The ``xai`` parameter block: what is explained, how, and the ground-truth checks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from anomaly_lens.ml.explanation.attribution import AttributionSettings
from anomaly_lens.ml.training.settings import Settings


class XaiSelection(Settings):
    """Per class, how many explained samples of each kind (``xai.per_class``)."""

    correct: NonNegativeInt = 6
    wrong: NonNegativeInt = 2
    most_confident: NonNegativeInt = 2


class XaiChecks(Settings):
    """Ground-truth checks of the report (``xai.checks``)."""

    view_share_min: float = Field(default=0.7, gt=0.0, le=1.0)
    pointing_game_min: float = Field(default=0.8, gt=0.0, le=1.0)
    large_type_min_area: float = Field(default=0.01, ge=0.0, lt=1.0)


class XaiParams(Settings):
    """The ``xai`` block."""

    split: Literal["val", "test"] = "test"
    per_class: XaiSelection = XaiSelection()
    max_samples: PositiveInt = 40
    head: Literal["auto", "classification", "segmentation"] = "auto"
    attribution: AttributionSettings = AttributionSettings()
    deletion_steps: int = Field(default=20, ge=2, le=20)
    deletion_fill: Literal["zeros", "blur"] = "blur"
    clusters: PositiveInt = 4
    cluster_side: PositiveInt = 8
    overlays: NonNegativeInt = 12
    checks: XaiChecks = XaiChecks()
    seed: int = 42
