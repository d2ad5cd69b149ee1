"""KubernetesJobOperator's parameters (issue 26) on the local cluster: a DAG written for the peer
runs after changing only its import, skip_on_exit_code skips, fire-and-forget fan-outs return
their Jobs' identity at once for a sensor downstream."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from kubernetes import client

from airflow_batchjob.core import naming
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.sensors.job import JobSensor
from airflow_batchjob.sensors.jobgroup import JobGroupSensor
from tests.cluster.helpers import jobs_in, new_dag, pods_in
from tests.cluster.test_retry_keeps_work import CASES

pytestmark = pytest.mark.cluster

# The 26 parameters BatchJobOperator refused before issue 26, with values a peer DAG passes.
PEER_DAG_PARAMS: dict[str, Any] = {
    "on_finish_action": "delete_succeeded_pod",
    "is_delete_operator_pod": None,
    "startup_timeout_seconds": 120,
    "schedule_timeout_seconds": 60,
    "skip_on_exit_code": [99],
    "reattach_on_restart": True,
    "init_container_logs": True,
    "log_events_on_failure": True,
    "log_events_on_startup": True,
    "log_pod_spec_on_failure": True,
    "on_kill_action": "delete_pod",
    "poll_interval": 2,
    "logging_interval": None,
    "startup_check_interval_seconds": 5,
    "base_container_status_polling_interval": 1,
    "discover_pods_retry_number": 3,
    "durable": True,
    "callbacks": None,
    "progress_callback": None,
    "trigger_kwargs": None,
    "container_name_log_prefix_enabled": True,
    "log_formatter": None,
    "manual_selector": None,
    "selector": None,
    "unwrap_single": True,
    "xcom_sidecar_container_security_context": None,
}


def test_a_peer_dag_with_the_26_parameters_runs(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert len(PEER_DAG_PARAMS) == 26
    with new_dag("peer_params") as dag:
        BatchJobOperator(
            task_id="ported",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "echo ported"],
            name="ported",
            init_containers=[{"name": "setup", "image": "busybox:1.36", "command": ["echo", "set up"]}],
            **PEER_DAG_PARAMS,
        )
    result = run_dag(dag)["ported"]
    out = capfd.readouterr().out
    assert result["state"] == "success"
    assert result["xcom"]["job_name"].startswith("ported-")
    assert not jobs_in(api_client, namespace), "delete_succeeded_pod deletes the succeeded Job"
    assert out.count("poll_interval=2 has no effect") == 1
    assert "set up" in out  # init_container_logs=True


def test_skip_on_exit_code_skips_the_task_at_the_first_pod(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    with new_dag("skip_code") as dag:
        BatchJobOperator(
            task_id="nothing_to_do",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "exit 99"],
            skip_on_exit_code=99,
            backoff_limit=5,
        )
        JobGroupOperator(
            task_id="group",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", 'if [ "$ITEM" = b ]; then exit 99; fi'],
            items=["a", "b"],
            skip_on_exit_code=[99],
        )
    result = run_dag(dag)
    assert result["nothing_to_do"]["state"] == "skipped"
    job = result["nothing_to_do"]["xcom"]["job_name"]
    assert len(pods_in(api_client, namespace, f"batch.kubernetes.io/job-name={job}")) == 1  # FailJob
    assert result["group"]["state"] == "success"
    rows = {r["item"]: r for r in result["group"]["xcom"]["return_value"]}
    assert rows["a"]["state"] == "succeeded" and rows["b"]["state"] == "skipped"


def test_fire_and_forget_fan_outs_and_a_sensor_downstream(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    with new_dag("fire_and_forget") as dag:
        group = JobGroupOperator(
            task_id="group",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "sleep 2"],
            items=["a", "b", "c"],
            wait_until_job_complete=False,
        )
        group_done = JobGroupSensor(
            task_id="group_done",
            namespace=namespace,
            label_selector="{{ ti.xcom_pull(task_ids='group')['selector'] }}",
            expected_jobs=3,
            poke_interval=1,
        )
        indexed = IndexedJobOperator(
            task_id="indexed",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "sleep 2"],
            use_worker=False,
            items=["x", "y"],
            wait_until_job_complete=False,
        )
        indexed_done = JobSensor(
            task_id="indexed_done",
            namespace=namespace,
            job_name="{{ ti.xcom_pull(task_ids='indexed')['name'] }}",
            poke_interval=1,
        )
        group >> group_done
        indexed >> indexed_done
    result = run_dag(dag)
    assert result["group"]["xcom"]["return_value"]["expected_jobs"] == 3
    assert result["indexed"]["xcom"]["return_value"]["items"] == 2
    for task in ("group", "group_done", "indexed", "indexed_done"):
        assert result[task]["state"] == "success", task
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace).items
    assert all(j.spec.ttl_seconds_after_finished is not None for j in jobs), "nobody waits: TTL set at once"


@pytest.mark.parametrize(("kind", "cls", "params"), CASES, ids=[c[0] for c in CASES])
def test_reattach_on_restart_false_runs_a_fresh_job_on_the_retry(
    run_dag: Any, api_client: Any, namespace: str, kind: str, cls: Any, params: dict[str, Any]
) -> None:
    """The first try is lost before it read its succeeded Jobs' outcome: with the default the retry
    keeps them (test_retry_keeps_work.py); reattach_on_restart=False replaces them."""
    with new_dag(f"fresh_{kind}") as dag:
        op = cls(
            task_id="work",
            namespace=namespace,
            image="worker",
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
            reattach_on_restart=False,
            **params,
        )
        op.lose = "before"
    result = run_dag(dag)["work"]
    assert result["state"] == "success" and result["try_number"] == 2, result
    jobs = jobs_in(api_client, namespace)
    assert {j.metadata.labels[naming.LABEL_TRY] for j in jobs} == {"2"}, "only the retry's fresh Jobs"
    assert len(jobs) == (3 if kind == "group" else 1)
