"""Fire-and-forget Jobs, names that cannot collide across runs, and the Job lifecycle tasks
(patch, suspend, resume, delete) on the real cluster, through Airflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.lifecycle import (
    DeleteJobOperator,
    PatchJobOperator,
    ResumeJobOperator,
    SuspendJobOperator,
)
from airflow_batchjob.sensors.job import JobSensor
from tests.cluster.helpers import jobs_in, new_dag

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]
NAME = "{{ ti.xcom_pull(task_ids='start')['name'] }}"


def test_fire_and_forget_then_lifecycle_tasks(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    from airflow.providers.standard.operators.python import PythonOperator

    with new_dag("lifecycle") as dag:
        # The Job's Pods wait for /out/go, which the task after resume creates: the Job is still
        # running when it is suspended however slow the machine (a fixed sleep could be outrun).
        start = BatchJobOperator(
            task_id="start",
            namespace=namespace,
            name="nightly-export",  # cncf.kubernetes' name for job_name: a prefix here
            image="busybox",
            cmds=["sh", "-c", "until [ -e /out/go ]; do sleep 0.2; done; echo exported"],
            volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}],
            volume_mounts=[{"name": "out", "mountPath": "/out"}],
            wait_until_job_complete=False,
        )
        release = PythonOperator(task_id="release", python_callable=(tmp_path / "go").touch)
        suspend = SuspendJobOperator(task_id="suspend", namespace=namespace, job_name=NAME)
        again = SuspendJobOperator(task_id="suspend_again", namespace=namespace, job_name=NAME)
        patch = PatchJobOperator(
            task_id="patch", namespace=namespace, name=NAME, body={"metadata": {"labels": {"patched": "yes"}}}
        )
        resume = ResumeJobOperator(task_id="resume", namespace=namespace, label_selector="patched=yes")
        wait = JobSensor(
            task_id="wait", namespace=namespace, job_name=NAME, condition="Complete", timeout=300
        )
        delete = DeleteJobOperator(
            task_id="delete",
            namespace=namespace,
            job_name=NAME,
            delete_on_status="Complete",
            wait_for_completion=True,
        )
        delete_again = DeleteJobOperator(task_id="delete_again", namespace=namespace, job_name=NAME)
        start >> suspend >> again >> patch >> resume >> release >> wait >> delete >> delete_again
    out = run_dag(dag)
    assert {t: r["state"] for t, r in out.items()} == {t: "success" for t in out}
    started = out["start"]["xcom"]["return_value"]
    assert started["name"].startswith("nightly-export-") and len(started["name"]) <= 52
    assert set(started) == {"name", "namespace", "uid"}
    assert out["suspend"]["xcom"]["return_value"] == [started["name"]]
    assert out["suspend_again"]["xcom"]["return_value"] == [], "suspending twice is a no-op"
    assert out["resume"]["xcom"]["return_value"] == [started["name"]]
    assert out["delete"]["xcom"]["return_value"] == [started["name"]]
    assert out["delete_again"]["xcom"]["return_value"] == [], "deleting a deleted Job is a no-op"
    assert jobs_in(api_client, namespace) == []


def test_delete_on_status_keeps_a_job_in_another_state(run_dag: Any, api_client: Any, namespace: str) -> None:
    with new_dag("keep_failed") as dag:
        start = BatchJobOperator(
            task_id="start",
            namespace=namespace,
            image="busybox",
            cmds=["sh", "-c", "exit 3"],
            backoff_limit=0,
            wait_until_job_complete=False,
        )
        delete = DeleteJobOperator(
            task_id="delete",
            namespace=namespace,
            job_name=NAME,
            delete_on_status="Complete",
            wait_for_completion=True,
        )
        start >> delete
    out = run_dag(dag)
    assert out["delete"]["state"] == "success" and out["delete"]["xcom"]["return_value"] == []
    assert len(jobs_in(api_client, namespace)) == 1, "a failed Job is kept by delete_on_status='Complete'"


def test_a_given_name_is_a_prefix_per_run_unless_exact(run_dag: Any, api_client: Any, namespace: str) -> None:
    with new_dag("daily") as dag:
        BatchJobOperator(
            task_id="t", namespace=namespace, job_name="daily-load", image="busybox", cmds=["true"]
        )
        BatchJobOperator(
            task_id="exact",
            namespace=namespace,
            job_name="exactly-this",
            random_name_suffix=False,
            image="busybox",
            cmds=["true"],
        )
    first = run_dag(dag)["t"]["xcom"]["return_value"]["name"]
    second = run_dag(dag)["t"]["xcom"]["return_value"]["name"]  # another run: another Job
    assert first != second and first.startswith("daily-load-") and second.startswith("daily-load-")
    names = {j.metadata.name for j in jobs_in(api_client, namespace)}
    assert {first, second, "exactly-this"} <= names
    batch = client.BatchV1Api(api_client)
    assert batch.read_namespaced_job(first, namespace).status.succeeded == 1
