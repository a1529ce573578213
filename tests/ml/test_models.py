"""Every model variant: forward and backward on tiny inputs, with and without missing views."""

from __future__ import annotations

import itertools

import pytest
import timm
import torch

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.models import FUSIONS, ModelConfig, create_model

VIEWS = ["co2", "ch4"]
FUSION_OPTIONS = {
    "early": {},
    "late": {"shared_encoder": True, "pooling": "mean"},
    "cross_attention": {"shared_encoder": True},
    "multiscale": {"shared_encoder": True},
}


def tiny(**overrides) -> ModelConfig:
    config = {"num_classes": 3, "views": VIEWS, "backbone": "resnet18", "decoder_channels": 16}
    return ModelConfig(**{**config, **overrides})


def inputs(batch=2, views=2, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, views, 1, size, size, generator=generator)
    view_mask = torch.ones(batch, views, dtype=torch.bool)
    if views > 1:  # the first sample misses its second view
        view_mask[0, 1] = False
        images[0, 1] = 0
    return images, view_mask


def test_all_fusions_are_registered():
    assert set(FUSIONS) == set(FUSION_OPTIONS)


@pytest.mark.parametrize(
    ("fusion", "task"),
    list(itertools.product(FUSION_OPTIONS, ["classification", "segmentation", "multitask"])),
)
def test_forward_backward(fusion, task):
    model = create_model(tiny(fusion=fusion, task=task, fusion_options=FUSION_OPTIONS[fusion]))
    images, view_mask = inputs()
    out = model(images, view_mask)
    loss = torch.zeros(())
    if task != "segmentation":
        assert out.logits.shape == (2, 3)
        loss = loss + out.logits.sum()
    if task != "classification":
        assert out.seg_logits.shape == (2, 3, 32, 32)
        loss = loss + out.seg_logits.mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


def test_multiclass_masks_have_no_normal_channel():
    model = create_model(tiny(task="multitask", label_type="multiclass"))
    out = model(*inputs())
    assert out.logits.shape == (2, 3) and out.seg_logits.shape == (2, 2, 32, 32)


@pytest.mark.parametrize("fusion", list(FUSION_OPTIONS))
def test_missing_view_pixels_cannot_change_the_output(fusion):
    model = create_model(
        tiny(fusion=fusion, task="multitask", fusion_options=FUSION_OPTIONS[fusion])
    ).eval()
    images, view_mask = inputs()
    garbage = images.clone()
    garbage[0, 1] = torch.randn_like(garbage[0, 1]) * 100
    with torch.no_grad():
        a, b = model(images, view_mask), model(garbage, view_mask)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert torch.allclose(a.seg_logits, b.seg_logits, atol=1e-5)


@pytest.mark.parametrize("fusion", ["late", "cross_attention", "multiscale"])
def test_separate_encoders_per_view(fusion):
    options = {**FUSION_OPTIONS[fusion], "shared_encoder": False}
    shared = create_model(tiny(fusion=fusion, fusion_options=FUSION_OPTIONS[fusion]))
    separate = create_model(tiny(fusion=fusion, fusion_options=options))
    assert sum(p.numel() for p in separate.parameters()) > sum(
        p.numel() for p in shared.parameters()
    )
    images, view_mask = inputs()
    separate(images, view_mask).logits.sum().backward()


def test_late_fusion_by_concatenation():
    model = create_model(tiny(fusion="late", fusion_options={"pooling": "concat"}))
    images, view_mask = inputs()
    assert model(images, view_mask).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="pooling"):
        create_model(tiny(fusion="late", fusion_options={"pooling": "max"}))


def test_cross_attention_weights_are_retrievable_and_skip_missing_views():
    model = create_model(tiny(fusion="cross_attention")).eval()
    images, view_mask = inputs()
    out = model(images, view_mask)
    tokens = out.attention.shape[-1]
    assert out.attention.shape[0] == 2 and out.attention.shape[-2] == tokens
    half = tokens // 2  # tokens of view 1 come second
    assert torch.all(out.attention[0, :, :, half:] == 0)  # sample 0 has no second view
    assert torch.allclose(out.attention.sum(-1), torch.ones(()), atol=1e-5)


def test_single_view_is_the_one_view_case():
    model = create_model(tiny(views=["co2"], fusion="late"))
    images, view_mask = inputs(views=1)
    assert model(images, view_mask).logits.shape == (2, 3)


@pytest.mark.parametrize(
    "backbone",
    [
        "resnet18",
        "resnet50",
        "efficientnet_b0",
        "mobilenetv3_small_100",
        "convnext_atto",
        "convnext_tiny",
    ],
)
def test_backbones(backbone):
    model = create_model(
        tiny(backbone=backbone, task="multitask", fusion="late", segmentation_head="deeplabv3plus")
    )
    images, view_mask = inputs()
    out = model(images, view_mask)
    assert out.logits.shape == (2, 3) and out.seg_logits.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto"])
def test_cbam_sits_inside_the_chain(backbone):
    encoder = create_model(
        tiny(backbone=backbone, views=["co2"], cbam_stages=[-2])
    ).fusion.views.encoders[0]
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = encoder(images)
        torch.nn.init.zeros_(encoder.attention[str(len(before) - 2)].spatial.bias)
        torch.nn.init.constant_(encoder.attention[str(len(before) - 2)].spatial.weight, -50.0)
        after = encoder(images)  # attention now mutes stage -2 ...
    assert not torch.allclose(before[-2], after[-2])
    assert not torch.allclose(before[-1], after[-1])  # ... and the last stage sees it
    assert torch.allclose(before[0], after[0])


def test_encode_returns_the_fused_pyramid_and_cbam_is_where_asked():
    model = create_model(tiny(fusion="late", cbam_stages=[-1]))
    images, view_mask = inputs()
    pyramid = model.encode(images, view_mask)
    assert [f.shape[1] for f in pyramid] == [64, 64, 128, 256, 512]
    encoder = model.fusion.views.encoders[0]
    assert list(encoder.attention) == ["4"]
    assert list(create_model(tiny(cbam_stages=[])).fusion.views.encoders[0].attention) == []


def test_batch_contract_and_predict():
    images, view_mask = inputs()
    batch = Batch(images, view_mask, labels=torch.zeros(2, 3), sample_ids=["a", "b"])
    out = create_model(tiny()).predict_batch(batch.to("cpu"))
    assert out.logits.shape == (2, 3) and batch.size == 2
    with pytest.raises(ValueError, match="B, V, C, H, W"):
        Batch(images[:, 0], view_mask)


def test_unknown_names_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        create_model(tiny(fusion="sum"))
    with pytest.raises(ValueError, match="unknown segmentation head"):
        create_model(tiny(segmentation_head="unet3"))
    with pytest.raises(ValueError, match="task"):
        create_model(tiny(task="detection"))
    with pytest.raises(FileNotFoundError):
        create_model(tiny(weights_path=str(tmp_path / "missing.pth")))


def test_local_weights_file_is_loaded(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    torch.nn.init.constant_(source.conv1.weight, 0.01)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = create_model(tiny(views=["co2"], weights_path=str(tmp_path / "resnet18.pth")))
    conv1 = model.fusion.views.encoders[0].backbone.conv1.weight
    assert conv1.shape[1] == 1  # adapted to one input channel
    assert torch.allclose(conv1, torch.full_like(conv1, 0.03), atol=1e-6)  # 3 RGB channels summed


def test_switching_only_the_fusion_keeps_a_valid_config():
    """The base config's fusion_options ({shared_encoder: true}) hold for every fusion."""
    for fusion in ("early", "late", "cross_attention", "multiscale"):
        config = ModelConfig(
            num_classes=2,
            views=["co2", "ch4"],
            fusion=fusion,
            fusion_options={"shared_encoder": True},
            cbam_stages=[],
        )
        images = torch.rand(2, 2, 1, 32, 32)
        output = create_model(config)(images, torch.ones(2, 2, dtype=torch.bool))
        assert output.logits.shape == (2, 2)
