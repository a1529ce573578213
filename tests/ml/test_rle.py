import numpy as np
import pytest

from anomaly_lens.ml.data import rle


def test_encode_is_one_based_and_column_major():
    mask = np.zeros((3, 3), dtype=bool)
    mask[:, 1] = True  # middle column: pixels 4, 5, 6 counted down the columns
    assert rle.encode(mask) == "4 3"
    mask = np.zeros((3, 3), dtype=bool)
    mask[0, :] = True  # top row: pixels 1, 4, 7
    assert rle.encode(mask) == "1 1 4 1 7 1"


def test_round_trip_on_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (64, 48)]:
        mask = rng.random(shape) > 0.6
        assert np.array_equal(rle.decode(rle.encode(mask), *shape), mask)


def test_empty_encodings_decode_to_empty_masks():
    assert rle.encode(np.zeros((4, 4), dtype=bool)) == ""
    assert not rle.decode("", 4, 4).any()
    assert not rle.decode(float("nan"), 4, 4).any()


@pytest.mark.parametrize(
    ("encoded", "message"),
    [("1 2 3", "odd number"), ("1 x", "non-integer"), ("0 2", ">= 1"), ("15 3", "outside")],
)
def test_bad_encodings_are_rejected(encoded, message):
    with pytest.raises(rle.RLEError, match=message):
        rle.decode(encoded, 4, 4)
