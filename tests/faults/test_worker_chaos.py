"""Chaos on workers: queue workers SIGKILLed at random, for real, while they drain a queue.

At-least-once is the promise: no item may be lost; items whose worker died after finishing them
but before acknowledging them are processed again, and the tests count (and report) those.

How kills meet the Job controller: every killed container is a Pod failure to it. With
``restartPolicy: OnFailure`` the node (here the node agent, like the kubelet) restarts the
container in place after a crash-loop backoff, and the controller counts the container restarts
against ``backoffLimit``; with ``Never`` each kill fails the Pod and the controller delays the
replacement by its exponential pod-failure backoff (10 s, 20 s, 40 s ...) unless a
``podFailurePolicy`` rule ``Ignore``s the exit code. So a Job meant to survive N disruptions needs
``backoffLimit`` > N (or such a rule). The tests set it; the defaults (6) would fail the Job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from tests.faults.helpers import RECORD, Killer, Tally, new_dag, results, slowed, template

pytestmark = pytest.mark.cluster


def restarts(api_client: Any, namespace: str) -> str:
    """How the Job controller saw the kills: container restarts in place, failed Pods."""
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
    n = sum(cs.restart_count for p in pods for cs in (p.status.container_statuses or []))
    failed = sum(1 for p in pods if p.status.phase == "Failed")
    return f"{len(pods)} Pods, {n} container restarts in place, {failed} failed Pods"


def test_redis_ten_thousand_items_with_workers_killed(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, fault_report: Any
) -> None:
    n, kills_wanted = 10_000, 25
    items = [f"r{i}" for i in range(n)]
    queue = f"chaos-redis-{namespace}"
    with new_dag("chaos_redis") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker="redis", items=items, queue_name=queue)
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="variable",
            parallelism=4,
            lease_seconds=3,
            max_attempts=50,  # a kill counts as an attempt of the item in hand; none may be dead-lettered
            backoff_limit=200,  # OnFailure: every kill is a container restart the controller counts
            queue_name=queue,
            job_template=template(tmp_path, restart_policy="OnFailure"),
            # 50 ms per item until the kills are done: 10,000 items then take over 2 minutes, far
            # longer than 25 kills need even with every container in its 10 s crash-loop backoff.
            cmds=["sh", "-c", slowed(0.05) + RECORD],
        )
        prefill >> consume

    def running() -> bool:  # keep killing while at least 300 items are left, so kills hit live work
        return sum(results(tmp_path).values()) < n - 300

    with Killer(queue, every=0.6, max_kills=kills_wanted, active=running, slow=tmp_path / "slow") as killer:
        result = run_dag(dag)
    tally = Tally(items, results(tmp_path))
    fault_report(
        f"redis variable, 4 workers: {killer.kills} SIGKILLs ({restarts(api_client, namespace)}); "
        f"{tally.line()}"
    )
    assert killer.kills >= 20, f"only {killer.kills} kills happened"
    assert result["consume"]["state"] == "success"
    assert tally.lost == [] and tally.strangers == []
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert stats["done"] == n and stats["pending"] == 0 and stats["processing"] == 0 and stats["dead"] == 0


def test_rabbitmq_pod_per_item_with_workers_killed(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, fault_report: Any
) -> None:
    n, kills_wanted = 200, 12
    items = [f"m{i}" for i in range(n)]
    queue = f"chaos-rabbit-{namespace}"
    with new_dag("chaos_rabbit") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker="rabbitmq", items=items, queue_name=queue)
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="pod_per_item",
            count=n,
            parallelism=4,
            max_attempts=50,
            backoff_limit=100,
            queue_name=queue,
            job_template=template(tmp_path, restart_policy="OnFailure"),
            cmds=["sh", "-c", "sleep 0.3; " + slowed(0.7) + RECORD],
        )
        prefill >> consume

    def running() -> bool:
        return sum(results(tmp_path).values()) < n - 20

    with Killer(queue, every=0.8, max_kills=kills_wanted, active=running, slow=tmp_path / "slow") as killer:
        result = run_dag(dag)
    tally = Tally(items, results(tmp_path))
    fault_report(
        f"rabbitmq pod-per-item, parallelism 4: {killer.kills} SIGKILLs ({restarts(api_client, namespace)}); "
        f"{tally.line()}"
    )
    assert killer.kills >= 10, f"only {killer.kills} kills happened"
    assert result["consume"]["state"] == "success"
    assert tally.lost == [] and tally.strangers == []
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert stats["pending"] == 0 and stats["dead"] == 0
