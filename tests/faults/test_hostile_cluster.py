"""Hostile input against the real apiserver: what is refused creates nothing, what passes is exact.

(The property-based checks of names, labels and argv are pure: tests/unit/test_hostile_input.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import DAG
from kubernetes import client

from airflow_batchjob.core import naming
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from tests.cluster.helpers import START, new_dag

pytestmark = pytest.mark.cluster


def test_template_with_unknown_fields_is_refused_and_creates_nothing(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A typo in a template (``backofLimit``, ``comand``) must not be silently dropped."""
    typo = {
        "spec": {
            "backofLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "comand": ["rm", "-rf", "/data"]}],
                }
            },
        }
    }
    # Known at parse time: the DAG fails to load, naming both typos and the fields meant.
    with pytest.raises(InvalidJobTemplateError) as parsed:
        BatchJobOperator(task_id="typo", namespace=namespace, job_template=typo, cmds=["true"])
    assert "spec.backofLimit: not a field of JobSpec, did you mean backoffLimit?" in str(parsed.value)
    assert "containers[0].comand: not a field of Container, did you mean command?" in str(parsed.value)
    # Known only once Jinja renders (here the image): refused at run time, before any create.
    with new_dag("unknown_fields") as dag:
        BatchJobOperator(
            task_id="typo",
            namespace=namespace,
            job_template=typo,
            image="{{ 'busybox' }}",
            cmds=["true"],
            retries=3,
        )
    result = run_dag(dag)["typo"]
    out = capfd.readouterr().out
    assert result["state"] == "failed" and result["try_number"] == 1  # not retried: a retry cannot fix it
    assert "InvalidJobTemplateError" in out
    assert "did you mean backoffLimit?" in out, out[-3000:]
    assert client.BatchV1Api(api_client).list_namespaced_job(namespace).items == []


def test_items_refused_at_run_time_create_nothing(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Items that only exist after Jinja (an XCom, a param) are checked before the first create."""
    with DAG("bad_items_late", schedule=None, start_date=START, render_template_as_native_obj=True) as dag:
        JobGroupOperator(
            task_id="group",
            namespace=namespace,
            items="{{ ['fine', 'also fine', 'nul\\x00inside'] }}",
            image="busybox",
            cmds=["sh", "-c", "echo $ITEM"],
        )
    result = run_dag(dag)["group"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "item 2 contains a NUL character" in out, out[-3000:]
    assert client.BatchV1Api(api_client).list_namespaced_job(namespace).items == []


class _TI:
    """The task-instance fields the operator reads, for ids Airflow's own CLI would not accept."""

    def __init__(self, dag_id: str, task_id: str, run_id: str) -> None:
        self.dag_id, self.task_id, self.run_id = dag_id, task_id, run_id
        self.map_index, self.try_number = -1, 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_hostile_run_ids_get_their_own_valid_jobs(api_client: Any, namespace: str) -> None:
    """Manual/backfill run ids of one instant in two offsets, unicode ids: one valid Job each, exact ids."""
    dag_id = "hostile dag: ünï+cödé"
    run_ids = [
        "manual__2024-03-10T02:30:00+01:00",
        "manual__2024-03-10T02:30:00+00:00",
        "backfill__2024-03-10T02:30:00+00:00",
        "scheduled__2024-03-10T02:30:00+00:00:~ $(id) `id`",
        "ручной запуск +1",
    ]
    op = BatchJobOperator(task_id="t", namespace=namespace, image="busybox", cmds=["true"], deferrable=False)
    for run_id in run_ids:
        ti = _TI(dag_id, "t", run_id)
        ret = op.execute({"ti": ti})  # type: ignore[arg-type]
        assert ret["outcome"]["state"] == "succeeded" and ti.xcom["job_name"] == ret["name"]
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace).items
    assert sorted(j.metadata.annotations[naming.ANNOTATION_RUN_ID] for j in jobs) == sorted(run_ids)
    assert {j.metadata.annotations[naming.ANNOTATION_DAG_ID] for j in jobs} == {dag_id}
    assert len({j.metadata.name for j in jobs}) == len(run_ids)
    assert len({j.metadata.labels[naming.LABEL_RUN] for j in jobs}) == len(run_ids)
    for job in jobs:
        assert naming.is_dns1123_label(job.metadata.name)
        assert job.metadata.name == naming.job_name(
            dag_id, "t", job.metadata.annotations[naming.ANNOTATION_RUN_ID]
        )
