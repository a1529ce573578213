"""Project pipelines."""

from __future__ import annotations

from kedro.framework import project
from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline, pipeline

# What the `synthetic` pipeline writes, read by the others wherever the raw layer is generated.
GENERATED_RAW_DATA = {
    "raw_images": "demo_images",
    "raw_annotations": "demo_annotations",
    "raw_metadata": "demo_metadata",
}

# Run by name only: cv and leakage train one model per fold, too long for the default run,
# and cv_compare compares two cv runs;
# inference and export use a trained model on request; subview and tune train more models.
BY_NAME_ONLY = ("cv", "cv_compare", "leakage", "inference", "export", "subview", "tune")

_raw_data = {"generated": True, "registered_for": None}
_binary = {"types": []}


def use_generated_raw_data(generated: bool) -> None:
    """Set by the project context per env: is the raw layer the generated demo data?

    Pipelines already registered for the other case (an earlier session in this process,
    e.g. in a notebook or a test) are registered again.
    """
    _raw_data["generated"] = generated
    registered_for = _raw_data["registered_for"]
    if registered_for is not None and registered_for != generated:
        _raw_data["registered_for"] = None
        project.pipelines.configure(f"{project.PACKAGE_NAME}.pipeline_registry")


def use_binary_types(types: list[str]) -> None:
    """Set by the project context: the anomaly types ``train_binary`` has a namespace for."""
    if list(types) != _binary["types"]:
        _binary["types"] = list(types)
        if _raw_data["registered_for"] is not None:
            _raw_data["registered_for"] = None
            project.pipelines.configure(f"{project.PACKAGE_NAME}.pipeline_registry")


def binary_types() -> list[str]:
    """The anomaly types of the ``train_binary`` namespaces."""
    return list(_binary["types"])


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by folder name; ``__default__`` runs the whole chain.

    On the generated demo data (``conf/base``), ``__default__`` starts with ``synthetic``
    and every pipeline reads the ``demo_*`` entries it writes. In an env that points
    ``raw_images`` at a user's data, ``__default__`` starts at ``ingestion`` and nothing
    reads or writes the demo entries; ``synthetic`` stays available by name and only ever
    writes its own folder. ``train_binary`` joins ``__default__`` once its anomaly types are
    known (configured, or found by an earlier ingestion). ``BY_NAME_ONLY`` pipelines run by
    name only.
    """
    generated = _raw_data["generated"]
    found = find_pipelines(raise_errors=True)
    registered = {}
    for name, found_pipeline in found.items():
        registered[name] = found_pipeline
        if generated and name != "synthetic":
            wiring = {k: v for k, v in GENERATED_RAW_DATA.items() if k in found_pipeline.inputs()}
            registered[name] = pipeline(found_pipeline, inputs=wiring)
    chain = [
        p
        for name, p in registered.items()
        if name not in BY_NAME_ONLY
        and (generated or name != "synthetic")
        and (binary_types() or name != "train_binary")
    ]
    registered["__default__"] = sum(chain, start=Pipeline([]))
    _raw_data["registered_for"] = generated
    return registered
