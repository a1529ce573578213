"""Nodes of the ``synthetic`` pipeline."""

from __future__ import annotations

import logging

import pandas as pd

from anomaly_lens.ml.data import imaging, synthetic
from anomaly_lens.parameters import SyntheticParams, parse_block

logger = logging.getLogger(__name__)


def generate_raw_dataset(
    params: dict,
) -> tuple[dict[str, bytes], pd.DataFrame, pd.DataFrame, dict]:
    """Render the synthetic dataset in the raw formats a user would bring.

    Returns PNG bytes per image id (``<view>/<specimen>_<condition>``), the RLE annotation
    table, the generator's ground-truth object boxes and the dataset's metadata.
    """
    data = synthetic.generate(parse_block(SyntheticParams, params).to_config())
    logger.info(
        "Synthetic dataset: %d samples, %d images, %d annotated objects",
        data.metadata["n_samples"],
        data.metadata["n_images"],
        len(data.objects),
    )
    images = {image_id: imaging.encode_png(pixels) for image_id, pixels in data.images.items()}
    return images, data.annotations, data.objects, data.metadata
