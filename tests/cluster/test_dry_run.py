"""The first Job is sent as a server-side dry run before anything of the task is created (issue 26
item 4): what the apiserver's admission refuses (here a quota on Jobs) fails the task with its
message, and no ConfigMap, Secret or Job is left behind."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from tests.cluster.helpers import jobs_in, new_dag

pytestmark = pytest.mark.cluster


def test_an_admission_refusal_fails_before_any_side_effect(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}
    )
    time.sleep(1)  # let the quota controller publish usage
    common = {"namespace": namespace, "image": "busybox:1.36", "cmds": ["cat"], "retries": 0}
    with new_dag("dry_run") as dag:
        BatchJobOperator(task_id="job", **common)
        JobGroupOperator(task_id="group", items=["a", "b"], **common)
        IndexedJobOperator(task_id="indexed", items=["x", "y"], use_worker=False, **common)
    result = run_dag(dag)
    out = capfd.readouterr().out
    for task in ("job", "group", "indexed"):
        assert result[task]["state"] == "failed", task
    assert out.count("(dry run, nothing was created)") >= 3
    assert "exceeded quota" in out
    assert not jobs_in(api_client, namespace)
    assert not core.list_namespaced_config_map(namespace, label_selector="batchjob.airflow.io/task").items
