import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from anomaly_lens.ml.data import imaging
from anomaly_lens.ml.data.splitting import LeakageError
from anomaly_lens.pipelines.split import nodes
from anomaly_lens.pipelines.split.nodes import plot_split, split_samples, summarise_split

PARAMS = {
    "ratios": [0.7, 0.15, 0.15],
    "seed": 0,
    "candidates": 10,
    "near_duplicate_bits": 12,
    "holdout": None,
}


def dhash_of(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32), dtype=np.uint8)
    return imaging.difference_hash(pixels)


def data(n_specimens=40, duplicate_across_specimens=False):
    rng = np.random.default_rng(0)
    rows, images = [], []
    for s in range(n_specimens):
        cls = ["a", "b", None][s % 3]
        for c in range(4):
            labels = [cls] if cls and rng.random() < 0.8 else []
            sid = f"S{s}|c{c}"
            rows.append(
                (
                    sid,
                    f"S{s}",
                    f"c{c}",
                    labels,
                    int("a" in labels),
                    int("b" in labels),
                    f"co2/{sid}",
                )
            )
            images.append((f"co2/{sid}", f"hash-{sid}", dhash_of(s * 10 + c)))
    samples = pd.DataFrame(
        rows,
        columns=["sample_id", "group_id", "condition", "labels", "label_a", "label_b", "image_co2"],
    )
    manifest = pd.DataFrame(images, columns=["image_id", "sha256", "dhash"])
    if duplicate_across_specimens:  # S1's first image is a byte copy of S0's
        manifest.loc[4, "sha256"] = manifest.loc[0, "sha256"]
    return samples, manifest


def test_split_is_group_and_content_leak_free():
    samples, manifest = data(duplicate_across_specimens=True)
    splits, facts = split_samples(samples, manifest, ["a", "b"], PARAMS)
    assert splits.groupby("group_id")["split"].nunique().max() == 1
    assert facts["units_after_joining_shared_content"] == facts["groups"] - 1
    s0, s1 = (splits.loc[splits["group_id"] == g, "split"].iloc[0] for g in ("S0", "S1"))
    assert s0 == s1  # joined by the shared content
    assert set(splits["split"]) == {"train", "val", "test"}


def test_holdout_values_go_to_shift():
    samples, manifest = data()
    params = {**PARAMS, "holdout": {"column": "condition", "values": ["c3"]}}
    splits, facts = split_samples(samples, manifest, ["a", "b"], params)
    assert (splits.loc[samples["condition"] == "c3", "split"] == "shift").all()
    assert not (splits.loc[samples["condition"] != "c3", "split"] == "shift").any()
    report, _ = summarise_split(splits, facts, samples, ["a", "b"], params)
    assert report["samples_by_split"]["shift"] == 40
    assert report["shift_groups_also_in_train_val_test"] == 40


def test_a_given_test_split_is_honoured_and_groups_stay_whole():
    samples, manifest = data()
    given = samples["group_id"].isin([f"S{s}" for s in range(0, 40, 4)])  # whole specimens
    given.iloc[5] = True  # and one sample of S1, whose other samples are not in it
    samples = samples.assign(origin=np.where(given, "test", "train"))
    params = {**PARAMS, "given_test": {"column": "origin", "values": ["test"]}}
    splits, facts = split_samples(samples, manifest, ["a", "b"], params)
    test_groups = {f"S{s}" for s in range(0, 40, 4)} | {"S1"}
    assert set(splits.loc[splits["split"] == "test", "group_id"]) == test_groups
    assert facts["given_test_samples"] == 41 and facts["test_samples"] == 44  # S1 whole
    assert set(splits["split"]) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="no sample column 'nope'"):
        split_samples(
            samples,
            manifest,
            ["a", "b"],
            {**params, "given_test": {"column": "nope", "values": [1]}},
        )


def test_the_node_asserts_leakage_itself(monkeypatch):
    samples, manifest = data()

    def naive(units, labels, ratios, seed, **_):
        return pd.DataFrame({"split": np.resize(["train", "val", "test"], len(units))})

    monkeypatch.setattr(nodes, "assign_splits", naive)
    with pytest.raises(LeakageError):
        split_samples(samples, manifest, ["a", "b"], PARAMS)


def test_report_compares_each_split_with_the_whole():
    samples, manifest = data()
    splits, facts = split_samples(samples, manifest, ["a", "b"], PARAMS)
    report, table = summarise_split(splits, facts, samples, ["a", "b"], PARAMS)
    assert set(table["class"]) == {"a", "b", "normal"}
    assert report["groups_in_two_splits"] == 0
    assert report["max_abs_deviation_pp"] == pytest.approx(table["deviation_pp"].abs().max())
    assert sum(report["samples_by_split"].values()) == len(samples)
    assert isinstance(plot_split(table), Figure)


def test_near_duplicate_images_keep_their_groups_together():
    samples, manifest = data()
    # S5's first image is a re-capture of S9's: a few pixels differ, so the sha256 differs.
    pixels = np.random.default_rng(90).integers(0, 255, (32, 32), dtype=np.uint8)
    recapture = pixels.copy()
    recapture[0, :3] += 1
    manifest.loc[manifest["image_id"] == "co2/S9|c0", "dhash"] = imaging.difference_hash(pixels)
    manifest.loc[manifest["image_id"] == "co2/S5|c0", "dhash"] = imaging.difference_hash(recapture)
    splits, facts = split_samples(samples, manifest, ["a", "b"], {**PARAMS, "seed": 3})
    assert facts["near_duplicate_sample_pairs"] == 1
    split_of = splits.groupby("group_id")["split"].first()
    assert split_of["S5"] == split_of["S9"]
    assert (
        splits.set_index("group_id").loc["S5", "unit_id"].iloc[0]
        == splits.set_index("group_id").loc["S9", "unit_id"].iloc[0]
    )
    off, _ = split_samples(samples, manifest, ["a", "b"], {**PARAMS, "near_duplicate_bits": -1})
    assert off["unit_id"].nunique() == 40
