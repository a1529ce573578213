"""Model zoo: timm encoders, multi-view fusion, heads; one ``create_model`` for all."""

from anomaly_lens.ml.models.fusion import FUSIONS, register_fusion
from anomaly_lens.ml.models.heads import SEGMENTATION_HEADS, register_segmentation_head
from anomaly_lens.ml.models.model import (
    MODELS,
    AnomalyModel,
    ModelConfig,
    ModelOutput,
    create_model,
    load_matching_weights,
    register_model,
)

__all__ = [
    "FUSIONS",
    "MODELS",
    "SEGMENTATION_HEADS",
    "AnomalyModel",
    "ModelConfig",
    "ModelOutput",
    "create_model",
    "load_matching_weights",
    "register_fusion",
    "register_model",
    "register_segmentation_head",
]
