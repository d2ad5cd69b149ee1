"""IndexedJobOperator on the real local cluster, through Airflow (the worker runs in each Pod)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.indexed import ANNOTATION_INDEXES, IndexedJobOperator
from tests.cluster.helpers import jobs_in, new_dag, pod_log, pods_of_job, script_template

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]
# Pods that must outlive the decisive condition: they stop slowly after SIGTERM.
SLOW_STOP = "trap 'sleep 20; exit 0' TERM; sleep 300 & wait $!"


def pods_by_index(api_client: Any, ns: str, job: str) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for p in pods_of_job(api_client, ns, job):
        out.setdefault(int(p.metadata.annotations["batch.kubernetes.io/job-completion-index"]), []).append(p)
    return out


def test_rev_example(run_dag: Any, api_client: Any, namespace: str) -> None:
    items = ["foo", "bar", "baz", "qux", "xyz"]
    with new_dag("rev") as dag:
        IndexedJobOperator(
            task_id="rev", namespace=namespace, items=items, image="worker", cmds=["rev"], parallelism=3
        )
    result = run_dag(dag)["rev"]
    assert result["state"] == "success"
    ret = result["xcom"]["return_value"]
    assert ret["completed_indexes"] == "0-4" and ret["failed_indexes"] == ""
    assert [r["state"] for r in ret["items"]] == ["succeeded"] * 5
    for index, (pod,) in pods_by_index(api_client, namespace, ret["job"]).items():
        assert pod_log(api_client, namespace, pod.metadata.name).strip() == items[index][::-1]


def test_failed_index_named_and_retry_runs_only_it(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("per_index") as dag:
        IndexedJobOperator(
            task_id="check",
            namespace=namespace,
            items=["ok-1", "bad", "ok-2"],
            image="worker",
            cmds=["sh", "-c", 'echo "checking $ITEM"; test "$ITEM" != bad'],
            backoff_limit_per_index=1,
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
        )
    result = run_dag(dag)["check"]
    out = capfd.readouterr().out
    assert result["state"] == "failed" and result["try_number"] == 2
    assert 'items not done: 1="bad"' in out
    table = result["xcom"]["items"]
    assert table["failed_indexes"] == "1" and table["completed_indexes"] == "0,2"
    bad = table["items"][1]
    assert bad["state"] == "failed" and bad["exit_code"] == 1 and "checking bad" in bad["log_tail"]
    jobs = sorted(jobs_in(api_client, namespace), key=lambda j: j.metadata.creation_timestamp)
    assert len(jobs) == 2
    first, retry = jobs
    assert first.status.failed_indexes == "1" and first.status.completed_indexes == "0,2"
    assert retry.metadata.annotations[ANNOTATION_INDEXES] == "1" and retry.spec.completions == 1
    assert len(pods_by_index(api_client, namespace, retry.metadata.name)[0]) == 2  # backoffLimitPerIndex 1


def test_max_failed_indexes_fails_fast(run_dag: Any, api_client: Any, namespace: str) -> None:
    # The bad item fails once the others surely run (a Pod not started yet would stop at once).
    script = f'if [ "$ITEM" = bad ]; then sleep 3; exit 1; fi; {SLOW_STOP}'
    with new_dag("max_failed") as dag:
        IndexedJobOperator(
            task_id="strict",
            namespace=namespace,
            items=["bad", "slow-1", "slow-2"],
            image="worker",
            cmds=["sh", "-c", script],
            backoff_limit_per_index=0,
            max_failed_indexes=0,
            parallelism=3,  # Kubernetes defaults to 1: the slow indexes must run beside the bad one
        )
    result = run_dag(dag)["strict"]
    assert result["state"] == "failed"
    (job,) = jobs_in(api_client, namespace)
    types = {c.type: c.reason for c in job.status.conditions or [] if c.status == "True"}
    assert types.get("FailureTarget") == "MaxFailedIndexesExceeded"
    assert "Failed" not in types, "the task must fail on FailureTarget, before Pods finish terminating"


def test_success_policy_met_while_others_run(run_dag: Any, api_client: Any, namespace: str) -> None:
    script = f'if [ "$ITEM_INDEX" = 0 ]; then exit 0; fi; {SLOW_STOP}'
    with new_dag("first_index") as dag:
        IndexedJobOperator(
            task_id="leader",
            namespace=namespace,
            items=["a", "b", "c"],
            image="worker",
            cmds=["sh", "-c", script],
            success_policy={"rules": [{"succeededIndexes": "0"}]},
            parallelism=3,
        )
    result = run_dag(dag)["leader"]
    assert result["state"] == "success"
    ret = result["xcom"]["return_value"]
    assert ret["outcome"]["reason"] == "SuccessPolicy" and ret["outcome"]["final"] is False
    assert [r["state"] for r in ret["items"]] == ["succeeded", "not_run", "not_run"]


def test_pod_failure_policy_ignore_does_not_count(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    script = "if [ ! -e /out/$ITEM_INDEX ]; then touch /out/$ITEM_INDEX; exit 42; fi; echo done"
    template = script_template(script, tmp_path, image="worker")
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}}]}
    with new_dag("ignore_42") as dag:
        IndexedJobOperator(
            task_id="ignore",
            namespace=namespace,
            items=["x", "y"],
            job_template=template,
            backoff_limit_per_index=0,
            pod_failure_policy=policy,
        )
    result = run_dag(dag)["ignore"]
    assert result["state"] == "success"
    (job,) = jobs_in(api_client, namespace)
    assert not job.status.failed  # the two exit-42 Pods were ignored, not counted against their index
    assert (
        len([p for ps in pods_by_index(api_client, namespace, job.metadata.name).values() for p in ps]) == 4
    )


def test_bad_parameters_fail_early() -> None:
    with pytest.raises(InvalidJobTemplateError, match="completions from len"):
        IndexedJobOperator(task_id="a", items=["x"], image="busybox", cmds=["cat"], completions=3)
    with pytest.raises(InvalidJobTemplateError, match="empty"):
        IndexedJobOperator(task_id="b", items=[], image="busybox", cmds=["cat"])
    with pytest.raises(InvalidJobTemplateError, match="max_failed_indexes"):
        IndexedJobOperator(task_id="c", items=["x"], image="busybox", cmds=["cat"], max_failed_indexes=1)
    with pytest.raises(InvalidJobTemplateError, match="over the 921600-byte limit"):
        IndexedJobOperator(task_id="d", items=["x" * 2_000_000], image="busybox", cmds=["cat"])


# About 1.8 Pods/s on the real node (7/s on the node agent): 1,000 Pods would take 9 minutes there.
@pytest.mark.agent_node
def test_thousand_items_in_one_job(run_dag: Any, api_client: Any, namespace: str) -> None:
    items = [f"item-{i:04d}" for i in range(1000)]
    with new_dag("thousand") as dag:
        IndexedJobOperator(
            task_id="thousand",
            namespace=namespace,
            items=items,
            image="worker",
            cmds=["sh", "-c", 'test "$ITEM" = "item-$(printf %04d $ITEM_INDEX)"'],
            parallelism=100,
        )
    result = run_dag(dag)["thousand"]
    assert result["state"] == "success"
    ret = result["xcom"]["return_value"]
    assert ret["completed_indexes"] == "0-999"
    assert len(ret["items"]) == 1000 and all(r["state"] == "succeeded" for r in ret["items"])
