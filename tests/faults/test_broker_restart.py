"""A broker restarted mid-run, for real: Redis (append-only file on) and RabbitMQ (durable queue).

The restart stops the broker process (SIGTERM), keeps it down a moment and starts it again on the
same port and data directory, while workers are in the middle of the queue. Nothing may be lost;
items processed twice (an acknowledgement lost with the connection) are counted and reported.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from localcluster import cluster as lc
from tests.faults.helpers import RECORD, Tally, new_dag, results, template, wait_until

pytestmark = pytest.mark.cluster


def restart_when(local_cluster: lc.State, name: str, out: Path, done: int, down: float) -> threading.Thread:
    """Restart broker ``name`` once ``done`` items were processed; record that it happened."""

    def go() -> None:
        wait_until(lambda: sum(results(out).values()) >= done, 300, f"{done} items before restarting {name}")
        lc.restart(local_cluster, name, down)
        (out / "restarted").touch()

    t = threading.Thread(target=go, name=f"restart-{name}", daemon=True)
    t.start()
    return t


def test_redis_restart_mid_run_loses_nothing(
    run_dag: Any, local_cluster: lc.State, namespace: str, tmp_path: Path, fault_report: Any
) -> None:
    n = 600
    items = [f"r{i}" for i in range(n)]
    with new_dag("restart_redis") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker="redis", items=items)
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="variable",
            parallelism=3,
            lease_seconds=5,
            queue_name="{{ ti.xcom_pull(task_ids='prefill')['queue'] }}",
            job_template=template(tmp_path),
            cmds=["sh", "-c", f"sleep 0.02; {RECORD}"],
        )
        prefill >> consume
    restarter = restart_when(local_cluster, "redis", tmp_path, done=150, down=1.0)
    result = run_dag(dag)
    restarter.join(timeout=60)
    tally = Tally(items, results(tmp_path))
    fault_report(f"redis restarted after 150 of {n} items (down 1 s): {tally.line()}")
    assert (tmp_path / "restarted").exists(), "the broker was never restarted"
    assert result["consume"]["state"] == "success"
    assert tally.lost == [] and tally.strangers == []
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert stats["pending"] == 0 and stats["processing"] == 0 and stats["dead"] == 0


def test_rabbitmq_restart_mid_run_loses_nothing(
    run_dag: Any, local_cluster: lc.State, namespace: str, tmp_path: Path, fault_report: Any
) -> None:
    n = 60
    items = [f"m{i}" for i in range(n)]
    with new_dag("restart_rabbit") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker="rabbitmq", items=items)
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="pod_per_item",
            count=n,
            parallelism=3,
            queue_name="{{ ti.xcom_pull(task_ids='prefill')['queue'] }}",
            job_template=template(tmp_path),
            cmds=["sh", "-c", f"sleep 0.3; {RECORD}"],
        )
        prefill >> consume
    restarter = restart_when(local_cluster, "rabbitmq", tmp_path, done=15, down=1.0)
    result = run_dag(dag)
    restarter.join(timeout=60)
    tally = Tally(items, results(tmp_path))
    fault_report(f"rabbitmq restarted after 15 of {n} items (down 1 s + its start): {tally.line()}")
    assert (tmp_path / "restarted").exists(), "the broker was never restarted"
    assert result["consume"]["state"] == "success"
    assert tally.lost == [] and tally.strangers == []
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert stats["pending"] == 0 and stats["dead"] == 0
