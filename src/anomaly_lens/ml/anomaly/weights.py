"""anomalib's feature extractors build timm backbones by name; here they get the ImageNet
weights of an installed package instead of a download."""

from __future__ import annotations

import torch

from anomaly_lens.ml.models.pretrained import package_state_dict


def load_package_weights(model: torch.nn.Module, backbone: str) -> torch.nn.Module:
    """Load ``backbone``'s package weights into an anomalib model's ``feature_extractor``;
    every tensor the extractor has must be found (the classifier head is not used)."""
    extractor = model.feature_extractor.feature_extractor
    result = extractor.load_state_dict(package_state_dict(backbone), strict=False)
    if result.missing_keys:
        raise RuntimeError(f"{backbone} package weights lack {result.missing_keys[:5]}")
    return model
