"""`cv_compare` reads two versions of `cv_predictions` through the catalog."""

from __future__ import annotations

import json

import pytest
from kedro.framework.session import KedroSession

from tests.ml.test_crossval import TRUTH, predictions

EARLIER, LATER = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def compare(project, **load_versions) -> None:
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=["cv_compare"], load_versions=load_versions)


def test_compares_the_latest_run_with_a_named_earlier_one(project):
    folder = project / "data/07_model_output/synthetic/cv_predictions.parquet"
    earlier_calls = [0] * 20 + [0] * 10 + [2] * 10  # every crack called normal
    for version, called in ((EARLIER, earlier_calls), (LATER, TRUTH)):
        (folder / version).mkdir(parents=True)
        predictions(called, TRUTH).to_parquet(folder / version / "cv_predictions.parquet")
    with pytest.raises(ValueError, match="same version: name the reference run"):
        compare(project)  # both entries load the latest version

    compare(project, cv_reference_predictions=EARLIER)
    reports = project / "data/08_reporting/synthetic/cv_comparison.json"
    (report_file,) = reports.glob("*/cv_comparison.json")
    report = json.loads(report_file.read_text())
    assert report["candidate"]["macro_f1"] == pytest.approx(1.0)
    assert report["reference"]["defects_called_normal"] == 10
    assert report["reference"]["per_class_f1"]["crack"] == 0
    assert report["difference"] > 0 and report["difference_ci95"][0] > 0

    compare(project, cv_predictions=EARLIER, cv_reference_predictions=LATER)
    (_, reversed_file) = sorted(reports.glob("*/cv_comparison.json"))
    assert json.loads(reversed_file.read_text())["difference"] == pytest.approx(
        -report["difference"]
    )
