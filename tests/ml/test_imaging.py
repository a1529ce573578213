import io

import numpy as np
import pytest
from PIL import Image

from anomaly_lens.ml.data import imaging
from anomaly_lens.ml.data.cache import view_pixels


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_reports_mode_and_size():
    decoded = imaging.decode_image(png(np.full((5, 7), 9, dtype=np.uint8)))
    assert (decoded.width, decoded.height, decoded.mode) == (7, 5, "L")


def test_zero_byte_file():
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.decode_image(b"")
    assert err.value.reason == "zero_byte"


def test_not_an_image():
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.decode_image(b"this is a text file, not a PNG")
    assert err.value.reason == "unreadable"


def test_truncated_image():
    content = png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.decode_image(content[: len(content) // 2])
    assert err.value.reason == "truncated"


def test_quality_metrics_separate_sharp_from_flat():
    flat = imaging.quality_metrics(np.full((32, 32), 100, dtype=np.uint8))
    checker = imaging.quality_metrics((np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8))
    assert flat == {"sharpness": 0.0, "brightness": 100.0, "contrast": 0.0, "resolution": 1024.0}
    assert checker["sharpness"] > 1000
    assert checker["contrast"] == pytest.approx(127.5)


def test_soft_mask_edges_are_binarised_at_the_threshold():
    values = np.array([[0, 20, 127], [128, 200, 255]], dtype=np.uint8)
    mask = imaging.binarize_mask(png(values), 2, 3)
    assert mask.tolist() == [[False, False, False], [True, True, True]]


def test_strict_rule_rejects_soft_masks():
    values = np.array([[0, 20], [255, 255]], dtype=np.uint8)
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.binarize_mask(png(values), 2, 2, strict=True)
    assert err.value.reason == "mask_values"
    assert imaging.binarize_mask(png(np.array([[0, 255]], dtype=np.uint8)), 1, 2, strict=True).any()


def test_faint_mask_without_foreground_is_rejected():
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.binarize_mask(png(np.array([[0, 40]], dtype=np.uint8)), 1, 2)
    assert err.value.reason == "mask_values"


def test_colour_mask_is_rejected():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.binarize_mask(png(rgb), 2, 2)
    assert err.value.reason == "mask_values"


def test_mask_of_another_size_is_rejected():
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.binarize_mask(png(np.zeros((4, 4), dtype=np.uint8)), 4, 5)
    assert err.value.reason == "mask_size_mismatch"


def test_unreadable_mask_has_a_mask_reason():
    with pytest.raises(imaging.ImageProblem) as err:
        imaging.binarize_mask(b"", 4, 4)
    assert err.value.reason == "mask_zero_byte"


def test_difference_hash_is_robust_to_small_changes_and_separates_unrelated_images():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    brighter = np.clip(base.astype(int) + 10, 0, 255).astype(np.uint8)
    other = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    hashes = [imaging.difference_hash(x) for x in (base, brighter, other)]
    assert len(hashes[0]) == 64  # 256 bits as hex
    assert imaging.hamming_pairs(hashes, max_bits=12) == [(0, 1)]
    assert imaging.hamming_pairs(hashes, max_bits=256, chunk=1) == [(0, 1), (0, 2), (1, 2)]
    assert imaging.hamming_pairs([], 5) == []


def test_a_16_bit_ramp_reaches_the_model_input_in_order_and_unclipped():
    """Pillow's own conversion clips 16-bit values above 255 (99.6 % of this ramp would be
    white); scaled by the bit depth the ramp keeps its order and its range."""
    ramp = np.linspace(0, 65535, 64 * 256).round().astype(np.uint16).reshape(64, 256)
    decoded = imaging.decode_image(png(ramp))
    assert decoded.mode.startswith("I;16")
    assert decoded.pixels.dtype == np.uint8
    assert (np.diff(decoded.pixels.ravel().astype(int)) >= 0).all()  # in order
    assert decoded.pixels.min() == 0 and decoded.pixels.max() == 255
    assert (decoded.pixels == 255).mean() < 0.01  # not saturated
    model_input, _ = view_pixels(png(ramp), 64)
    columns = model_input.astype(int).mean(0)
    assert (np.diff(columns) >= 0).all() and model_input.max() > model_input.min() + 200
    assert (model_input == 255).mean() < 0.05


def test_float_and_32_bit_pixels_are_scaled_or_refused_with_their_range():
    floats = Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), mode="F")
    buffer = io.BytesIO()
    floats.save(buffer, format="TIFF")
    decoded = imaging.decode_image(buffer.getvalue())
    assert decoded.pixels.min() == 0 and decoded.pixels.max() == 255
    wide = Image.fromarray(np.full((4, 4), 2.5, dtype=np.float32), mode="F")
    buffer = io.BytesIO()
    wide.save(buffer, format="TIFF")
    with pytest.raises(imaging.ImageProblem, match=r"float pixels in \[2.5, 2.5\], not 0-1"):
        imaging.decode_image(buffer.getvalue())
