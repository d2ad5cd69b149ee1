"""Queue-backed Jobs on the real cluster and real brokers, through Airflow: pre-fill, then consume."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from tests.cluster.helpers import new_dag, peak, queue_dag, results, span_events, worker_template

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]
FRUIT = ["apple", "banana", "cherry", "date", "fig", "grape", "lemon", "melon"]
# One write per item (O_APPEND keeps small writes whole), then a span line for concurrency.
RECORD = (
    'printf "%s\\n" "$ITEM" >> /out/results; echo "$(date +%s.%N) 1" >> /out/spans; sleep 0.5; '
    'echo "$(date +%s.%N) -1" >> /out/spans'
)


def secrets_of(local_cluster: Any) -> list[str]:
    return [local_cluster.redis_password, local_cluster.rabbitmq_password]


def test_rabbitmq_one_pod_per_item(
    run_dag: Any,
    api_client: Any,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag = queue_dag(
        "rabbit_fruit",
        namespace,
        "rabbitmq",
        FRUIT,
        tmp_path,
        RECORD,
        mode="pod_per_item",
        parallelism=2,
        count="{{ ti.xcom_pull(task_ids='prefill')['count'] }}",
    )
    result = run_dag(dag)
    out = capfd.readouterr().out
    assert result["prefill"]["state"] == "success" and result["consume"]["state"] == "success"
    assert results(tmp_path) == Counter(FRUIT), "each item exactly once"
    assert peak(span_events(tmp_path / "spans")) <= 2
    ret = result["consume"]["xcom"]["return_value"]
    assert ret["queue"]["pending"] == 0 and ret["queue"]["dead"] == 0
    job = client.BatchV1Api(api_client).read_namespaced_job(ret["name"], namespace, _preload_content=False)
    spec = job.data.decode()
    assert json.loads(spec)["spec"]["completions"] == 8
    for secret in secrets_of(local_cluster):
        assert secret not in spec and secret not in out


def test_redis_variable_pod_count(
    run_dag: Any,
    api_client: Any,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    items = [f"item-{i}" for i in range(9)]
    with new_dag("redis_nine") as dag:
        prefill = QueuePrefillOperator(
            task_id="prefill", broker="redis", items=items, queue_name="nine-{{ run_id }}"
        )
        again = QueuePrefillOperator(
            task_id="prefill_again", broker="redis", items=items, queue_name="nine-{{ run_id }}"
        )  # a retried pre-fill: idempotent
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="variable",
            parallelism=2,
            queue_name="nine-{{ run_id }}",
            job_template=worker_template(tmp_path),
            cmds=["sh", "-c", RECORD],
        )
        prefill >> again >> consume
    result = run_dag(dag)
    out = capfd.readouterr().out
    assert result["consume"]["state"] == "success"
    assert results(tmp_path) == Counter(items)
    assert peak(span_events(tmp_path / "spans")) <= 2
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert stats["done"] == 9 and stats["pending"] == 0 and stats["processing"] == 0
    job = (
        client.BatchV1Api(api_client)
        .read_namespaced_job(result["consume"]["xcom"]["job_name"], namespace, _preload_content=False)
        .data.decode()
    )
    assert "completions" not in json.loads(job)["spec"] or json.loads(job)["spec"]["completions"] is None
    for secret in secrets_of(local_cluster):
        assert secret not in job and secret not in out


def test_redis_thousand_items_four_workers(run_dag: Any, namespace: str, tmp_path: Path) -> None:
    items = [f"n{i}" for i in range(1000)]
    script = 'printf "%s\\n" "$ITEM" >> /out/results'
    dag = queue_dag(
        "redis_thousand", namespace, "redis", items, tmp_path, script, mode="variable", parallelism=4
    )
    result = run_dag(dag)
    assert result["consume"]["state"] == "success"
    assert results(tmp_path) == Counter(items)


def test_failing_item_is_dead_lettered_and_named(
    run_dag: Any, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    items = ["fine-1", "poison", "fine-2"]
    script = 'test "$ITEM" != poison && printf "%s\\n" "$ITEM" >> /out/results'
    dag = queue_dag(
        "redis_poison",
        namespace,
        "redis",
        items,
        tmp_path,
        script,
        mode="variable",
        parallelism=1,
        max_attempts=2,
    )
    result = run_dag(dag)
    out = capfd.readouterr().out
    assert result["consume"]["state"] == "failed"
    assert "1 items were dead-lettered after 2 attempts: ['poison']" in out
    assert results(tmp_path) == Counter(["fine-1", "fine-2"])


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_worker_killed_mid_item_loses_nothing(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, broker: str
) -> None:
    """SIGKILL the worker process holding the item 'victim': it is redelivered and processed."""
    items = ["a", "victim", "b", "c"]
    program = (
        'if [ "$ITEM" = victim ] && [ ! -e /out/killed ]; then echo $PPID > /out/victim.pid; sleep 60; fi; '
        'printf "%s\\n" "$ITEM" >> /out/results; echo "\\"done $ITEM\\"" > "$BATCHJOB_RESULT_FILE"'
    )
    mode: dict[str, Any] = (
        {"mode": "variable", "lease_seconds": 3}
        if broker == "redis"
        else {"mode": "pod_per_item", "count": "4"}
    )
    dag = queue_dag(f"kill_{broker}", namespace, broker, items, tmp_path, program, parallelism=2, **mode)

    def killer() -> None:
        pid_file = tmp_path / "victim.pid"
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text().strip():
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        (tmp_path / "killed").touch()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the worker, mid-item

    t = threading.Thread(target=killer)
    t.start()
    result = run_dag(dag)
    t.join()
    assert (tmp_path / "killed").exists(), "the victim was never picked up"
    assert result["consume"]["state"] == "success"
    assert results(tmp_path) == Counter(items), "0 lost, none twice"
    returned = result["consume"]["xcom"]["return_value"]["results"]
    assert sorted(r["item"] for r in returned) == sorted(items), "one result per item, the re-leased one too"
    assert all(r["result"] == f"done {r['item']}" for r in returned)
