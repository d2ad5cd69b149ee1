"""Diagnostics on the real cluster, through Airflow: why a Job is slow, stuck or failing.

Every cause is real: the scheduler's verdict on a Pod asking for more CPU than the node has,
the node agent's image-pull failure for the reserved registry ``unpullable.invalid/`` (as a
kubelet reports it), the Job controller's ``FailedCreate`` under a real ResourceQuota, and a
``CreateContainerConfigError`` for a Secret key that does not exist.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.sensors.job import JobSensor
from airflow_batchjob.triggers.job import wait_for_job
from tests.cluster.helpers import jobs_in, new_dag, pods_in, release, script_template

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_unschedulable_pod_logs_the_scheduler_reason_and_fails_at_pending_timeout(
    run_dag: Any, api_client: Any, namespace: str, deferrable: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag(f"too_big_{deferrable}") as dag:
        BatchJobOperator(
            task_id="big",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["true"],
            container_resources={"requests": {"cpu": "64"}},  # the node has 8
            pending_timeout=12,
            diagnose_interval=5,
            delete_on_finish="always",
            deferrable=deferrable,
        )
    result = run_dag(dag)["big"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "Pending for" in out and "Unschedulable: " in out and "nodes are available" in out
    assert "Insufficient cpu" in out
    assert "JobStuckError" in out and "pending_timeout is 12s" in out
    diag = result["xcom"]["diagnostics"]
    assert diag["max_observed_parallelism"] == 1 and diag["watched_pods"] is True
    assert any("Insufficient cpu" in p for p in diag["problems"])
    assert diag["pending_seconds_max"] >= 12
    deadline = time.monotonic() + 30  # delete_on_finish="always": the stuck Job is cleaned up
    while jobs_in(api_client, namespace) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs_in(api_client, namespace) == []


def test_unpullable_image_logs_err_image_pull_and_fails_at_pending_timeout(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("no_image") as dag:
        BatchJobOperator(
            task_id="pull",
            namespace=namespace,
            image="unpullable.invalid/nope:1",
            cmds=["true"],
            pending_timeout=10,
            diagnose_interval=5,
        )
    result = run_dag(dag)["pull"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "container main waiting for" in out
    assert "ErrImagePull" in out
    assert "JobStuckError" in out
    assert len(jobs_in(api_client, namespace)) == 1  # default delete_on_finish="never": kept to inspect


def test_missing_secret_key_logs_create_container_config_error(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"user": "u"}}
    )
    with new_dag("no_key") as dag:
        BatchJobOperator(
            task_id="cfg",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["true"],
            env=[
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                }
            ],
            pending_timeout=10,
            diagnose_interval=5,
        )
    result = run_dag(dag)["cfg"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "CreateContainerConfigError" in out
    assert "password" in out  # the message names the missing key
    assert "JobStuckError" in out


def test_quota_caps_parallelism_and_the_job_still_completes(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}}
    )
    deadline = time.monotonic() + 20  # the quota counts only once its controller published usage
    while not (core.read_namespaced_resource_quota("one-pod", namespace).status.hard or {}):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with new_dag("quota") as dag:
        BatchJobOperator(
            task_id="capped",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "sleep 10"],  # 10 s without progress: longer than the 5 s grace
            completions=3,
            parallelism=3,
            diagnose_interval=5,
        )
    result = run_dag(dag)["capped"]
    out = capfd.readouterr().out
    assert result["state"] == "success"
    # Once a Pod succeeded, fewer completions remain than requested: the line says that too.
    assert re.search(
        r"parallelism 1 running of 3 requested( \(only 2 of 3 completions remain\))?; \d missing: "
        r"the Job controller cannot create Pods: FailedCreate: ",
        out,
    )
    assert "FailedCreate" in out and "exceeded quota: one-pod" in out
    diag = result["xcom"]["diagnostics"]
    assert diag["max_observed_parallelism"] == 1
    assert diag["requested_parallelism"] == 3
    assert diag["pods_created"] == 3


def test_healthy_job_costs_no_extra_watches_and_reports_a_summary(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    # Both Pods hold until both run, so "2 at once" is there to see on any machine; the wait in
    # the worker may see it and defer before the trigger does (the summary carries it over).
    tmp_path.chmod(0o777)
    with new_dag("healthy") as dag:
        BatchJobOperator(
            task_id="ok",
            namespace=namespace,
            job_template=script_template("until [ -e /out/go ]; do sleep 0.2; done", tmp_path),
            completions=2,
            parallelism=2,
        )

    def release_once_both_run() -> None:
        try:
            deadline = time.monotonic() + 300
            while sum(p.status.phase == "Running" for p in pods_in(api_client, namespace)) < 2:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        finally:
            release(tmp_path)

    releaser = threading.Thread(target=release_once_both_run, daemon=True)
    releaser.start()
    result = run_dag(dag)["ok"]
    releaser.join(10)
    assert result["state"] == "success"
    diag = result["xcom"]["diagnostics"]
    assert diag["watched_pods"] is False  # the Job's own status said there was nothing to explain
    assert diag["pods_created"] == 2 and diag["pods_failed"] == 0
    assert diag["max_observed_parallelism"] == 2 and diag["requested_parallelism"] == 2
    assert diag["pods_seen"] == 2 and diag["pending_seconds_max"] >= 0


def test_jobgroup_items_that_cannot_be_scheduled_fail_the_group_at_pending_timeout(
    run_dag: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("group_stuck") as dag:
        JobGroupOperator(
            task_id="grp",
            namespace=namespace,
            items=["a", "b"],
            image="busybox:1.36",
            cmds=["true"],
            container_resources={"requests": {"cpu": "64"}},
            pending_timeout=10,
            diagnose_interval=5,
            delete_on_finish="always",
        )
    result = run_dag(dag)["grp"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "Insufficient cpu" in out and "JobStuckError" in out
    assert result["xcom"]["diagnostics"]["watched_pods"] is True


def test_wait_for_job_finds_a_job_created_after_the_shared_watch_listed(
    local_cluster: Any, api_client: Any, namespace: str
) -> None:
    """A waiter joining an open shared watch whose snapshot predates its Job must not call it deleted."""
    batch = client.BatchV1Api(api_client)

    def body(name: str, cmd: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", cmd]}],
                    }
                },
            },
        }

    async def scenario() -> dict[str, Any]:
        batch.create_namespaced_job(namespace, body("first", "sleep 5"))
        first_uid = batch.read_namespaced_job("first", namespace).metadata.uid
        first = asyncio.ensure_future(wait_for_job(namespace=namespace, job_name="first", job_uid=first_uid))
        await asyncio.sleep(1.5)  # the namespace watch is open and has listed without "second"
        # Created with the event loop blocked, then joined at once: the watch cannot have
        # delivered ADDED yet, so the waiter starts from a snapshot without its Job.
        uid = batch.create_namespaced_job(namespace, body("second", "true")).metadata.uid
        event = await wait_for_job(namespace=namespace, job_name="second", job_uid=uid)
        await first
        return event

    event = asyncio.run(scenario())
    assert event["status"] == "met", event
    assert event["job"]["state"] == "succeeded"


def test_sensor_explains_why_the_job_it_waits_on_does_not_run(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A Job someone else created, with an image that cannot be pulled: the deferred sensor says why."""
    client.BatchV1Api(api_client).create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "external", "labels": {"app": "external"}},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "unpullable.invalid/x:1", "command": ["true"]}],
                    }
                }
            },
        },
    )
    # The pull has failed before the sensor starts, so its timeout cannot run out first.
    deadline = time.monotonic() + 120
    while not any(
        cs.state.waiting and cs.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
        for p in pods_in(api_client, namespace)
        for cs in p.status.container_statuses or []
    ):
        assert time.monotonic() < deadline, "the Pod never reported its pull error"
        time.sleep(0.5)
    with new_dag("sensor_diag") as dag:
        # The sensor's timeout counts from the task's start, Airflow's own start-up included, which
        # took over 10 s on a loaded CI machine: 45 s leaves the trigger time to look and explain.
        JobSensor(task_id="wait", namespace=namespace, job_name="external", timeout=45)
    result = run_dag(dag)["wait"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"  # the sensor's own timeout
    assert "container c waiting for" in out and "ErrImagePull" in out
