"""Results from Pods on the real cluster: a program writes JSON to ``$BATCHJOB_RESULT_FILE`` (its
container's termination message, which the node writes into the Pod status), and each operator
returns it: the Job's ``result``/``results``, each group item's row, each Indexed index's row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from tests.cluster.helpers import new_dag, queue_dag

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]

WRITE = 'printf "%s" "$0" > "$BATCHJOB_RESULT_FILE"'


def test_job_returns_its_pods_results(run_dag: Any, namespace: str) -> None:
    with new_dag("results_job") as dag:
        BatchJobOperator(
            task_id="one", namespace=namespace, image="busybox", cmds=["sh", "-c", WRITE, '{"rows": 10}']
        )
        BatchJobOperator(
            task_id="three",
            namespace=namespace,
            image="busybox",
            cmds=["sh", "-c", 'echo "$JOB_COMPLETION_INDEX" > "$BATCHJOB_RESULT_FILE"'],
            completions=3,
            parallelism=3,
            completion_mode="Indexed",
        )
        BatchJobOperator(task_id="silent", namespace=namespace, image="busybox", cmds=["true"])
        BatchJobOperator(
            task_id="no_xcom",
            namespace=namespace,
            image="busybox",
            cmds=["sh", "-c", WRITE, "1"],
            do_xcom_push=False,
        )
    out = run_dag(dag)
    assert out["one"]["xcom"]["return_value"]["result"] == {"rows": 10}
    assert out["three"]["xcom"]["return_value"]["results"] == [0, 1, 2]
    assert out["three"]["xcom"]["return_value"]["result"] is None
    assert out["silent"]["xcom"]["return_value"]["result"] is None
    # Only the Batch view's reference and Airflow's extra-link XComs ("_" keys), as for any operator.
    no_xcom = {k for k in out["no_xcom"]["xcom"] if not k.startswith("_")}
    assert out["no_xcom"]["state"] == "success" and no_xcom == set()


def test_oversize_and_non_json_results_fail_with_the_limit(
    run_dag: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    big = "x" * 4097  # 4 KiB + 1
    with new_dag("results_bad") as dag:
        BatchJobOperator(
            task_id="big", namespace=namespace, image="busybox", cmds=["sh", "-c", WRITE, big], retries=1
        )
        BatchJobOperator(
            task_id="text", namespace=namespace, image="busybox", cmds=["sh", "-c", WRITE, "n=1"]
        )
        IndexedJobOperator(
            task_id="indexed_big",
            namespace=namespace,
            image="worker",
            items=["ok", "big"],
            cmds=[
                "sh",
                "-c",
                f'if [ "$ITEM" = big ]; then {WRITE}; else echo 1 > "$BATCHJOB_RESULT_FILE"; fi',
                big,
            ],
            backoff_limit_per_index=0,
        )
    out = run_dag(dag)
    logs = capfd.readouterr().out
    assert out["big"]["state"] == "failed" and out["big"]["try_number"] == 1, "not retried: fix the program"
    assert "its result is 4096 bytes or more, over the 4095-byte limit" in logs
    assert out["text"]["state"] == "failed" and "is not JSON" in logs
    assert out["indexed_big"]["state"] == "failed"
    rows = out["indexed_big"]["xcom"]["items"]["items"]
    assert rows[0]["state"] == "succeeded" and rows[0]["result"] == 1
    assert rows[1]["state"] == "failed" and rows[1]["exit_code"] == 65
    assert "item 1: its result is" in (rows[1]["log_tail"] or "")


def test_group_rows_carry_each_items_result(run_dag: Any, namespace: str) -> None:
    with new_dag("results_group") as dag:
        JobGroupOperator(
            task_id="group",
            namespace=namespace,
            image="busybox",
            items=[{"name": "north", "rows": 1}, {"name": "south", "rows": 2}],
            cmds=[
                "sh",
                "-c",
                'echo "{\\"region\\": \\"$NAME\\", \\"double\\": $((ROWS * 2))}" > "$BATCHJOB_RESULT_FILE"',
            ],
        )
    rows = run_dag(dag)["group"]["xcom"]["return_value"]
    assert [r["result"] for r in rows] == [{"region": "north", "double": 2}, {"region": "south", "double": 4}]


def test_indexed_results_merge_over_a_retry_of_a_failed_index(
    run_dag: Any, namespace: str, tmp_path: Path
) -> None:
    """Map-reduce: each index returns its number squared; index 2 fails on the first try only."""
    tmp_path.chmod(0o777)
    script = (
        'n=$(cat); if [ "$n" = 3 ] && [ ! -e /out/once ]; then touch /out/once; exit 1; fi; '
        'echo $((n * n)) > "$BATCHJOB_RESULT_FILE"'
    )
    template = {
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "volumes": [{"name": "out", "hostPath": {"path": str(tmp_path)}}],
                    "containers": [
                        {
                            "name": "main",
                            "image": "worker",
                            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                        }
                    ],
                }
            }
        }
    }
    with new_dag("results_indexed") as dag:
        IndexedJobOperator(
            task_id="squares",
            namespace=namespace,
            job_template=template,
            items=["1", "2", "3", "4"],
            cmds=["sh", "-c", script],
            backoff_limit_per_index=0,
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
        )
    out = run_dag(dag)["squares"]
    assert out["state"] == "success" and out["try_number"] == 2
    rows = out["xcom"]["return_value"]["items"]
    assert [r["result"] for r in rows] == [1, 4, 9, 16]
    assert len({r["job"] for r in rows}) == 2, "three results from the first attempt, one from the retry"


@pytest.mark.parametrize(
    ("broker", "consume"),
    [
        ("redis", {"mode": "variable", "parallelism": 2}),
        ("rabbitmq", {"mode": "pod_per_item", "parallelism": 2}),
    ],
    ids=["redis", "rabbitmq"],
)
def test_queue_results_keyed_by_item(
    run_dag: Any, namespace: str, tmp_path: Path, broker: str, consume: dict[str, Any]
) -> None:
    """Each item's result is kept in the broker beside the queue; a bad one fails that item only."""
    tmp_path.chmod(0o777)
    script = (
        'if [ "$ITEM" = bad ]; then echo "not json" > "$BATCHJOB_RESULT_FILE"; exit 0; fi; '
        'n=$(expr length "$ITEM"); echo "{\\"len\\": $n}" > "$BATCHJOB_RESULT_FILE"'
    )
    items = ["apple", "fig", "bad"]
    count = {"count": 3} if broker == "rabbitmq" else {}
    dag = queue_dag(
        f"results_{broker}",
        namespace,
        broker,
        items,
        tmp_path,
        script,
        max_attempts=1,
        fail_on_dead_letter=False,
        **{**consume, **count},
    )
    out = run_dag(dag)["consume"]
    assert out["state"] == "success"
    ret = out["xcom"]["return_value"]
    assert ret["queue"]["dead"] == 1 and ret["queue"]["dead_items"] == ["bad"]
    assert [(r["item"], r["result"]) for r in ret["results"]] == [("apple", {"len": 5}), ("fig", {"len": 3})]
