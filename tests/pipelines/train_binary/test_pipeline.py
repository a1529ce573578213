"""train_binary: one namespace per configured type, run whole or one type alone, each model
in a nested MLflow run, compared with the multi-label model on the same test samples."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
from PIL import Image

from anomaly_lens import pipeline_registry
from anomaly_lens.datasets import TorchModelDataset
from anomaly_lens.ml.data import synthetic
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.binary_comparison import compare_level
from anomaly_lens.ml.serving.identity import model_identity
from anomaly_lens.ml.training.binary import binary_splits, merged
from anomaly_lens.parameters import BinaryParams, ParameterError, binary_train_settings, parse_block
from anomaly_lens.pipelines.train_binary import create_pipeline
from tests.conftest import SMALL_RUN, base_parameters
from tests.test_session import latest

DEMO_TYPES = [t.name for t in synthetic.SyntheticConfig().anomaly_types]
TINY = {**SMALL_RUN, "binary": {"common": {"trainer": {"max_epochs": 1}}}, "ood": {"max_items": 8}}


def test_one_node_set_per_configured_type():
    configure_project("anomaly_lens")
    pipeline_registry.use_binary_types(["plume", "crack"])
    try:
        pipeline = create_pipeline()
    finally:
        pipeline_registry.use_binary_types([])
    namespaces = {n.namespace for n in pipeline.nodes if n.namespace}
    assert namespaces >= {"binary.plume", "binary.crack"}
    per_type = {
        name: sorted(
            n.name.removeprefix(f"binary.{name}.")
            for n in pipeline.nodes
            if n.name.startswith(f"binary.{name}.")
        )
        for name in ("plume", "crack")
    }
    assert per_type["plume"] == per_type["crack"] and "train_binary_model" in per_type["plume"]
    assert {"calibrate", "fit_ood_detectors", "explain_selection"} <= set(per_type["plume"])
    assert "binary.crack.model" in pipeline.all_outputs()
    assert "compare_binary" in {n.name for n in pipeline.nodes}


def test_types_come_from_the_configuration(project):
    with KedroSession.create(project_path=project) as session:
        session.load_context()
        assert pipeline_registry.binary_types() == DEMO_TYPES  # the demo data's types
    types = {"binary": {"types": ["plume"]}}
    with KedroSession.create(project_path=project, runtime_params=types) as session:
        session.load_context()
        assert pipeline_registry.binary_types() == ["plume"]
    pipeline_registry.use_binary_types([])


def test_other_anomalies_leave_training_but_stay_in_test():
    cache = ImageCache(
        sample_ids=pd.Index(["a", "b", "c", "d"]).to_numpy(),
        images=None,
        view_mask=None,
        masks=None,
        view_shapes=None,
        labels=pd.DataFrame([[1, 0], [0, 1], [0, 0], [0, 1]]).to_numpy(),
        views=["v"],
        classes=["plume", "crack"],
        fingerprint="",
    )
    splits = pd.DataFrame({"sample_id": list("abcd"), "split": ["train", "train", "val", "test"]})
    excluded = binary_splits(splits, cache, "plume", "exclude")
    assert excluded["sample_id"].tolist() == ["a", "c", "d"]  # b (crack only) left train
    assert binary_splits(splits, cache, "plume", "negative").equals(splits)
    with pytest.raises(ValueError, match="'Crack' is not a class of the data"):
        binary_splits(splits, cache, "Crack", "negative")
    assert merged({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


@pytest.mark.slow
def test_train_binary_whole_and_one_namespace_alone(project):
    def run(*pipelines: str, **options):
        with KedroSession.create(project_path=project, runtime_params=TINY) as session:
            session.run(pipeline_names=list(pipelines), **options)

    run("synthetic", "ingestion", "bbox", "pairing", "split", "train")
    run("train_binary")
    reports = project / "data/08_reporting/synthetic"
    comparison = json.loads(latest(reports / "binary_comparison.json").read_text())
    types = DEMO_TYPES
    assert set(comparison["per_class"]) == set(types)
    metrics = json.loads(latest(reports / "evaluation_metrics.json").read_text())
    assert comparison["test_samples"] == metrics["test"]["n_samples"]
    assert "per_item" not in comparison  # photo-level only for per-view models
    # The comparison names the models it was made from: the newest `model`, one per type.
    model = TorchModelDataset(filepath=str(latest(project / "data/06_models/synthetic/model.pt")))
    assert comparison["model_id"] == model_identity(model.load())
    assert set(comparison["binary_model_ids"]) == set(types)
    for entry in comparison["per_class"].values():
        assert {"f1", "ap", "auroc", "f1_ci95"} <= set(entry["binary"])
        assert {"f1", "ap", "auroc"} <= set(entry["multilabel"])
    assert (
        comparison["cost"]["binary"]["parameters"] > comparison["cost"]["multilabel"]["parameters"]
    )
    # The whole validation split (samples with other types too) compares the modes.
    validation = comparison["validation"]
    assert validation["val_samples"] == metrics["val"]["n_samples"]
    assert set(validation["per_class"]) == set(types)
    assert comparison["other_anomalies"] == base_parameters()["binary"]["other_anomalies"]
    for approach in ("binary", "multilabel"):
        assert 0 <= validation["assembled"][approach]["macro_f1"] <= 1
    assert "validation samples" in comparison["verdict"]
    with Image.open(latest(reports / "binary_comparison.png")) as plot:
        assert plot.height > plot.width / 2  # two rows of panels: test, validation
    for name in types:
        page = latest(reports / f"binary.{name}" / "xai_report.html").read_text()
        assert name in page and "<img" in page
        calibrator = json.loads(
            latest(project / f"data/06_models/synthetic/binary.{name}/calibrator.json").read_text()
        )
        assert calibrator["classes"] == [name] and len(calibrator["thresholds"]) == 1

    runs = mlflow.search_runs(experiment_names=["anomaly_lens"])
    parent = runs[runs["tags.mlflow.runName"] == "base · train_binary · resnet18"].run_id
    children = runs[runs["tags.mlflow.parentRunId"].isin(parent)]
    assert set(children["tags.anomaly_type"]) == set(types)
    assert children["metrics.val_macro_f1"].notna().all()  # per-epoch metrics in each child
    headline = runs[runs.run_id.isin(parent)].iloc[0]
    assert headline["metrics.binary.assembled_macro_f1"] == pytest.approx(
        comparison["assembled"]["binary"]["macro_f1"]
    )
    for name in types:
        assert headline[f"metrics.binary.{name}.f1_difference"] == pytest.approx(
            comparison["per_class"][name]["f1_difference"]
        )

    before = len(list((project / "data/06_models/synthetic/binary.crack/model.pt").iterdir()))
    run("train_binary", namespaces=["binary.plume"])
    assert len(list((project / "data/06_models/synthetic/binary.plume/model.pt").iterdir())) == 2
    assert (
        len(list((project / "data/06_models/synthetic/binary.crack/model.pt").iterdir())) == before
    )


def test_photo_level_comparison_scores_each_photo():
    """Two tiles of two photos each; the binary model finds both crack photos, the
    multi-class model one of them (it calls the other normal)."""
    items = pd.DataFrame(
        {
            "item_id": ["t1/a", "t1/b", "t2/a", "t2/b"],
            "sample_id": ["t1", "t1", "t2", "t2"],
            "target_crack": [1, 1, 0, 0],
        }
    ).set_index("item_id")
    main = items.assign(prob_normal=[0.2, 0.6, 0.9, 0.8], prob_crack=[0.8, 0.4, 0.1, 0.2])
    binary = items.assign(prob_crack=[0.9, 0.7, 0.3, 0.1])
    compared = compare_level(
        main, {"crack": binary}, "multiclass", main["sample_id"].to_numpy(), 20
    )
    crack = compared["per_class"]["crack"]
    assert crack["binary"]["f1"] == pytest.approx(1.0)
    assert crack["multilabel"]["f1"] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert crack["n_positive"] == 2
    assert compared["assembled"]["binary"]["macro_f1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="other test samples"):
        compare_level(main, {"crack": binary.assign(target_crack=0)}, "multiclass", [0] * 4, 5)


def test_comparison_intervals_leave_out_rounds_without_a_positive():
    """A rare type with one positive tile among twenty, found by both models: a bootstrap
    round that leaves that tile out has no F1 for it, and counting it as 0 would drag the
    per-type and the assembled intervals to the floor. One positive tile names no winner."""
    tiles = [f"t{k}" for k in range(20)]
    items = pd.DataFrame(
        {
            "sample_id": tiles,
            "target_crack": [1] + [0] * 19,
            "target_stain": [1] * 10 + [0] * 10,
        },
        index=tiles,
    )
    perfect = items.assign(
        prob_crack=items["target_crack"] * 0.9, prob_stain=items["target_stain"] * 0.9
    )
    binaries = {name: perfect for name in ("crack", "stain")}
    compared = compare_level(perfect, binaries, "multilabel", tiles, 200)
    assert compared["per_class"]["crack"]["binary"]["f1_ci95"] == [1.0, 1.0]
    assert compared["assembled"]["binary"]["macro_f1_ci95"] == [1.0, 1.0]
    assert compared["per_class"]["crack"]["winner_f1"].startswith("too few positives to tell (1")
    assert compared["per_class"]["stain"]["winner_f1"].startswith("tie")


def test_without_types_the_pipeline_says_what_to_do():
    configure_project("anomaly_lens")
    pipeline_registry.use_binary_types([])
    (node,) = create_pipeline().nodes
    with pytest.raises(ValueError, match="binary.types"):
        node.run({})


def test_a_binary_model_trains_softmax_cross_entropy_in_its_one_output_form():
    train = {**base_parameters()["train"], "loss": {"classification": "ce"}}
    binary = parse_block(BinaryParams, {"common": {"trainer": {"max_epochs": 1}}})
    settings = binary_train_settings(train, binary, "crack")
    assert (settings.loss.classification, settings.label_type) == ("bce", "multilabel")
    asked = parse_block(BinaryParams, {"per_type": {"crack": {"loss": {"classification": "ce"}}}})
    with pytest.raises(ParameterError, match="'ce' is a softmax loss"):
        binary_train_settings(train, asked, "crack")
