import numpy as np
import pytest

from anomaly_lens.ml.data import rle, synthetic

DEFAULT = synthetic.SyntheticConfig()


@pytest.fixture(scope="module")
def default_data() -> synthetic.SyntheticDataset:
    return synthetic.generate(DEFAULT)


def sample_labels(data):
    """Sample key -> set of classes annotated in any view."""
    labels: dict[str, set[str]] = {}
    for image_id, cls in zip(data.annotations["ImageId"], data.annotations["ClassId"], strict=True):
        labels.setdefault(image_id.split("/", 1)[1], set()).add(cls)
    return labels


def test_same_seed_same_pixels_other_seed_other_pixels():
    small = synthetic.SyntheticConfig(n_specimens=3)
    first, second = synthetic.generate(small), synthetic.generate(small)
    other = synthetic.generate(synthetic.SyntheticConfig(n_specimens=3, seed=7))
    assert first.images.keys() == second.images.keys()
    assert all(np.array_equal(first.images[k], second.images[k]) for k in first.images)
    assert first.annotations.equals(second.annotations)
    shared = first.images.keys() & other.images.keys()
    assert any(not np.array_equal(first.images[k], other.images[k]) for k in shared)


def test_default_size_and_fractions(default_data):
    n_samples = DEFAULT.n_specimens * len(DEFAULT.conditions)
    assert default_data.metadata["n_samples"] == n_samples == 600
    labels = sample_labels(default_data)
    normal = 1 - len(labels) / n_samples
    rare = sum("crack" in s for s in labels.values()) / n_samples
    missing = (2 * n_samples - len(default_data.images)) / n_samples  # samples lacking a view
    assert 0.34 <= normal <= 0.46
    assert 0.015 <= rare <= 0.05
    assert 0.03 <= missing <= 0.07
    assert max(len(s) for s in labels.values()) <= 3


def test_each_type_is_annotated_only_in_its_views(default_data):
    views = (
        default_data.annotations.assign(
            view=default_data.annotations["ImageId"].str.split("/").str[0]
        )
        .groupby("ClassId")["view"]
        .unique()
    )
    assert set(views["plume"]) == {"co2"}
    assert set(views["hotspot"]) == {"ch4"}
    assert set(views["streak"]) == set(views["crack"]) == {"co2", "ch4"}
    assert default_data.metadata["visible_in_views"]["plume"] == ["co2"]


def test_backgrounds_are_textured_and_differ_per_view(default_data):
    co2, ch4 = default_data.images["co2/S0001_c0"], default_data.images["ch4/S0001_c0"]
    assert co2.shape == ch4.shape == (128, 128) and co2.dtype == np.uint8
    for image in (co2, ch4):
        assert image.std() > 5  # not a flat field

    # co2 has coarse texture: neighbouring pixels correlate more than in ch4.
    def neighbour_corr(img):
        img = img.astype(float)
        return np.corrcoef(img[:, :-1].ravel(), img[:, 1:].ravel())[0, 1]

    assert neighbour_corr(co2) > neighbour_corr(ch4)


def test_objects_match_their_masks(default_data):
    row = default_data.objects.iloc[0]
    encoded = default_data.annotations.query("ImageId == @row.ImageId and ClassId == @row.ClassId")
    mask = rle.decode(encoded["EncodedPixels"].iloc[0], 128, 128)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (row.x0, row.y0, row.x1, row.y1)
    assert mask.sum() == row.pixel_count


def test_image_size_is_configurable():
    data = synthetic.generate(synthetic.SyntheticConfig(n_specimens=2, image_size=64))
    assert {img.shape for img in data.images.values()} == {(64, 64)}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"image_size": 16}, "at least 32"),
        ({"anomaly_types": {"blob": {"views": ["co2"]}}}, "no renderer"),
        ({"anomaly_types": {"plume": {"views": ["nir"]}}}, "unknown views"),
    ],
)
def test_invalid_settings_are_explained(override, message):
    with pytest.raises(ValueError, match=message):
        synthetic.SyntheticConfig.from_params({"n_specimens": 1, **override})
