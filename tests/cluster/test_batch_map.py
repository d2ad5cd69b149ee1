"""``@task.batch_map`` on the real local cluster, through Airflow: one Indexed Job per call.

The functions are defined inside the tests (their source is what travels) and run in each Pod with
the image's ``python3``: on the node agent the host's, on the real node the worker image's 3.11.
"""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from kubernetes.client import models as k8s

from airflow_batchjob.core import naming
from airflow_batchjob.operators.indexed import ANNOTATION_INDEXES
from tests.cluster.helpers import jobs_in, new_dag, pods_of_job

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def _field_env(name: str, path: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=name, value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path=path))
    )


# Kubernetes counts an index's failed Pods in this annotation of its next Pod (backoffLimitPerIndex).
INDEX_FAILURES = _field_env(
    "INDEX_FAILURES", "metadata.annotations['batch.kubernetes.io/job-index-failure-count']"
)
TRY = _field_env("TRY", f"metadata.labels['{naming.LABEL_TRY}']")


def test_results_in_item_order_after_a_per_index_retry(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import task

    with new_dag("batch_map_retry_index") as dag:

        @task.batch_map(
            namespace=namespace,
            image="worker",
            parallelism=3,
            backoff_limit_per_index=1,
            pod_runtime_info_envs=[INDEX_FAILURES],
            defer_after=0,  # the wait, the live logs and the results all come through the trigger
        )
        def shout(word: str, suffix: str = "!") -> dict[str, Any]:
            import os

            failures = int(os.environ.get("INDEX_FAILURES") or 0)
            if word == "boom" and failures == 0:
                raise RuntimeError(f"first attempt at {word}")
            print(f"shouting {word}")
            return {"word": word.upper() + suffix, "failures": failures}

        shout(["alpha", "boom", "gamma", "delta", "épsilon"], suffix="?")

    result = run_dag(dag)["shout"]
    assert result["state"] == "success", capfd.readouterr().out[-3000:]
    assert result["xcom"]["return_value"] == [
        {"word": "ALPHA?", "failures": 0},
        {"word": "BOOM?", "failures": 1},
        {"word": "GAMMA?", "failures": 0},
        {"word": "DELTA?", "failures": 0},
        {"word": "ÉPSILON?", "failures": 0},
    ]
    out = capfd.readouterr().out
    assert "shouting gamma" in out  # the live log
    assert "Pausing task as DEFERRED" in out
    (job,) = jobs_in(api_client, namespace)
    pods = pods_of_job(api_client, namespace, job.metadata.name)
    assert len(pods) == 6  # index 1 ran twice, in the same Job
    failed = [p for p in pods if p.status.phase == "Failed"]
    assert [p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in failed] == ["1"]
    message = failed[0].status.container_statuses[0].state.terminated.message
    assert "RuntimeError" in message and "first attempt at boom" in message


def test_a_task_retry_runs_only_the_failed_items_and_merges_the_results(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import task

    with new_dag("batch_map_retry_task") as dag:

        @task
        def numbers() -> list[int]:
            return [10, 11, 12, 13]

        @task.batch_map(
            namespace=namespace,
            image="worker",
            parallelism=4,
            backoff_limit_per_index=0,
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
            pod_runtime_info_envs=[TRY],
        )
        def half(n: int, *, offset: int) -> int:
            import os

            if n % 2 and os.environ.get("TRY") == "1":
                raise ValueError(f"odd item {n} on try 1")
            return n // 2 + offset

        half(numbers(), offset=100)

    result = run_dag(dag)["half"]
    out = capfd.readouterr().out
    assert result["state"] == "success" and result["try_number"] == 2, out[-3000:]
    assert result["xcom"]["return_value"] == [105, 105, 106, 106]
    # try 1's failure named each failed item with its exception and traceback tail
    assert "item 1 (11) failed (call)" in out and "item 3 (13) failed (call)" in out
    assert "ValueError: odd item 11 on try 1" in out
    assert 'raise ValueError(f"odd item {n} on try 1")' in out  # the traceback shows the DAG file's line
    jobs = sorted(jobs_in(api_client, namespace), key=lambda j: j.metadata.creation_timestamp)
    assert len(jobs) == 2
    first, retry = jobs
    assert first.status.completed_indexes == "0,2" and first.status.failed_indexes == "1,3"
    assert retry.metadata.annotations[ANNOTATION_INDEXES] == "1,3" and retry.spec.completions == 2


def test_failed_items_are_named_with_their_errors(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import task

    with new_dag("batch_map_errors") as dag:

        @task.batch_map(
            namespace=namespace,
            image="worker",
            parallelism=3,
            backoff_limit_per_index=0,
            delete_on_finish="always",  # the errors are read before the Pods go
        )
        def sized(n: int) -> Any:
            if n < 0:
                raise KeyError(n)
            return "x" * n

        sized([3, 5000, -1])

    result = run_dag(dag)["sized"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "2 item(s) failed" in out
    assert "item 1 (5000) failed (result)" in out and "over the 4095-byte limit" in out
    assert "return a reference" in out
    assert "item 2 (-1) failed (call)" in out and "KeyError: -1" in out
    table = result["xcom"]["items"]
    assert [r["state"] for r in table["items"]] == ["succeeded", "failed", "failed"]
    assert table["items"][0]["result"] == "xxx"
    assert [r["exit_code"] for r in table["items"][1:]] == [65, 1]


def test_an_image_python_too_old_fails_the_job_at_once(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import task

    # A stand-in for an image whose Python is 3.8: the bootstrap sees that version.
    old_python = [
        "python3",
        "-c",
        "import runpy, sys; sys.argv = sys.argv[2:]; sys.version_info = (3, 8, 10, 'final', 0); "
        "runpy.run_path(sys.argv[0], run_name='__main__')",
    ]
    with new_dag("batch_map_old_python") as dag:

        @task.batch_map(
            namespace=namespace, image="worker", python_command=old_python, parallelism=1, backoff_limit=6
        )
        def double(n: int) -> int:
            return 2 * n

        double(list(range(5)))

    result = run_dag(dag)["double"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "the image's Python is 3.8.10; @task.batch_map needs Python 3.9 or newer" in out
    (job,) = jobs_in(api_client, namespace)
    reasons = {c.type: c.reason for c in job.status.conditions or [] if c.status == "True"}
    assert reasons.get("Failed") == "PodFailurePolicy" or reasons.get("FailureTarget") == "PodFailurePolicy"
    assert len(pods_of_job(api_client, namespace, job.metadata.name)) < 5  # not every item tried
