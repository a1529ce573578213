"""The project's Kedro context: it tells the pipeline registry where the raw layer is."""

from __future__ import annotations

from attrs import define
from kedro.framework.context import KedroContext

from anomaly_lens import pipeline_registry


@define(slots=False)
class ProjectContext(KedroContext):
    """A ``KedroContext`` that reads, per env, whether the raw layer is a user's data.

    An env whose catalog defines ``raw_images`` reads that (read-only) data, and
    ``kedro run`` starts at ``ingestion``. Without it the raw layer is the generated demo
    data, and ``kedro run`` starts with the ``synthetic`` pipeline that writes it.
    """

    def __attrs_post_init__(self) -> None:
        catalog = self.config_loader["catalog"]
        pipeline_registry.use_generated_raw_data("raw_images" not in catalog)
