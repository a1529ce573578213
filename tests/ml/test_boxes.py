import numpy as np
import pytest

from anomaly_lens.ml.data.boxes import box_iou, find_components


def canvas(*blocks):
    mask = np.zeros((20, 30), dtype=bool)
    for y0, y1, x0, x1 in blocks:
        mask[y0:y1, x0:x1] = True
    return mask


def boxes(components):
    return sorted((c.x0, c.y0, c.x1, c.y1, c.pixel_count) for c in components)


def test_one_box_per_component_with_exclusive_ends():
    found, specks = find_components(canvas((2, 5, 3, 7), (10, 12, 20, 29)))
    assert boxes(found) == [(3, 2, 7, 5, 12), (20, 10, 29, 12, 18)]
    assert specks == 0
    assert found[0].area == 12


def test_diagonal_neighbours_are_one_object():
    mask = np.zeros((5, 5), dtype=bool)
    mask[[0, 1, 2], [0, 1, 2]] = True
    assert len(find_components(mask)[0]) == 1


def test_specks_below_min_area_are_dropped_and_counted():
    found, specks = find_components(canvas((2, 5, 3, 7), (15, 16, 1, 3)), min_area=3)
    assert boxes(found) == [(3, 2, 7, 5, 12)]
    assert specks == 1


@pytest.mark.parametrize(("distance", "objects"), [(0, 2), (2, 2), (3, 1)])
def test_fragments_merge_within_the_merge_distance(distance, objects):
    # columns 3..4 and 7..8: nearest pixels (x=4, x=7) are 3 apart
    found, _ = find_components(canvas((2, 5, 3, 5), (2, 5, 7, 9)), merge_distance=distance)
    assert len(found) == objects
    if objects == 1:
        assert boxes(found) == [(3, 2, 9, 5, 12)]


def test_merging_is_transitive_and_min_area_applies_after_merging():
    mask = canvas((0, 1, 0, 1), (0, 1, 2, 3), (0, 1, 4, 5))  # three single pixels, 2 apart
    found, specks = find_components(mask, min_area=3, merge_distance=2)
    assert boxes(found) == [(0, 0, 5, 1, 3)] and specks == 0


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
