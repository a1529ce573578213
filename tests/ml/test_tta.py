"""Test-time augmentation: the orientations, and predictions averaged over them."""

from __future__ import annotations

import pytest
import torch

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.evaluation.predictions import predict
from anomaly_lens.ml.evaluation.tta import orientations
from anomaly_lens.ml.models import ModelConfig, create_model
from anomaly_lens.ml.training.settings import TrainSettings


@pytest.mark.parametrize(("mode", "count"), [("none", 1), ("hflip", 2), ("d4", 8)])
def test_each_mode_reads_distinct_orientations_and_undoes_them(mode, count):
    image = torch.arange(16.0).reshape(1, 4, 4)  # no two orientations of it are equal
    turned = [turn.apply(image) for turn in orientations(mode)]
    assert len({tuple(t.flatten().tolist()) for t in turned}) == count
    assert torch.equal(turned[0], image)
    for turn, view in zip(orientations(mode), turned, strict=True):
        assert torch.equal(turn.undo(view), image)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="d4"):
        orientations("rot90")


def test_true_and_false_still_mean_mirror_and_nothing():
    assert TrainSettings(tta=True).tta == "hflip"
    assert TrainSettings(tta=False).tta == "none"
    with pytest.raises(ValueError, match="hflip"):
        TrainSettings(tta="flip")


def _multitask_model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        num_classes=3, views=["co2", "ch4"], backbone="resnet18", task="multitask",
        decoder_channels=16, fusion="late", fusion_options={"shared_encoder": True},
    )  # fmt: skip
    return create_model(config).eval()


def _batch(images: torch.Tensor) -> Batch:
    return Batch(images, torch.ones(images.shape[:2], dtype=torch.bool), torch.zeros(2, 3))


@pytest.mark.parametrize("turn", [1, 2, 3])
def test_eight_orientations_make_classes_invariant_and_masks_follow_the_turn(turn):
    model = _multitask_model()
    images = torch.randn(2, 2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    turned = torch.rot90(images, turn, dims=(-2, -1))
    upright = predict(model, [_batch(images)], "d4")
    rotated = predict(model, [_batch(turned)], "d4")
    torch.testing.assert_close(rotated.probs, upright.probs)
    torch.testing.assert_close(rotated.seg_probs, torch.rot90(upright.seg_probs, turn, (-2, -1)))
    # the mirror alone is not enough: an untrained network reads a turned image otherwise
    mirrored = predict(model, [_batch(images)], "hflip"), predict(model, [_batch(turned)], "hflip")
    assert not torch.allclose(mirrored[0].probs, mirrored[1].probs)


def test_predictions_average_the_logits_of_the_orientations():
    model = _multitask_model()
    images = torch.randn(2, 2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    found = predict(model, [_batch(images)], "d4")
    present = _batch(images).view_mask
    with torch.no_grad():
        outputs = [model(turn.apply(images), present) for turn in orientations("d4")]
    mean_logits = torch.stack([out.logits for out in outputs]).mean(0)
    torch.testing.assert_close(found.probs, torch.sigmoid(mean_logits))
    torch.testing.assert_close(found.logits, outputs[0].logits)  # the upright view's own
