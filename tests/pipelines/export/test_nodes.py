"""ONNX export: parity with PyTorch for a fused and a per-view model, refusal on mismatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_lens.ml.fitting import load_model
from anomaly_lens.ml.inference import ProbabilityModel, onnx_probabilities, onnx_session
from anomaly_lens.pipelines.export.nodes import ExportParityError, export_model
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, params, prepared  # noqa: F401 (fixture)


@pytest.fixture(scope="module", params=[False, True], ids=["fused", "per_view"])
def trained(request, prepared, tmp_path_factory):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path_factory.mktemp("ckpt"), cbam_stages=[])
    p["per_view"] = request.param
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    return bundle, cache, splits


def test_onnx_probabilities_match_pytorch(trained):
    bundle, cache, splits = trained
    onnx_model, report = export_model(bundle, None, cache, splits, base_parameters()["export"])
    assert report["max_abs_diff"] <= 1e-4 and report["n_checked"] > 0
    assert report["inputs"]["images"][1] == (1 if bundle["per_view"] else len(VIEWS))
    # Another batch size and another image size than the export's example batch.
    images = torch.rand(3, report["inputs"]["images"][1], 1, 50, 40)
    view_mask = torch.ones(images.shape[:2], dtype=torch.bool)
    expected = ProbabilityModel(load_model(bundle), bundle["image_size"])(images, view_mask)
    found = onnx_probabilities(onnx_session(onnx_model), images.numpy(), view_mask.numpy())
    assert np.abs(found - expected.detach().numpy()).max() <= 1e-4


def test_a_parity_failure_stops_the_export(trained):
    bundle, cache, splits = trained
    with pytest.raises(ExportParityError, match="differ by"):
        export_model(
            bundle, None, cache, splits, {**base_parameters()["export"], "tolerance": 1e-12}
        )
