"""The project's Kedro context: it tells the pipeline registry where the raw layer is and
which anomaly types ``train_binary`` trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attrs import define
from kedro.framework.context import KedroContext
from sqlalchemy.engine import make_url

from anomaly_lens import pipeline_registry


def anchored(parameters: Any, project_path: Path) -> Any:
    """``parameters`` with the folders the project writes anchored at ``project_path``, as
    Kedro anchors the catalog's file paths: every relative ``checkpoint_dir`` and every
    SQLite ``storage`` URL to a relative file. Other values are left as they are."""
    if not isinstance(parameters, dict):
        return parameters
    return {key: _anchored_value(key, value, project_path) for key, value in parameters.items()}


def _anchored_value(key: str, value: Any, project_path: Path) -> Any:
    if key == "checkpoint_dir" and isinstance(value, str) and not Path(value).is_absolute():
        return (project_path / value).as_posix()
    if key == "storage" and isinstance(value, str):
        url = make_url(value)
        file = url.database
        if url.get_backend_name() == "sqlite" and file and file != ":memory:":
            if not Path(file).is_absolute():
                url = url.set(database=(project_path / file).as_posix())
            return url.render_as_string(hide_password=False)
        return value
    return anchored(value, project_path)


def discovered_classes(class_names_path: str) -> list[str]:
    """The classes the newest ingestion found (``class_names``), or none before one ran."""
    versions = sorted(Path(class_names_path).glob("*/" + Path(class_names_path).name))
    return json.loads(versions[-1].read_text()) if versions else []


@define(slots=False)
class ProjectContext(KedroContext):
    """A ``KedroContext`` that reads, per env, whether the raw layer is a user's data, and
    the anomaly types of ``train_binary``.

    An env whose catalog defines ``raw_images`` reads that (read-only) data, and
    ``kedro run`` starts at ``ingestion``. Without it the raw layer is the generated demo
    data, and ``kedro run`` starts with the ``synthetic`` pipeline that writes it.

    The types: ``binary.types``, else ``ingestion.classes``, else (demo data) the
    ``synthetic.anomaly_types``, else the classes the newest ingestion found.
    """

    def __attrs_post_init__(self) -> None:
        catalog = self.config_loader["catalog"]
        generated = "raw_images" not in catalog
        pipeline_registry.use_generated_raw_data(generated)
        parameters = self.config_loader["parameters"]
        types = (parameters.get("binary") or {}).get("types") or (
            parameters.get("ingestion") or {}
        ).get("classes")
        if not types and generated:
            types = list((parameters.get("synthetic") or {}).get("anomaly_types") or {})
        if not types and "class_names" in catalog:
            types = discovered_classes(str(self.project_path / catalog["class_names"]["filepath"]))
        pipeline_registry.use_binary_types(list(types or []))

    @property
    def params(self) -> dict[str, Any]:
        """Kedro's parameters, the project's own folders anchored at the project: a session
        started from another working directory (a notebook, a test) writes there too."""
        return anchored(super().params, self.project_path)
