"""ingestion -> bbox -> pairing -> split with SequentialRunner on an in-memory catalog."""

from __future__ import annotations

import pytest
from kedro.framework.project import configure_project
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from anomaly_lens import pipeline_registry
from anomaly_lens.pipeline_registry import register_pipelines
from anomaly_lens.pipelines import bbox, ingestion, pairing, split
from anomaly_lens.pipelines.synthetic.nodes import generate_raw_dataset
from tests.conftest import PROJECT_ROOT, base_parameters


def test_data_preparation_chain_in_memory(tmp_path):
    params = base_parameters()
    params["synthetic"].update(n_specimens=12, image_size=48)
    images, annotations, _, metadata = generate_raw_dataset(params["synthetic"])
    catalog = DataCatalog(
        {f"params:{k}": MemoryDataset(v) for k, v in params.items()}
        | {
            "raw_records": MemoryDataset(copy_mode="assign"),
            "keyed_manifest": MemoryDataset(copy_mode="assign"),
            # consumed downstream, so kept in a file to inspect after the run
            "splits": ParquetDataset(filepath=str(tmp_path / "splits.parquet")),
        }
    )
    catalog["raw_images"] = {pid: (lambda c=content: c) for pid, content in images.items()}
    catalog["raw_annotations"] = annotations
    chain = (
        ingestion.create_pipeline()
        + bbox.create_pipeline()
        + pairing.create_pipeline()
        + split.create_pipeline()
    )
    outputs = SequentialRunner().run(chain, catalog)

    splits = catalog.load("splits")
    assert len(splits) == metadata["n_samples"] == 48
    assert splits.groupby("group_id")["split"].nunique().max() == 1
    assert outputs["split_report"].load()["groups_in_two_splits"] == 0
    assert outputs["pairing_report"].load()["n_samples"] == 48
    assert outputs["bbox_report"].load()["n_boxes"] > 0


@pytest.fixture
def demo_registry():
    """The registry as on the demo env, whatever env an earlier session of this process
    (another test on the same worker) left it on."""
    configure_project("anomaly_lens")
    pipeline_registry.use_generated_raw_data(True)
    pipeline_registry.use_binary_types([])


def test_every_pipeline_is_registered(demo_registry):
    """Every folder of ``pipelines/`` is a registered pipeline; the by-name ones stay out
    of ``__default__``, every other one is in it."""
    folders = {
        path.parent.name
        for path in (PROJECT_ROOT / "src/anomaly_lens/pipelines").glob("*/pipeline.py")
    }
    assert len(folders) >= 18
    registered = register_pipelines()
    assert set(registered) == folders | {"__default__"}
    assert set(pipeline_registry.BY_NAME_ONLY) < folders
    default = {node.name for node in registered["__default__"].nodes}
    for name in folders:
        nodes = {node.name for node in registered[name].nodes}
        assert nodes, name
        if name in pipeline_registry.BY_NAME_ONLY:
            assert not nodes <= default, name
        elif name != "train_binary":  # joins once its anomaly types are known (below)
            assert nodes <= default, name


def test_xai_runs_by_default_and_subview_by_name_only(demo_registry):
    pipelines = register_pipelines()
    default = {node.name for node in pipelines["__default__"].nodes}
    assert {"select_explained", "explain_selection", "render_xai_report"} <= default
    assert not any(name.startswith("subview.") for name in default)
    subview = pipelines["subview"]
    assert "subview.train_on_crops" in {node.name for node in subview.nodes}
    assert {"subview.model", "subview.evaluation_metrics"} <= subview.all_outputs()


def test_train_binary_joins_the_default_run_once_its_types_are_known(demo_registry):
    assert "compare_binary" not in {n.name for n in register_pipelines()["__default__"].nodes}
    pipeline_registry.use_binary_types(["plume"])
    try:
        default = {node.name for node in register_pipelines()["__default__"].nodes}
    finally:
        pipeline_registry.use_binary_types([])
    assert {"compare_binary", "binary.plume.train_binary_model"} <= default
