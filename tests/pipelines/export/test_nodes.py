"""ONNX export: parity with PyTorch for a fused and a per-view model, refusal on mismatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from anomaly_lens.ml.evaluation.tta import orientations
from anomaly_lens.ml.models.bundle import load_model
from anomaly_lens.ml.serving.onnx_graph import (
    ProbabilityModel,
    averaged_onnx_probabilities,
    export_onnx,
    onnx_probabilities,
    onnx_session,
)
from anomaly_lens.ml.training.module import probabilities
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


@pytest.fixture(scope="module")
def exported(trained):
    """The trained model exported once: (ONNX bytes, export report)."""
    bundle, cache, splits = trained
    return export_model(bundle, None, cache, splits, base_parameters()["export"])


def test_onnx_probabilities_match_pytorch(trained, exported):
    bundle, _, _ = trained
    onnx_model, report = exported
    assert report["max_abs_diff"] <= 1e-4 and report["n_checked"] > 0
    assert report["inputs"]["images"][1] == (1 if bundle.per_view else len(VIEWS))
    # Another batch size and another image size than the export's example batch.
    images = torch.rand(3, report["inputs"]["images"][1], 1, 50, 40)
    view_mask = torch.ones(images.shape[:2], dtype=torch.bool)
    expected, _ = ProbabilityModel(load_model(bundle), bundle.image_size)(images, view_mask)
    found = onnx_probabilities(onnx_session(onnx_model), images.numpy(), view_mask.numpy())
    assert np.abs(found - expected.detach().numpy()).max() <= 1e-4


@pytest.fixture(scope="module")
def sharpened(trained):
    """A session of the trained model exported with temperature 0.02: confident outputs,
    where averaging probabilities instead of logits shows."""
    bundle, _, _ = trained
    wrapped = ProbabilityModel(load_model(bundle), bundle.image_size, 0.02)
    images = torch.rand(2, 1 if bundle.per_view else len(VIEWS), 1, 32, 32)
    view_mask = torch.ones(images.shape[:2], dtype=torch.bool)
    return onnx_session(export_onnx(wrapped, images, view_mask))


@pytest.mark.parametrize("tta", ["none", "hflip", "d4"])
def test_both_engines_average_the_same_logits_over_orientations(trained, sharpened, tta):
    """onnxruntime averages the logits of the orientations as ``predict`` (the PyTorch
    engine) does, so both give the same probabilities."""
    bundle, _, _ = trained
    size, n_views = bundle.image_size, 1 if bundle.per_view else len(VIEWS)
    seeded = torch.Generator().manual_seed(0)
    images = torch.rand(4, n_views, 1, size, size, generator=seeded)
    view_mask = torch.ones(images.shape[:2], dtype=torch.bool)
    network = load_model(bundle)
    with torch.no_grad():
        logits = [network(t.apply(images), view_mask).logits for t in orientations(tta)]
    expected = probabilities(torch.stack(logits).mean(0) / 0.02, bundle.label_type).numpy()
    found = averaged_onnx_probabilities(sharpened, images, view_mask, tta, bundle.label_type)
    assert np.abs(found - expected).max() <= 1e-4
    if tta == "d4":  # a quarter-turned input is predicted as the upright one
        turned = torch.rot90(images, 1, dims=(-2, -1))
        rotated = averaged_onnx_probabilities(sharpened, turned, view_mask, tta, bundle.label_type)
        assert np.abs(rotated - found).max() <= 1e-4


def test_a_parity_failure_stops_the_export(trained):
    bundle, cache, splits = trained
    with pytest.raises(ExportParityError, match="differ by"):
        export_model(
            bundle, None, cache, splits, {**base_parameters()["export"], "tolerance": 1e-12}
        )


def test_a_graph_exported_without_logits_is_refused():
    """Graphs exported before the logits were an output cannot average them: export again."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, None)
    view_mask = helper.make_tensor_value_info("view_mask", TensorProto.BOOL, None)
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None)
    node = helper.make_node("Identity", ["images"], ["probabilities"])
    graph = helper.make_graph([node], "probabilities only", [images, view_mask], [output])
    session = onnx_session(helper.make_model(graph).SerializeToString())
    with pytest.raises(ValueError, match="no logits output.*export` again"):
        averaged_onnx_probabilities(
            session, torch.rand(1, 1, 1, 8, 8), torch.ones(1, 1, dtype=torch.bool), "none", "x"
        )
