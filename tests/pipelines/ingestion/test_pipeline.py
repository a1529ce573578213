"""The synthetic + ingestion pipelines end to end, in memory, with SequentialRunner."""

from __future__ import annotations

from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from anomaly_lens.pipelines import ingestion, synthetic
from tests.conftest import base_parameters


def test_synthetic_then_ingestion_in_memory(tmp_path):
    params = base_parameters()
    params = {
        "synthetic": {"n_specimens": 4, "image_size": 48, "seed": 3},
        "ingestion": params["ingestion"],
    }
    catalog = DataCatalog(
        {f"params:{k}": MemoryDataset(v) for k, v in params.items()}
        | {"raw_records": MemoryDataset(copy_mode="assign")}
        # Consumed outputs would be released from memory: keep them in files to inspect.
        | {
            "manifest": ParquetDataset(filepath=str(tmp_path / "manifest.parquet")),
            "quarantine": CSVDataset(filepath=str(tmp_path / "quarantine.csv")),
        }
    )
    pipeline = synthetic.create_pipeline()
    # The partitioned raw layer hands the ingestion node one loader per file.
    images, annotations, _, metadata = pipeline.nodes[0].func(params["synthetic"])
    catalog["raw_images"] = {
        pid: (lambda content=content: content) for pid, content in images.items()
    }
    catalog["raw_annotations"] = annotations
    outputs = SequentialRunner().run(ingestion.create_pipeline(), catalog)

    manifest = catalog.load("manifest")
    assert len(manifest) == metadata["n_images"] == len(images)
    assert catalog.load("quarantine").empty
    report = outputs["data_quality_report"].load()
    assert report["n_images"] == len(images)
    assert sum(report["images_by_view"].values()) == len(images)
    assert set(report["classes"]) <= {"plume", "streak", "hotspot", "crack"}
    assert set(outputs["masks"].load()["image_id"]) <= set(manifest["image_id"])
    assert manifest["labels"].map(list).map(len).max() <= 3
