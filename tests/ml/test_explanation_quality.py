"""Localisation scores (Quantus), shares, profiles, clusters and regions on known maps."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly_lens.ml.explanation.quality import (
    DISTANCE_BANDS,
    attribution_shares,
    cluster_maps,
    distance_profile,
    intensity_profile,
    localisation_scores,
    random_maps,
    region_of_interest,
    side_by_side,
    view_shares,
)


def _masks():
    masks = np.zeros((3, 2, 16, 16), dtype=np.uint8)
    masks[0, 0, 4:8, 4:8] = 1  # a defect in the first view
    masks[1, 1, 10:14, 2:6] = 1  # a defect in the second view
    return masks  # the third item has none


def test_maps_on_the_mask_score_one_and_maps_beside_it_zero():
    masks = _masks()
    on = masks.astype(np.float32)
    beside = np.roll(on, 8, axis=-1)
    hit, miss = localisation_scores(on, masks), localisation_scores(beside, masks)
    for name in ("relevance_mass", "pointing_game", "relevance_rank"):
        assert hit[name][:2] == pytest.approx([1.0, 1.0])
        assert miss[name][:2] == pytest.approx([0.0, 0.0])
        assert np.isnan(hit[name][2])  # no mask: nothing to point at


def test_random_maps_score_about_the_mask_area():
    masks = _masks()
    view_mask = np.ones((3, 2), dtype=bool)
    noise = random_maps(view_mask, masks.shape, seed=0)
    mass = localisation_scores(noise, masks)["relevance_mass"][:2]
    assert mass == pytest.approx([16 / 512, 16 / 512], abs=0.02)


def test_views_side_by_side_and_shares_per_view():
    maps = np.zeros((2, 2, 4, 4), dtype=np.float32)
    maps[0, 0] = 1.0
    maps[0, 1] = -1.0
    maps[1, 0] = 2.0
    assert side_by_side(maps).shape == (2, 1, 4, 8)
    assert attribution_shares(maps).reshape(2, -1).sum(1) == pytest.approx([1.0, 1.0])
    shares = view_shares(maps, np.array([[True, True], [True, False]]))
    assert shares[0] == pytest.approx([0.5, 0.5])
    assert shares[1, 0] == pytest.approx(1.0) and np.isnan(shares[1, 1])


def test_profiles_put_attribution_where_it_is():
    masks = _masks()[:1]
    view_mask = np.array([[True, True]])
    maps = masks.astype(np.float32)
    attribution, pixels = distance_profile(maps, masks, view_mask)
    assert len(attribution) == len(DISTANCE_BANDS)
    assert attribution[0] == pytest.approx(1.0) and pixels[0] == pytest.approx(32 / 512)
    images = np.full(maps.shape, 0.1, dtype=np.float32)
    images[masks > 0] = 0.95
    attribution, pixels = intensity_profile(maps, images, view_mask)
    assert attribution[-1] == pytest.approx(1.0) and pixels.sum() == pytest.approx(1.0)


def test_clusters_separate_two_patterns_and_regions_hold_the_mass():
    maps = np.zeros((6, 1, 16, 16), dtype=np.float32)
    maps[:3, 0, :4, :4] = 1.0
    maps[3:, 0, -4:, -4:] = 1.0
    labels = cluster_maps(maps, clusters=2, side=4, seed=0)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
    mass = np.zeros((16, 16))
    mass[5:9, 2:12] = 1.0
    assert region_of_interest(mass, 1.0) == (2, 5, 12, 9)
    x0, y0, x1, y1 = region_of_interest(mass, 0.1)
    assert (x1 - x0) * (y1 - y0) <= 40 and 2 <= x0 and x1 <= 12


def test_flat_maps_are_not_scored():
    masks = _masks()
    flat = np.zeros(masks.shape, dtype=np.float32)  # nothing points anywhere
    scores = localisation_scores(flat, masks)
    assert all(np.isnan(values).all() for values in scores.values())
