"""Jobs that disappear: ``ttlSecondsAfterFinished``, and group Jobs deleted while waited on.

A short TTL lets the TTL controller delete a finished Job and its Pods at once; the operators
hold it back until they have read what they report (failed Pods' logs, per-index rows, a group's
per-item table), then set it. A group Job deleted before it finished must end the wait with a
clear message (it never gets an outcome).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pendulum
import pytest
from kubernetes import client

from airflow_batchjob.core.group import GroupGoal
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.triggers.job import wait_for_job
from airflow_batchjob.triggers.jobgroup import wait_for_group
from tests.cluster.helpers import jobs_in, new_dag, script_template, sleeper

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def _gone(api_client: Any, namespace: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while jobs_in(api_client, namespace):
        assert time.monotonic() < deadline, "the TTL controller never deleted the Jobs"
        time.sleep(0.5)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_group_ttl_waits_for_the_group_outcome(
    run_dag: Any, api_client: Any, namespace: str, deferrable: bool
) -> None:
    """ttl 0: the fast item's Job would vanish while the slow one runs; both results are kept."""
    with new_dag("ttl_group") as dag:
        JobGroupOperator(
            task_id="group",
            namespace=namespace,
            items=["fast", "slow"],
            image="busybox:1.36",
            cmds=["sh", "-c", 'if [ "$ITEM" = slow ]; then sleep 5; fi; echo done'],
            ttl_seconds_after_finished=0,
            wait_timeout=120,
            deferrable=deferrable,
        )
    result = run_dag(dag)["group"]
    assert result["state"] == "success", result
    table = result["xcom"]["return_value"]
    assert [(r["item"], r["state"]) for r in table] == [("fast", "succeeded"), ("slow", "succeeded")]
    _gone(api_client, namespace)  # the TTL was handed back once the outcome was read


def test_single_job_ttl_zero_still_reports_its_outcome(run_dag: Any, api_client: Any, namespace: str) -> None:
    with new_dag("ttl_single") as dag:
        BatchJobOperator(
            task_id="one",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "echo done"],
            ttl_seconds_after_finished=0,
            wait_timeout=120,
        )
    result = run_dag(dag)["one"]
    assert result["state"] == "success", result
    assert result["xcom"]["return_value"]["outcome"]["state"] == "succeeded"
    _gone(api_client, namespace)


@pytest.mark.parametrize("default", ["", "-1"], ids=["deployment-default", "turned-off"])
def test_jobs_without_a_ttl_get_the_deployments_default(
    run_dag: Any, api_client: Any, namespace: str, default: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished Jobs do not pile up: a task that sets no TTL gets ``[batchjob] default_ttl_...``."""
    if default:
        monkeypatch.setenv("AIRFLOW__BATCHJOB__DEFAULT_TTL_SECONDS_AFTER_FINISHED", default)
    with new_dag("ttl_default") as dag:
        BatchJobOperator(task_id="one", namespace=namespace, image="busybox:1.36", cmds=["true"])
        JobGroupOperator(
            task_id="group", namespace=namespace, items=["a", "b"], image="busybox:1.36", cmds=["true"]
        )
    result = run_dag(dag)
    assert {t: r["state"] for t, r in result.items()} == {"one": "success", "group": "success"}, result
    jobs = jobs_in(api_client, namespace)
    assert len(jobs) == 3
    expected = None if default == "-1" else 7 * 24 * 3600
    assert [j.spec.ttl_seconds_after_finished for j in jobs] == [expected] * 3


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_failed_job_with_ttl_zero_still_shows_its_pod_log(
    run_dag: Any, api_client: Any, namespace: str, deferrable: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("ttl_fails") as dag:
        BatchJobOperator(
            task_id="boom",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "echo last words of $HOSTNAME; exit 3"],
            backoff_limit=0,
            ttl_seconds_after_finished=0,
            deferrable=deferrable,
        )
    result = run_dag(dag)["boom"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "container main exited 3 (Error)" in out and "last words of " in out, out[-3000:]
    _gone(api_client, namespace)


def test_indexed_rows_with_ttl_zero_keep_exit_codes_and_logs(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    with new_dag("ttl_indexed") as dag:
        IndexedJobOperator(
            task_id="each",
            namespace=namespace,
            items=["a", "bad", "c"],
            image="worker",
            cmds=["sh", "-c", 'echo "row $ITEM"; test "$ITEM" != bad'],
            backoff_limit_per_index=0,
            ttl_seconds_after_finished=0,
        )
    result = run_dag(dag)["each"]
    assert result["state"] == "failed", result
    rows = result["xcom"]["items"]["items"]
    assert [(r["item"], r["state"], r["exit_code"]) for r in rows] == [
        ("a", "succeeded", 0),
        ("bad", "failed", 1),
        ("c", "succeeded", 0),
    ]
    assert "row bad" in rows[1]["log_tail"], rows
    _gone(api_client, namespace)


def test_indexed_retry_with_ttl_zero_runs_only_the_failed_index(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    """The failed try's Job keeps its TTL held for the retry, which reads it to run index 1 only."""
    script = 'echo "$ITEM" >> /out/runs; test "$ITEM" != bad'
    with new_dag("ttl_retry") as dag:
        IndexedJobOperator(
            task_id="check",
            namespace=namespace,
            items=["ok-1", "bad", "ok-2"],
            job_template=script_template(script, tmp_path, image="worker"),
            backoff_limit_per_index=0,
            ttl_seconds_after_finished=0,
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
        )
    result = run_dag(dag)["check"]
    assert result["state"] == "failed" and result["try_number"] == 2
    assert sorted((tmp_path / "runs").read_text().split()) == ["bad", "bad", "ok-1", "ok-2"]
    table = result["xcom"]["items"]
    assert table["failed_indexes"] == "1" and table["completed_indexes"] == "0,2"
    _gone(api_client, namespace)  # the last try handed both attempts' Jobs their TTL


def test_group_job_deleted_before_it_finished_ends_the_wait(
    local_cluster: Any, api_client: Any, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    for name in ("keep", "doomed"):
        body = sleeper(name, 300)
        body["metadata"]["labels"] = {"jobgroup": "g"}
        batch.create_namespaced_job(namespace, body)

    async def main() -> dict[str, Any]:
        wait = asyncio.create_task(
            wait_for_group(
                namespace=namespace,
                label_selector="jobgroup=g",
                goal=GroupGoal(expected=2),
                deadline=time.time() + 90,
            )
        )
        await asyncio.sleep(2)
        assert not wait.done()
        await asyncio.to_thread(
            batch.delete_namespaced_job, "doomed", namespace, propagation_policy="Background"
        )
        return await wait

    event = asyncio.run(main())
    assert event["status"] == "deleted", event
    assert "1 Jobs of group 'jobgroup=g' were deleted before they finished (doomed)" in event["message"]
    batch.delete_namespaced_job("keep", namespace, propagation_policy="Background")


def test_a_job_decided_then_deleted_between_two_looks_reports_its_outcome(
    local_cluster: Any, api_client: Any, namespace: str
) -> None:
    """A foreign Job with ttl 0 (a sensor's case): its last state and its deletion arrive together."""
    batch = client.BatchV1Api(api_client)
    body = sleeper("quick", 3)
    body["spec"]["ttlSecondsAfterFinished"] = 0
    batch.create_namespaced_job(namespace, body)

    async def main() -> dict[str, Any]:
        wait = asyncio.create_task(
            wait_for_job(namespace=namespace, job_name="quick", deadline=time.time() + 90)
        )
        await asyncio.sleep(1.5)  # the wait lists and sees the Job running
        assert not wait.done()
        # Block the loop (as a busy triggerer may be) until the Job has succeeded and been deleted:
        # the watch then hands the wait both events at once.
        _gone(api_client, namespace)
        return await wait

    event = asyncio.run(main())
    assert event["status"] == "met", event
    assert event["job"]["state"] == "succeeded" and "(the Job was deleted since)" in event["message"]
