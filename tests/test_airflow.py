"""The pipelines on a scheduler, as a team deploys them: `kedro airflow create` writes a DAG
that Airflow itself (its own environment, ``requirements/airflow.lock``) parses without
import errors, every node in one task, tasks ordered as the nodes' data flow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession

from tests.services import airflow_python

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "tasks": {
        dag_id: {task.task_id: sorted(task.upstream_task_ids) for task in dag.tasks}
        for dag_id, dag in bag.dags.items()
    },
}))
"""


@pytest.mark.slow
def test_airflow_parses_the_dag_that_kedro_airflow_writes(project, tmp_path):
    python = airflow_python()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow_home")}
    kedro = Path(sys.executable).with_name("kedro")
    subprocess.run(
        [str(kedro), "airflow", "create", "--target-dir=dags", "--group-by=memory"],
        cwd=project, env=env, check=True, capture_output=True,
    )  # fmt: skip
    dag_file = project / "dags" / "anomaly_lens_dag.py"
    parsed = subprocess.run(
        [str(python), "-c", PARSE, str(dag_file.parent)],
        cwd=project, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(parsed.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    tasks = result["tasks"]["anomaly-lens"]

    # Every node of the main command runs in exactly one task.
    groups = re.findall(r"node_names=\[([^\]]*)\]", dag_file.read_text())
    in_tasks = [name.strip(' "') for group in groups for name in group.split(",")]
    with KedroSession.create(project_path=project) as session:
        session.load_context()
        nodes = {node.name for node in pipelines["__default__"].nodes}
    assert sorted(in_tasks) == sorted(nodes)
    assert len(tasks) == len(groups) < len(nodes)  # nodes joined by memory share a task
    # Tasks follow the data: the model is trained before it is evaluated, after the split.
    assert "train-model" in tasks["evaluate-model"]
    upstream = set(tasks["train-model"])
    assert any("split-samples" in task for task in upstream)
