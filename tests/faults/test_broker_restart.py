"""A broker restarted mid-run, for real: Redis (append-only file on) and RabbitMQ (durable queue).

The restart stops the broker process (SIGTERM), keeps it down a moment and starts it again on the
same port and data directory, while workers are in the middle of the queue. Nothing may be lost;
items processed twice (an acknowledgement lost with the connection) are counted and reported.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster as lc
from tests.cluster.helpers import results
from tests.faults.helpers import RECORD, QueueRun, Tally, assert_nothing_lost, wait_until

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


@dataclass(frozen=True)
class Restart(QueueRun):
    """One broker's run, and when the broker is restarted."""

    seconds_per_item: float
    restart_after: int  # items processed
    down: str  # how long the broker is down, for the report


REDIS = Restart(
    broker="redis",
    dag_id="restart_redis",
    n=600,
    prefix="r",
    consume={"mode": "variable", "parallelism": 3, "lease_seconds": 5},
    seconds_per_item=0.02,
    restart_after=150,
    down="1 s",
    queue_end={"pending": 0, "processing": 0, "dead": 0},
)
RABBITMQ = Restart(
    broker="rabbitmq",
    dag_id="restart_rabbit",
    n=60,
    prefix="m",
    consume={"mode": "pod_per_item", "count": 60, "parallelism": 3},
    seconds_per_item=0.3,
    restart_after=15,
    down="1 s + its start",
    queue_end={"pending": 0, "dead": 0},
)


@pytest.mark.parametrize("case", [REDIS, RABBITMQ], ids=lambda c: c.broker)
def test_broker_restart_mid_run_loses_nothing(
    run_dag: Any, local_cluster: lc.State, namespace: str, tmp_path: Path, fault_report: Any, case: Restart
) -> None:
    dag = case.dag(namespace, tmp_path, f"sleep {case.seconds_per_item}; {RECORD}")
    restarter = restart_when(local_cluster, case.broker, tmp_path, done=case.restart_after, down=1.0)
    result = run_dag(dag)
    restarter.join(timeout=60)
    tally = Tally(case.items, results(tmp_path))
    fault_report(
        f"{case.broker} restarted after {case.restart_after} of {case.n} items (down {case.down}): "
        f"{tally.line()}"
    )
    assert (tmp_path / "restarted").exists(), "the broker was never restarted"
    assert_nothing_lost(result, tally, case.queue_end)
