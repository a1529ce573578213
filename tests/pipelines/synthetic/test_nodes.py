import io

import numpy as np
from PIL import Image

from anomaly_lens.pipelines.synthetic.nodes import generate_raw_dataset


def test_node_writes_png_bytes_and_tables_that_agree():
    images, annotations, objects, metadata = generate_raw_dataset(
        {"n_specimens": 3, "image_size": 40, "seed": 1}
    )
    assert len(images) == metadata["n_images"]
    assert set(annotations["ImageId"]) <= {f"{k}.png" for k in images}
    assert len(objects) == len(annotations)
    pixels = np.asarray(Image.open(io.BytesIO(images["co2/S0001_c0"])))
    assert pixels.shape == (40, 40) and pixels.dtype == np.uint8
    assert metadata["visible_in_views"]["hotspot"] == ["ch4"]
