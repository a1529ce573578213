"""The benchmark scripts still fit the library they measure (their timings are not tested)."""

import importlib.util

import numpy as np
import torch

from tests.conftest import PROJECT_ROOT


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_loop_benchmark_builds_its_cache_and_loader():
    script = load_script("train_loop")
    cache = script.synthetic_cache(32, n_specimens=4)
    assert cache.images.shape[1:] == (2, 32, 32) and cache.view_mask.any(1).all()
    batch = next(iter(script.loader(cache, 4)))
    assert batch.images.shape == (4, 2, 1, 32, 32)
    assert np.array_equal(cache.unregistered([0, 1]), [])


def test_inference_benchmark_builds_a_model_that_predicts():
    script = load_script("inference_engines")
    model = script.probability_model("resnet18", 2, 32)
    images, view_mask = torch.rand(2, 2, 1, 32, 32), torch.ones(2, 2, dtype=torch.bool)
    probs, logits = model(images, view_mask)
    assert probs.shape == logits.shape == (2, 4)
    assert script.images_per_second(lambda: None, images=4, repeats=2) > 0


def test_attribution_benchmark_times_a_method():
    script = load_script("attributions")
    scores = script.explained_model("resnet18", 2)
    images, view_mask = torch.rand(3, 2, 1, 32, 32), torch.ones(3, 2, dtype=torch.bool)
    settings = script.AttributionSettings(n_steps=2, batch_size=2)
    took = script.seconds_per_image(
        scores, images, view_mask, torch.tensor([0, 1, 2]), "saliency", settings
    )
    assert took > 0


def test_decoding_benchmark_encodes_each_kind_the_cache_reads():
    script = load_script("decoding")
    for kind in script.KINDS:
        (content,) = script.encoded_images(kind, 32, 1)
        pixels, shape = script.view_pixels(content, 16)
        assert pixels.shape == (16, 16) and shape == (32, 32) and pixels.dtype == np.uint8
        assert pixels.std() > 0, kind  # a 16-bit texture is scaled, not clipped to one value
    assert script.images_per_second(lambda content: None, [b"", b""]) > 0
