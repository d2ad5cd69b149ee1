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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import pods_in, results
from tests.faults.helpers import RECORD, Killer, QueueRun, Tally, assert_nothing_lost, slowed

pytestmark = pytest.mark.cluster


def restarts(api_client: Any, namespace: str) -> str:
    """How the Job controller saw the kills: container restarts in place, failed Pods."""
    pods = pods_in(api_client, namespace)
    n = sum(cs.restart_count for p in pods for cs in (p.status.container_statuses or []))
    failed = sum(1 for p in pods if p.status.phase == "Failed")
    return f"{len(pods)} Pods, {n} container restarts in place, {failed} failed Pods"


@dataclass(frozen=True)
class Chaos(QueueRun):
    """One broker's run, and how often its workers are killed."""

    name: str  # how the report names the run
    script: str
    kills_wanted: int
    kills_needed: int  # the fewest kills that still make the run a test of them
    kill_every: float  # seconds, on average
    kill_until_left: int  # stop killing when this few items are left, so kills hit live work


REDIS = Chaos(
    name="redis variable, 4 workers",
    broker="redis",
    dag_id="chaos_redis",
    n=10_000,
    prefix="r",
    consume={
        "mode": "variable",
        "parallelism": 4,
        "lease_seconds": 3,
        "max_attempts": 50,  # a kill counts as an attempt of the item in hand; none may be dead-lettered
        "backoff_limit": 200,  # OnFailure: every kill is a container restart the controller counts
    },
    # 50 ms per item until the kills are done: 10,000 items then take over 2 minutes, far
    # longer than 25 kills need even with every container in its 10 s crash-loop backoff.
    script=slowed(0.05) + RECORD,
    kills_wanted=25,
    kills_needed=20,
    kill_every=0.6,
    kill_until_left=300,
    queue_end={"done": 10_000, "pending": 0, "processing": 0, "dead": 0},
)
RABBITMQ = Chaos(
    name="rabbitmq pod-per-item, parallelism 4",
    broker="rabbitmq",
    dag_id="chaos_rabbit",
    n=200,
    prefix="m",
    consume={
        "mode": "pod_per_item",
        "count": 200,
        "parallelism": 4,
        "max_attempts": 50,
        "backoff_limit": 100,
    },
    script="sleep 0.3; " + slowed(0.7) + RECORD,
    kills_wanted=12,
    kills_needed=10,
    kill_every=0.8,
    kill_until_left=20,
    queue_end={"pending": 0, "dead": 0},
)


@pytest.mark.parametrize(
    "case",
    [pytest.param(REDIS, id="redis_ten_thousand_items"), pytest.param(RABBITMQ, id="rabbitmq_pod_per_item")],
)
def test_workers_killed_mid_queue_lose_nothing(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, fault_report: Any, case: Chaos
) -> None:
    queue = f"{case.dag_id.replace('_', '-')}-{namespace}"  # chaos-redis-<ns>: the Killer finds workers by it
    dag = case.dag(namespace, tmp_path, case.script, queue_name=queue, restart_policy="OnFailure")

    def running() -> bool:  # keep killing while enough items are left, so kills hit live work
        return sum(results(tmp_path).values()) < case.n - case.kill_until_left

    with Killer(
        queue,
        every=case.kill_every,
        max_kills=case.kills_wanted,
        active=running,
        slow=tmp_path / "slow",
    ) as killer:
        result = run_dag(dag)
    tally = Tally(case.items, results(tmp_path))
    fault_report(f"{case.name}: {killer.kills} SIGKILLs ({restarts(api_client, namespace)}); {tally.line()}")
    assert killer.kills >= case.kills_needed, f"only {killer.kills} kills happened"
    assert_nothing_lost(result, tally, case.queue_end)
